"""Problem families (docs/spec.md section 5): all convex and Lipschitz, each a class with
its loss, subgradient and an independent second solver. The constructors, which draw the
data (``scale`` > 0: the badly scaled variant) and check the sizes, are
``synthetic.constructors``.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
from scipy.optimize import linprog, minimize

from paramscale.synthetic.problem import Problem


def _full_column_rank(A: np.ndarray) -> bool:
    return A.shape[0] >= A.shape[1] and np.linalg.matrix_rank(A) == A.shape[1]


def _rows(A: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    return A if idx is None else A[idx]


def _highs(c: np.ndarray, A_ub: np.ndarray, b_ub: np.ndarray, bounds: list, n: int, name: str):
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        from paramscale.synthetic.solve import SolveError

        raise SolveError(f"{name}: solver HiGHS returned status {res.status} ({res.message})")
    return res.x[:n], "HiGHS (scipy.linprog LP form)"


def _smooth_reference(problem: Problem, name: str) -> tuple[np.ndarray, str]:
    res = minimize(
        problem.f,
        np.zeros(problem.n),
        jac=problem.grad,
        method="BFGS",
        options={"gtol": 1e-12, "maxiter": 20000},
    )
    res = minimize(  # polish with Newton-CG-free trust region on the same smooth objective
        problem.f,
        res.x,
        jac=problem.grad,
        method="L-BFGS-B",
        options={"ftol": 1e-16, "gtol": 1e-13, "maxiter": 20000},
    )
    return res.x, f"scipy {name}"


class LAD(Problem):
    """Least absolute deviations ``f(x) = mean |a_i^T x - b_i|``."""

    def losses(self, x, idx):
        return np.abs(_rows(self.data["A"], idx) @ x - _rows(self.data["b"], idx))

    def sample_grads_mean(self, x, idx):
        A, b = _rows(self.data["A"], idx), _rows(self.data["b"], idx)
        return A.T @ np.sign(A @ x - b) / A.shape[0]

    def cvx_objective(self, y):
        return cp.sum(cp.abs(self.data["A"] @ y - self.data["b"])) / self.m

    def reference_solve(self):
        A, b = self.data["A"], self.data["b"]
        m, n = A.shape
        c = np.concatenate([np.zeros(n), np.full(m, 1.0 / m)])
        I = np.eye(m)
        A_ub = np.block([[A, -I], [-A, -I]])
        bounds = [(None, None)] * n + [(0, None)] * m
        return _highs(c, A_ub, np.concatenate([b, -b]), bounds, n, self.name)


class Hinge(Problem):
    """Hinge-loss SVM ``mean max(0, 1 - y_i a_i^T x) + l1 ||x||_1`` (l1 = 0: plain)."""

    def losses(self, x, idx):
        A, y = _rows(self.data["A"], idx), _rows(self.data["y"], idx)
        return np.maximum(0.0, 1.0 - y * (A @ x)) + self.params["l1"] * np.sum(np.abs(x))

    def sample_grads_mean(self, x, idx):
        A, y = _rows(self.data["A"], idx), _rows(self.data["y"], idx)
        active = (1.0 - y * (A @ x)) > 0
        return -(A.T @ (y * active)) / A.shape[0] + self.params["l1"] * np.sign(x)

    def cvx_objective(self, y):
        A, lab = self.data["A"], self.data["y"]
        hinge = cp.sum(cp.pos(1 - cp.multiply(lab, A @ y))) / self.m
        return hinge + self.params["l1"] * cp.norm1(y) if self.params["l1"] > 0 else hinge

    def reference_solve(self):
        A, lab, l1 = self.data["A"], self.data["y"], self.params["l1"]
        m, n = A.shape
        # variables [x (n), t (m), u (n)]: t_i >= 1 - y_i a_i^T x, t >= 0, |x| <= u
        c = np.concatenate([np.zeros(n), np.full(m, 1.0 / m), np.full(n, l1)])
        In, Z = np.eye(n), np.zeros
        A_ub = np.block(
            [
                [-(lab[:, None] * A), -np.eye(m), Z((m, n))],
                [In, Z((n, m)), -In],
                [-In, Z((n, m)), -In],
            ]
        )
        b_ub = np.concatenate([-np.ones(m), np.zeros(2 * n)])
        bounds = [(None, None)] * n + [(0, None)] * (m + n)
        return _highs(c, A_ub, b_ub, bounds, n, self.name)


class MaxAffine(Problem):
    """``f(x) = max_i (a_i^T x + b_i)``, bounded below (a positive combination of the a_i
    is 0). No finite-sum structure: m = 1."""

    def losses(self, x, idx):
        return np.array([np.max(self.data["A"] @ x + self.data["b"])])

    def sample_grads_mean(self, x, idx):
        A = self.data["A"]
        return A[int(np.argmax(A @ x + self.data["b"]))].copy()

    def cvx_objective(self, y):
        return cp.max(self.data["A"] @ y + self.data["b"])

    def reference_solve(self):
        A, b = self.data["A"], self.data["b"]
        k, n = A.shape
        c = np.concatenate([np.zeros(n), [1.0]])
        A_ub = np.hstack([A, -np.ones((k, 1))])
        return _highs(c, A_ub, -b, [(None, None)] * (n + 1), n, self.name)


class Huber(Problem):
    """Huber regression ``mean huber_delta(a_i^T x - b_i)``, huber(r) = r^2/2 for |r| <= delta,
    delta (|r| - delta/2) beyond: Lipschitz with constant delta * ||a_i||."""

    def losses(self, x, idx):
        r = _rows(self.data["A"], idx) @ x - _rows(self.data["b"], idx)
        d = self.params["delta"]
        return np.where(np.abs(r) <= d, 0.5 * r * r, d * (np.abs(r) - 0.5 * d))

    def sample_grads_mean(self, x, idx):
        A, b = _rows(self.data["A"], idx), _rows(self.data["b"], idx)
        d = self.params["delta"]
        return A.T @ np.clip(A @ x - b, -d, d) / A.shape[0]

    def cvx_objective(self, y):
        r = self.data["A"] @ y - self.data["b"]
        return cp.sum(cp.huber(r, self.params["delta"])) / (2 * self.m)  # cp.huber = 2 * ours

    def reference_solve(self):
        return _smooth_reference(self, "BFGS + L-BFGS-B")

    def unique_minimizer(self, x_star):
        # Hessian A_Q^T A_Q / m over the quadratic-zone rows Q is positive definite there
        A = self.data["A"]
        quad = np.abs(A @ x_star - self.data["b"]) < self.params["delta"] * (1 - 1e-9)
        return _full_column_rank(A[quad])


class Logistic(Problem):
    """Logistic regression ``mean log(1 + exp(-y_i a_i^T x))`` on non-separable labels."""

    def losses(self, x, idx):
        A, y = _rows(self.data["A"], idx), _rows(self.data["y"], idx)
        return np.logaddexp(0.0, -y * (A @ x))

    def sample_grads_mean(self, x, idx):
        A, y = _rows(self.data["A"], idx), _rows(self.data["y"], idx)
        margin = y * (A @ x)
        return -(A.T @ (y * np.exp(-np.logaddexp(0.0, margin)))) / A.shape[0]

    def cvx_objective(self, y):
        return cp.sum(cp.logistic(-cp.multiply(self.data["y"], self.data["A"] @ y))) / self.m

    def reference_solve(self):
        return _smooth_reference(self, "BFGS + L-BFGS-B")

    def unique_minimizer(self, x_star):
        return _full_column_rank(self.data["A"])  # logistic loss is strictly convex in A x


class L1Ball(Problem):
    """Linear objective over a weighted L1 ball, in exact-penalty form:
    ``f(x) = <c, x> + lam * max(0, ||w*x||_1 - r)`` with ``lam > max|c_j|/w_j``, so its
    minimisers are those of the constrained problem; closed form
    ``f* = -r max_j |c_j| / w_j``. m = 1."""

    def _norm_excess(self, x):
        return np.sum(self.data["w"] * np.abs(x)) - self.params["r"]

    def losses(self, x, idx):
        return np.array([self.data["c"] @ x + self.params["lam"] * max(0.0, self._norm_excess(x))])

    def sample_grads_mean(self, x, idx):
        outside = self._norm_excess(x) > 0
        return self.data["c"] + self.params["lam"] * outside * self.data["w"] * np.sign(x)

    def cvx_objective(self, y):
        c, w = self.data["c"], self.data["w"]
        return c @ y + self.params["lam"] * cp.pos(cp.norm1(cp.multiply(w, y)) - self.params["r"])

    def reference_solve(self):
        c, w, r = self.data["c"], self.data["w"], self.params["r"]
        j = int(np.argmax(np.abs(c) / w))
        x = np.zeros_like(c)
        x[j] = -np.sign(c[j]) * r / w[j]
        return x, "closed form (vertex of the L1 ball)"

    def unique_minimizer(self, x_star):
        ratio = np.abs(self.data["c"]) / self.data["w"]
        return int(np.sum(ratio >= np.max(ratio) * (1 - 1e-12))) == 1  # a unique best vertex


class NesterovWorst(Problem):
    """Nesterov's worst-case function (Lectures on Convex Optimization, 2018, Thm 3.2.1):
    ``f(x) = gamma max_{i<p} x_i + mu/2 ||x||^2`` with ``gamma = M sqrt(p)/(1+sqrt(p))``,
    ``mu = M/((1+sqrt(p)) R)``; ``x*_i = -gamma/(mu p)`` for i < p, ``||x* - 0|| = R``.
    The subgradient oracle returns the first maximal index (the resisting oracle). It is
    M-Lipschitz on ``||x|| <= R``; ``lipschitz`` here holds on ``||x|| <= 2R``. m = 1."""

    def losses(self, x, idx):
        p, g, mu = self.params["p"], self.params["gamma"], self.params["mu"]
        return np.array([g * np.max(x[:p]) + 0.5 * mu * (x @ x)])

    def sample_grads_mean(self, x, idx):
        p, g, mu = self.params["p"], self.params["gamma"], self.params["mu"]
        e = np.zeros_like(x)
        e[int(np.argmax(x[:p]))] = g
        return e + mu * x

    def cvx_objective(self, y):
        p, g, mu = self.params["p"], self.params["gamma"], self.params["mu"]
        return g * cp.max(y[:p]) + 0.5 * mu * cp.sum_squares(y)

    def reference_solve(self):
        p, g, mu = self.params["p"], self.params["gamma"], self.params["mu"]
        x = np.zeros(self.n)
        x[:p] = -g / (mu * p)
        return x, "closed form (Nesterov Thm 3.2.1)"

    def unique_minimizer(self, x_star):
        return True  # mu-strongly convex
