"""Problem families (docs/spec.md section 5): all convex and Lipschitz, each with an independent
second solver. ``scale`` > 0 gives the badly scaled variant: columns of the design (or
coordinates) multiplied by ``exp(N(0, scale))``, the regime where adaptive scaling matters.

Longer than the project's ~400 lines: seven small, independent families, each a class (its
loss, subgradient and second solver) and a constructor that checks its sizes.
"""

from __future__ import annotations

from typing import Any

import cvxpy as cp
import numpy as np
from scipy.optimize import linprog, minimize

from paramscale.synthetic.problem import Problem


def _design(rng: np.random.Generator, m: int, n: int, scale: float) -> np.ndarray:
    A = rng.standard_normal((m, n))
    return A * np.exp(scale * rng.standard_normal(n)) if scale > 0 else A


def mean_abs_bound(A: np.ndarray) -> tuple[float, float]:
    """Bounds of ||(1/m) A^T s|| over |s_i| <= 1: full (min of the spectral bound
    ||A||_2/sqrt(m) and the mean row norm) and per-sample (max row norm)."""
    rows = np.linalg.norm(A, axis=1)
    full = min(np.linalg.norm(A, 2) / np.sqrt(A.shape[0]), float(np.mean(rows)))
    return float(full), float(np.max(rows))


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


# -- constructors (docs/spec.md section 9 names) -------------------------------------------------


DERIVED = ("gamma", "mu", "lam")  # parameters computed from the others: kept out of names


def make(
    cls: type[Problem],
    family: str,
    params: dict[str, Any],
    data: dict,
    n: int,
    lipschitz: tuple[float, float],
    m: int,
    **extra: Any,
) -> Problem:
    shown = {k: v for k, v in params.items() if k not in DERIVED}
    tag = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
    return cls(
        name=f"{family}({tag})",
        family=family,
        params=params,
        data=data,
        x0=np.zeros(n),
        lipschitz=lipschitz[0],
        lipschitz_sample=lipschitz[1],
        m=m,
        **extra,
    )


def _check_sizes(m: int, n: int) -> None:
    for name, v in (("m", m), ("n", n)):
        if not (isinstance(v, (int, np.integer)) and v >= 1):
            raise ValueError(f"Invalid {name}: {v!r} (expected an int >= 1)")


def lad(m: int = 60, n: int = 8, scale: float = 0.0, *, seed: int = 0) -> Problem:
    """Least absolute deviations with heavy-tailed (Laplace) noise."""
    _check_sizes(m, n)
    rng = np.random.default_rng([seed, 1])
    A = _design(rng, m, n, scale)
    b = A @ rng.standard_normal(n) + rng.laplace(size=m)
    params = {"m": m, "n": n, "scale": float(scale), "seed": seed}
    return make(LAD, "lad", params, {"A": A, "b": b}, n, mean_abs_bound(A), m)


def hinge(
    m: int = 60, n: int = 8, scale: float = 0.0, l1: float = 0.0, *, seed: int = 0
) -> Problem:
    """Hinge-loss SVM on noisy (non-separable) labels; ``l1 > 0`` adds ``l1 ||x||_1``."""
    _check_sizes(m, n)
    if not l1 >= 0:
        raise ValueError(f"Invalid l1: {l1!r} (expected >= 0)")
    rng = np.random.default_rng([seed, 2])
    A = _design(rng, m, n, scale)
    y = np.sign(A @ rng.standard_normal(n) + 0.5 * np.std(A @ np.ones(n)) * rng.standard_normal(m))
    y[y == 0] = 1.0
    full, sample = mean_abs_bound(A)
    params = {"m": m, "n": n, "scale": float(scale), "l1": float(l1), "seed": seed}
    family = "hinge_l1" if l1 > 0 else "hinge"
    bound = (full + l1 * np.sqrt(n), sample + l1 * np.sqrt(n))
    return make(Hinge, family, params, {"A": A, "y": y}, n, bound, m)


def max_affine(k: int = 30, n: int = 8, scale: float = 0.0, *, seed: int = 0) -> Problem:
    """``max_i (a_i^T x + b_i)`` with ``k`` pieces; bounded below by construction."""
    _check_sizes(k, n)
    rng = np.random.default_rng([seed, 3])
    A = _design(rng, k, n, scale)
    w = rng.uniform(0.5, 1.5, size=k)
    A = A - np.outer(np.ones(k), w @ A / w.sum())  # sum_i w_i a_i = 0, w > 0: bounded below
    b = rng.standard_normal(k)
    L = float(np.max(np.linalg.norm(A, axis=1)))
    params = {"k": k, "n": n, "scale": float(scale), "seed": seed}
    return make(MaxAffine, "max_affine", params, {"A": A, "b": b}, n, (L, L), 1)


def huber(
    m: int = 60, n: int = 8, scale: float = 0.0, delta: float = 1.0, *, seed: int = 0
) -> Problem:
    """Huber regression with outliers (Student-t noise)."""
    _check_sizes(m, n)
    if not delta > 0:
        raise ValueError(f"Invalid delta: {delta!r} (expected > 0)")
    rng = np.random.default_rng([seed, 4])
    A = _design(rng, m, n, scale)
    b = A @ rng.standard_normal(n) + rng.standard_t(2, size=m)
    full, sample = mean_abs_bound(A)
    params = {"m": m, "n": n, "scale": float(scale), "delta": float(delta), "seed": seed}
    return make(Huber, "huber", params, {"A": A, "b": b}, n, (delta * full, delta * sample), m)


def logistic(m: int = 80, n: int = 6, scale: float = 0.0, *, seed: int = 0) -> Problem:
    """Logistic regression with label noise. Non-separable by construction, so a minimiser
    exists: the first 2n samples are n pairs (a_j, +1), (a_j, -1) with a_j spanning R^n,
    so every direction x != 0 has a sample of negative margin. Needs m >= 2n."""
    _check_sizes(m, n)
    if m < 2 * n:
        raise ValueError(f"Invalid m: {m!r} (logistic needs m >= 2n = {2 * n})")
    rng = np.random.default_rng([seed, 5])
    A = _design(rng, m, n, scale)
    A[n : 2 * n] = A[:n]
    y = np.sign(A @ rng.standard_normal(n) + np.std(A @ np.ones(n)) * rng.standard_normal(m))
    y[y == 0] = 1.0
    y[n : 2 * n] = -y[:n]
    params = {"m": m, "n": n, "scale": float(scale), "seed": seed}
    return make(Logistic, "logistic", params, {"A": A, "y": y}, n, mean_abs_bound(A), m)


def l1_ball(n: int = 8, r: float = 1.0, scale: float = 0.0, *, seed: int = 0) -> Problem:
    """Linear objective over the (weighted, if ``scale`` > 0) L1 ball of radius r."""
    _check_sizes(1, n)
    if not r > 0:
        raise ValueError(f"Invalid r: {r!r} (expected > 0)")
    rng = np.random.default_rng([seed, 6])
    c = rng.standard_normal(n)
    w = np.exp(scale * rng.standard_normal(n)) if scale > 0 else np.ones(n)
    lam = 2.0 * float(np.max(np.abs(c) / w)) + 1.0  # exact penalty: lam > max|c_j|/w_j
    L = float(np.linalg.norm(c) + lam * np.linalg.norm(w))
    params = {"n": n, "r": float(r), "scale": float(scale), "lam": lam, "seed": seed}
    return make(L1Ball, "l1_ball", params, {"c": c, "w": w}, n, (L, L), 1)


def nesterov_worst(
    n: int = 20, p: int | None = None, M: float = 1.0, R: float = 1.0, *, seed: int = 0
) -> Problem:
    """Nesterov's worst-case function on R^n with ``p <= n`` active coordinates (default n):
    any method whose iterates lie in x0 + span(gradients) has, after k < p steps,
    ``f(x_k) - f* >= M R / (2 (1 + sqrt(p)))`` (Nesterov Thm 3.2.1). Deterministic (seed
    unused, kept for a uniform signature)."""
    p = n if p is None else p
    _check_sizes(p, n)
    if p > n:
        raise ValueError(f"Invalid p: {p!r} (expected 1 <= p <= n = {n})")
    gamma = M * np.sqrt(p) / (1 + np.sqrt(p))
    mu = M / ((1 + np.sqrt(p)) * R)
    params = {
        "n": n,
        "p": p,
        "M": float(M),
        "R": float(R),
        "gamma": float(gamma),
        "mu": float(mu),
        "seed": seed,
    }
    L = float(gamma + mu * 2 * R)
    return make(NesterovWorst, "nesterov_worst", params, {}, n, (L, L), 1, lipschitz_radius=2 * R)


def diabetes_lad() -> Problem:
    """Real data: LAD regression on scikit-learn's bundled diabetes set (442 x 10 + bias)."""
    from sklearn.datasets import load_diabetes

    X, t = load_diabetes(return_X_y=True)
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    params = {"m": A.shape[0], "n": A.shape[1], "dataset": "diabetes"}
    return make(LAD, "lad", params, {"A": A, "b": t}, A.shape[1], mean_abs_bound(A), A.shape[0])


def breast_cancer_hinge() -> Problem:
    """Real data: hinge SVM on scikit-learn's bundled breast-cancer set, raw (badly scaled)
    features, 569 x 30 + bias."""
    from sklearn.datasets import load_breast_cancer

    X, t = load_breast_cancer(return_X_y=True)
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    y = np.where(t > 0, 1.0, -1.0)
    params = {"m": A.shape[0], "n": A.shape[1], "l1": 0.0, "dataset": "breast_cancer"}
    return make(Hinge, "hinge", params, {"A": A, "y": y}, A.shape[1], mean_abs_bound(A), A.shape[0])


def from_params(family: str, params: dict[str, Any]) -> Problem:
    """Rebuild a problem from its ``family`` and ``params`` (e.g. a printed counterexample)."""
    import inspect

    if str(params.get("dataset", "")).startswith("user:"):
        raise ValueError(
            f"Invalid params: {params!r} (a problem made by synthetic.from_data cannot be "
            "rebuilt from its parameters: pass its data again)"
        )
    if params.get("dataset") == "diabetes":
        return diabetes_lad()
    if params.get("dataset") == "breast_cancer":
        return breast_cancer_hinge()
    makers = {
        "lad": lad,
        "hinge": hinge,
        "hinge_l1": hinge,
        "max_affine": max_affine,
        "huber": huber,
        "logistic": logistic,
        "l1_ball": l1_ball,
        "nesterov_worst": nesterov_worst,
    }
    if family not in makers:
        raise ValueError(f"Invalid family: {family!r} (expected one of {tuple(makers)})")
    make = makers[family]
    accepted = inspect.signature(make).parameters
    return make(**{k: v for k, v in params.items() if k in accepted})
