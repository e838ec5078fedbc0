"""The paper's convergence claims (SPEC section 4) as objects with executable checks.

A claim has an id, its statement in the spec's notation, its assumptions, a kind
(``theorem``: must hold, a violation is a bug or a false proof; ``conjecture``: measured and
reported), ``applies(trajectory, problem)`` and ``check(trajectory, problem, solution)``.

Notation (SPEC 4): ``rho_k = max(alpha_{k+1} / alpha_k)``, ``pi_K = prod_{k<K} rho_k**2``,
``R_k = ||x_k - x*||_{alpha_k}**2``, ``kappa = (2c - 1)/c**2``, ``h_k = f(x_k) - f*``,
``g'_k = g_k / alpha_k``. A theorem "holds" when every violation ``lhs - rhs`` is below
``1e-9 * (1 + |rhs|)``; ``margin`` is the worst ``(lhs - rhs) / (1 + |rhs|)`` (negative: holds
with room), ``tightness`` the median ``rhs / lhs`` over the checked steps (1: tight).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theory.combinator import ParameterScaled
from theory.scaling import identity
from theory.stepsize import dadapt, polyak

TOL = 1e-9


@dataclass(frozen=True)
class Result:
    claim: str
    holds: bool
    margin: float
    first_violation: int | None
    tightness: float
    measured: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "holds": self.holds,
            "margin": self.margin,
            "first_violation": self.first_violation,
            "tightness": self.tightness,
            "measured": self.measured,
        }


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    assumptions: str
    kind: str  # "theorem" | "conjecture"
    applies: Callable[[Any, Any], bool]
    evaluate: Callable[[Any, Any, Any], Result]

    def check(self, trajectory: Any, problem: Any, solution: Any) -> Result:
        if not self.applies(trajectory, problem):
            raise ValueError(
                f"Claim {self.id} does not apply to {trajectory.optimizer!r} on "
                f"{problem.name!r} (assumptions: {self.assumptions})"
            )
        return self.evaluate(trajectory, problem, solution)


# -- shared quantities ------------------------------------------------------------------


def compare(claim: str, lhs: np.ndarray, rhs: np.ndarray, measured=None, steps=None) -> Result:
    """``lhs <= rhs`` elementwise (over steps ``steps``, default 0..len-1)."""
    lhs, rhs = np.asarray(lhs, dtype=float), np.asarray(rhs, dtype=float)
    steps = np.arange(len(lhs)) if steps is None else np.asarray(steps)
    if len(lhs) == 0:
        return Result(claim, True, -math.inf, None, math.nan, measured or {})
    with np.errstate(invalid="ignore", over="ignore"):
        rel = (lhs - rhs) / (1 + np.abs(rhs))
    # a NaN side, or an infinite lhs against a finite bound, is a violation, never a pass
    undecided = np.isnan(lhs) | (np.isinf(lhs) & np.isfinite(rhs)) | np.isnan(rhs)
    bad = np.nonzero((rel > TOL) | undecided)[0]
    rel = np.where(undecided, np.inf, rel)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(lhs > 0, rhs / lhs, np.nan)
    tight = float(np.nanmedian(ratio)) if np.any(np.isfinite(ratio)) else math.nan
    first = int(steps[bad[0]]) if len(bad) else None
    return Result(claim, len(bad) == 0, float(np.max(rel)), first, tight, measured or {})


def rule_of(traj: Any) -> Any:
    return getattr(traj.config, "scaling", None)


def step_rule(traj: Any) -> Any:
    return getattr(traj.config, "step_rule", None)


def is_plain(traj: Any) -> bool:
    """x_{k+1} = x_k - lam_k g_k / alpha_k**2 exactly (no momentum, no first moment)."""
    cfg = traj.config
    return isinstance(cfg, ParameterScaled) and cfg.momentum == 0 and cfg.first_moment == 0


def monotone(traj: Any) -> bool:
    rule = rule_of(traj)
    return bool(rule is not None and rule.monotone)


def rho(traj: Any) -> np.ndarray:
    """rho_k = max(alpha_{k+1} / alpha_k), k = 0..K-2."""
    a = traj.alpha
    return np.max(a[1:] / a[:-1], axis=1) if len(a) > 1 else np.zeros(0)


def pi(traj: Any) -> np.ndarray:
    """pi_k = prod_{j<k} rho_j**2, k = 0..K-1 (pi_0 = 1)."""
    return np.concatenate([[1.0], np.cumprod(rho(traj) ** 2)])


def h(traj: Any, solution: Any) -> np.ndarray:
    return traj.f - solution.f


def metric_norm(v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """||v||_a = ||a * v||_2 along the last axis, scaled so diverged runs do not overflow."""
    w = np.abs(a * v)
    m = np.max(w, axis=-1, keepdims=True)
    safe = np.where(m > 0, m, 1.0)
    return np.squeeze(m, -1) * np.sqrt(np.sum((w / safe) ** 2, axis=-1))


def metric_sq(v: np.ndarray, a: np.ndarray) -> np.ndarray:
    return metric_norm(v, a) ** 2


def scaled_grad_sq(traj: Any) -> np.ndarray:
    return metric_sq(traj.grad, 1.0 / traj.alpha)  # ||g'_k||**2


def kappa(c: float) -> float:
    return (2 * c - 1) / c**2


def r0(traj: Any, problem: Any) -> float:
    """R_0 = D_{alpha_0}**2 with the minimiser nearest to x_0 in the alpha_0 metric."""
    return problem.distance(traj.x[0], traj.alpha[0]) ** 2


# -- A: PS-SPS and the scaling rules ----------------------------------------------------


def _applies_pssps(traj, problem) -> bool:
    sr = step_rule(traj)
    return is_plain(traj) and isinstance(sr, polyak) and sr.c > 0.5 and sr.eta_max == math.inf


def _a1(traj, problem, sol) -> Result:
    a = traj.alpha
    g_inf = float(np.max(np.abs(traj.grad)))
    eps = rule_of(traj).eps
    mono = np.min(a[1:] - a[:-1], axis=1) if len(a) > 1 else np.zeros(0)
    # alpha_{k+1} >= alpha_k as  -min(alpha_{k+1} - alpha_k) <= 0; alpha_k**2 <= G_inf + eps
    lhs = np.concatenate([-mono, np.max(a**2, axis=1)])
    rhs = np.concatenate([np.zeros_like(mono), np.full(len(a), g_inf + eps)])
    steps = np.concatenate([np.arange(1, len(a)), np.arange(len(a))])
    return compare("A1", lhs, rhs, {"G_inf": g_inf}, steps)


def _a2(traj, problem, sol) -> Result:
    c = step_rule(traj).c
    x, a, K = traj.x, traj.alpha, traj.iters
    hk = h(traj, sol)[:K]
    gsq = scaled_grad_sq(traj)
    ok = gsq > 0
    lhs = metric_sq(x[1:] - sol.x, a)  # ||x_{k+1} - x*||_{alpha_k}**2
    rk = metric_sq(x[:-1] - sol.x, a)
    rhs = rk - kappa(c) * np.where(ok, hk**2 / np.where(ok, gsq, 1.0), 0.0)
    return compare("A2", lhs[ok], rhs[ok], steps=np.nonzero(ok)[0])


def _a3(traj, problem, sol) -> Result:
    x, a = traj.x, traj.alpha
    v = x[1:-1] - sol.x  # v = x_{k+1} - x*, k = 0..K-2
    lhs = metric_norm(v, a[1:])
    rhs = rho(traj) * metric_norm(v, a[:-1])
    return compare("A3", lhs, rhs)


def _a4(traj, problem, sol) -> Result:
    a = traj.alpha
    log_prod_rho = np.cumsum(np.log(rho(traj)))  # log prod_{k<K} rho_k, K = 1..
    log_p = np.sum(np.log(a[1:] / a[0]), axis=1)  # log P_K = sum_i log(alpha_K,i/alpha_0,i)
    # compare in the log domain (products overflow): log prod rho <= log P_K
    return compare("A4", log_prod_rho, log_p, steps=np.arange(1, len(a)))


def _a5(traj, problem, sol) -> Result:
    c = step_rule(traj).c
    K, kap = traj.iters, kappa(step_rule(traj).c)
    hk = np.maximum(h(traj, sol)[:K], 0.0)
    gsq = scaled_grad_sq(traj)
    pik = pi(traj)[:K]
    R0 = r0(traj, problem)
    D = math.sqrt(R0)
    ok = gsq > 0
    terms = np.where(ok, hk**2 / (pik * np.where(ok, gsq, 1.0)), 0.0)
    sum_lhs = kap * np.cumsum(terms)  # Eq. 16 at every prefix K
    ks = np.arange(1, K + 1)
    best = np.minimum.accumulate(hk)
    g_max = np.sqrt(np.maximum.accumulate(gsq))
    rate_rhs = np.sqrt(np.maximum.accumulate(pik)) * D * g_max / np.sqrt(kap * ks)  # Eq. 17
    lhs, rhs = [sum_lhs, best], [np.full(K, R0), rate_rhs]
    measured = {"R0": R0, "c": c}
    if monotone(traj):  # a priori form: P_K and G / min(alpha_0)
        log_p = np.concatenate([[0.0], np.sum(np.log(traj.alpha[1:] / traj.alpha[0]), axis=1)])
        G = np.maximum.accumulate(np.linalg.norm(traj.grad, axis=1))
        prior = np.exp(log_p) * D * (G / np.min(traj.alpha[0])) / np.sqrt(kap * ks)
        lhs.append(best)
        rhs.append(prior)
    steps = np.concatenate([np.arange(K)] * len(lhs))
    res = compare("A5", np.concatenate(lhs), np.concatenate(rhs), measured, steps)
    rate = compare("A5", best, rate_rhs)  # tightness of the rate form, the one plotted
    return Result("A5", res.holds, res.margin, res.first_violation, rate.tightness, measured)


def _a6(traj, problem, sol) -> Result:
    log_pi = np.log(pi(traj))
    K = len(log_pi)
    slope = float(np.polyfit(np.arange(K), log_pi, 1)[0]) if K > 2 else math.nan
    hk = h(traj, sol)
    converged = float(np.min(hk) / max(hk[0], 1e-300))
    measured = {
        "log_pi_final": float(log_pi[-1]),
        "log_pi_slope": slope,
        "best_over_initial_gap": converged,
    }
    return Result("A6", bool(converged < 1e-2), math.nan, None, math.nan, measured)


# -- B: PS-DA-SGD ------------------------------------------------------------------------


def _is_dadapt(traj) -> bool:
    return isinstance(step_rule(traj), dadapt)


def _b1(traj, problem, sol) -> Result:
    d = traj.info["d"]
    return compare("B1", -np.diff(d), np.zeros(len(d) - 1), steps=np.arange(1, len(d)))


def _b2(traj, problem, sol) -> Result:
    K = traj.iters
    lam = traj.lr
    gsq = scaled_grad_sq(traj)
    pik = pi(traj)[:K]
    R0 = r0(traj, problem)
    w = lam / pik
    ok = np.cumsum(w) > 0
    cw = np.where(ok, np.cumsum(w), 1.0)
    xt = np.cumsum(w[:, None] * traj.x[:K], axis=0) / cw[:, None]  # xtilde_K, weights lam/pi
    lhs = np.array([problem.f(v) for v in xt]) - sol.f
    rhs = (R0 + np.cumsum(lam**2 * gsq / pik)) / (2 * cw)
    lhs_all, rhs_all, steps = [lhs[ok]], [rhs[ok]], [np.nonzero(ok)[0]]
    if monotone(traj):
        cl = np.cumsum(lam)
        okm = cl > 0
        cl1 = np.where(okm, cl, 1.0)
        xb = np.cumsum(lam[:, None] * traj.x[:K], axis=0) / cl1[:, None]
        pi_next = np.concatenate([pik[1:], [np.nan]])  # pi_K = prod_{k<K} rho_k**2
        valid = okm & np.isfinite(pi_next)
        lhs_m = np.array([problem.f(v) for v in xb]) - sol.f
        rhs_m = pi_next * (R0 + np.cumsum(lam**2 * gsq)) / (2 * cl1)
        lhs_all.append(lhs_m[valid])
        rhs_all.append(rhs_m[valid])
        steps.append(np.nonzero(valid)[0])
    res = compare(
        "B2", np.concatenate(lhs_all), np.concatenate(rhs_all), {"R0": R0}, np.concatenate(steps)
    )
    first = compare("B2", lhs[ok], rhs[ok])
    return Result(
        "B2",
        res.holds,
        res.margin,
        res.first_violation,
        first.tightness,
        {"R0": R0, "final_bound": float(rhs[-1]), "final_gap": float(lhs[-1])},
    )


def _b3(traj, problem, sol) -> Result:
    d = traj.info["d"]
    dist = metric_norm(traj.x[0] - sol.x, traj.alpha)  # ||x0 - x*||_{alpha_k}
    ratio = d / dist
    return Result(
        "B3",
        bool(np.all(np.isfinite(ratio))),
        math.nan,
        None,
        math.nan,
        {"max_d_over_D": float(np.max(ratio)), "final_d_over_D": float(ratio[-1])},
    )


def _b4(traj, problem, sol, factor: float = 0.5, claim: str = "B4") -> Result:
    """``factor * dhat <= D``: 1/2 is the D-Adaptation lemma (theorem B4), 1 the code's
    estimate (conjecture B4code)."""
    D = problem.distance(traj.x[0])
    dhat = traj.info["dhat"]
    ok = np.isfinite(dhat)
    res = compare(claim, factor * dhat[ok], np.full(ok.sum(), D), steps=np.nonzero(ok)[0])
    measured = {"D": D, "max_dhat_over_D": float(np.max(dhat[ok]) / D) if ok.any() else 0.0}
    return Result(claim, res.holds, res.margin, res.first_violation, res.tightness, measured)


def _applies_b4(traj, problem) -> bool:
    return (
        _is_dadapt(traj)
        and is_plain(traj)
        and isinstance(rule_of(traj), identity)
        and step_rule(traj).dhat == "code"
    )


def _b5(traj, problem, sol) -> Result:
    res = _b2(traj, problem, sol)
    K = traj.iters
    lam, gsq, pik = traj.lr, scaled_grad_sq(traj), pi(traj)[:K]
    R0 = res.measured["R0"]
    w = np.cumsum(lam / pik)
    bound = (R0 + np.cumsum(lam**2 * gsq / pik)) / (2 * np.where(w > 0, w, np.nan))
    ks = np.arange(1, K + 1)
    half = slice(K // 2, K)
    slope = float(np.polyfit(np.log(ks[half]), np.log(bound[half]), 1)[0])
    measured = {"slope": slope, "final_bound": float(bound[-1])}
    return Result("B5", bool(slope < -0.25), math.nan, None, math.nan, measured)


# -- C, L: baselines and the lower bound ---------------------------------------------------


def _c1(traj, problem, sol) -> Result:
    K = traj.iters
    D = problem.distance(traj.x[0])
    best = np.minimum.accumulate(h(traj, sol)[:K])
    G = np.maximum.accumulate(np.linalg.norm(traj.grad, axis=1))
    return compare("C1", best, D * G / np.sqrt(np.arange(1, K + 1)), {"D": D})


def _c2(traj, problem, sol) -> Result:
    K = traj.iters
    D = problem.distance(traj.x[0])
    eta = step_rule(traj).lr
    G = D / (eta * math.sqrt(K))  # the G the step was built with: eta = D / (G sqrt(K))
    g_seen = float(np.max(np.linalg.norm(traj.grad, axis=1)))
    best = float(np.min(h(traj, sol)[:K]))
    res = compare("C2", [best], [D * G / math.sqrt(K)], {"D": D, "G": G}, [K - 1])
    if g_seen > G * (1 + 1e-12):  # the theorem assumes G bounds every subgradient seen
        return Result("C2", False, res.margin, 0, res.tightness, {**res.measured, "G_seen": g_seen})
    return res


def _applies_l1(traj, problem) -> bool:
    return problem.family == "nesterov_worst" and np.all(traj.x[0] == 0)


def _l1(traj, problem, sol) -> Result:
    p, M, R = problem.params["p"], problem.params["M"], problem.params["R"]
    K = min(traj.iters, p - 1)  # n = p >= K + 1
    hk = h(traj, sol)[: K + 1]
    bound = M * R / (2 * (2 + np.sqrt(K + 1)))  # Nesterov Thm 3.2.1 (as stated in SPEC L1)
    # lower bound: observed h_k >= bound, i.e. bound - h_k <= 0
    res = compare("L1", bound - hk, np.zeros(K + 1), {"bound": bound})
    tight = float(np.min(hk) / bound)
    return Result("L1", res.holds, res.margin, res.first_violation, tight, res.measured)


def _always(traj, problem) -> bool:
    return True


CLAIMS: dict[str, Claim] = {
    c.id: c
    for c in [
        Claim(
            "A1",
            "alpha_{k+1} >= alpha_k and alpha_k**2 <= G_inf + eps",
            "AMSGrad rule (monotone form)",
            "theorem",
            lambda t, p: type(rule_of(t)).__name__ == "amsgrad" and rule_of(t).monotone,
            _a1,
        ),
        Claim(
            "A2",
            "||x_{k+1}-x*||_{alpha_k}**2 <= R_k - kappa h_k**2 / ||g'_k||**2",
            "PS-SPS, c > 1/2, eta_max = inf, no momentum; any rule",
            "theorem",
            _applies_pssps,
            _a2,
        ),
        Claim(
            "A3",
            "||x_{k+1}-x*||_{alpha_{k+1}} <= rho_k ||x_{k+1}-x*||_{alpha_k}",
            "any positive alpha",
            "theorem",
            _always,
            _a3,
        ),
        Claim(
            "A4",
            "prod_{k<K} rho_k <= P_K = prod_i alpha_{K,i}/alpha_{0,i}",
            "monotone rule",
            "theorem",
            lambda t, p: monotone(t),
            _a4,
        ),
        Claim(
            "A5",
            "kappa sum h_k**2/(pi_k ||g'_k||**2) <= R_0; min h_k <= sqrt(max pi_k) "
            "D_{alpha_0} max||g'_k|| / sqrt(kappa K); monotone: P_K D G/min(alpha_0) / "
            "sqrt(kappa K)",
            "PS-SPS, c > 1/2, eta_max = inf, no momentum",
            "theorem",
            _applies_pssps,
            _a5,
        ),
        Claim(
            "A6",
            "non-monotone rules: growth of log pi_k, and does PS-SPS still converge",
            "PS-SPS with Adam / RMSProp",
            "conjecture",
            lambda t, p: _applies_pssps(t, p) and not monotone(t),
            _a6,
        ),
        Claim(
            "B1",
            "d_k non-decreasing",
            "PS-DA-SGD, monotone rule",
            "theorem",
            lambda t, p: _is_dadapt(t) and monotone(t),
            _b1,
        ),
        Claim(
            "B2",
            "f(xtilde_K) - f* <= (R_0 + sum lam_k**2 ||g'_k||**2/pi_k) / "
            "(2 sum lam_k/pi_k); monotone: f(xbar_K) - f* <= pi_K (R_0 + sum lam_k**2 "
            "||g'_k||**2) / (2 sum lam_k)",
            "x_{k+1} = x_k - lam_k g_k/alpha_k**2 (no momentum); any rule",
            "theorem",
            lambda t, p: is_plain(t),
            _b2,
        ),
        Claim(
            "B3",
            "d_k stays bounded: max_k d_k / ||x_0 - x*||_{alpha_k}",
            "PS-DA-SGD",
            "conjecture",
            lambda t, p: _is_dadapt(t),
            _b3,
        ),
        Claim(
            "B4",
            "dhat/2 <= D (the D-Adaptation lemma)",
            "D-Adapt SGD: identity rule, no momentum, dhat='code'",
            "theorem",
            _applies_b4,
            _b4,
        ),
        Claim(
            "B4code",
            "dhat <= D (the code's estimate, without the lemma's 1/2)",
            "D-Adapt SGD: identity rule, no momentum, dhat='code'",
            "conjecture",
            _applies_b4,
            lambda t, p, s: _b4(t, p, s, 1.0, "B4code"),
        ),
        Claim(
            "B5",
            "gamma_k = 1/sqrt(k+1): the B2 bound -> 0, log-log slope near -1/2",
            "PS-DA-SGD, monotone rule, no momentum, decaying schedule",
            "conjecture",
            lambda t, p: (
                _is_dadapt(t) and is_plain(t) and monotone(t) and step_rule(t).schedule is not None
            ),
            _b5,
        ),
        Claim(
            "C1",
            "min_{k<K} h_k <= D G / sqrt(K)",
            "SPS (identity), c = 1",
            "theorem",
            lambda t, p: (
                _applies_pssps(t, p) and isinstance(rule_of(t), identity) and step_rule(t).c == 1.0
            ),
            _c1,
        ),
        Claim(
            "C2",
            "min_{k<K} h_k <= D G / sqrt(K)",
            "subgradient method, eta = D / (G sqrt(K)), G >= every ||g_k||",
            "theorem",
            lambda t, p: (
                is_plain(t)
                and isinstance(rule_of(t), identity)
                and getattr(t.config, "name", "") == "sgd"
            ),
            _c2,
        ),
        Claim(
            "L1",
            "h_k >= G D / (2 (2 + sqrt(K+1))) for every k <= K, n >= K + 1",
            "Nesterov's worst-case function, x_0 = 0, iterates in x_0 + span(gradients) "
            "(any diagonal-scaled method)",
            "theorem",
            _applies_l1,
            _l1,
        ),
    ]
}


def check(claim_id: str, trajectory: Any, problem: Any, solution: Any) -> Result:
    """Evaluate one claim on a recorded trajectory (SPEC section 9)."""
    if claim_id not in CLAIMS:
        raise ValueError(f"Invalid claim_id: {claim_id!r} (expected one of {tuple(CLAIMS)})")
    return CLAIMS[claim_id].check(trajectory, problem, solution)


def bound_series(claim_id: str, traj: Any, problem: Any, solution: Any) -> dict[str, np.ndarray]:
    """The quantity a rate theorem bounds and its bound, per step K = 1..: for figures.

    A5 (rate form) and C1 bound the best-so-far gap ``min_{k<K} h_k``; B2 bounds the gap of
    the weighted average ``f(xtilde_K) - f*``; C2 bounds the best gap at the final K only.
    """
    K = traj.iters
    ks = np.arange(1, K + 1)
    best = np.minimum.accumulate(h(traj, solution)[:K])
    if claim_id == "A5":
        kap = kappa(step_rule(traj).c)
        D = math.sqrt(r0(traj, problem))
        g_max = np.sqrt(np.maximum.accumulate(scaled_grad_sq(traj)))
        bound = np.sqrt(np.maximum.accumulate(pi(traj)[:K])) * D * g_max / np.sqrt(kap * ks)
        return {"k": ks, "observed": best, "bound": bound}
    if claim_id == "C1":
        D = problem.distance(traj.x[0])
        G = np.maximum.accumulate(np.linalg.norm(traj.grad, axis=1))
        return {"k": ks, "observed": best, "bound": D * G / np.sqrt(ks)}
    if claim_id == "C2":
        D = problem.distance(traj.x[0])
        G = D / (step_rule(traj).lr * math.sqrt(K))
        bound = np.full(K, np.nan)
        bound[-1] = D * G / math.sqrt(K)
        return {"k": ks, "observed": best, "bound": bound}
    if claim_id == "B2":
        lam, gsq, pik = traj.lr, scaled_grad_sq(traj), pi(traj)[:K]
        R0 = r0(traj, problem)
        w = np.cumsum(lam / pik)
        cw = np.where(w > 0, w, np.nan)
        xt = np.cumsum((lam / pik)[:, None] * traj.x[:K], axis=0) / cw[:, None]
        with np.errstate(invalid="ignore"):
            observed = np.array([problem.f(v) if np.all(np.isfinite(v)) else np.nan for v in xt])
        bound = (R0 + np.cumsum(lam**2 * gsq / pik)) / (2 * cw)
        return {"k": ks, "observed": observed - solution.f, "bound": bound}
    raise ValueError(f"Invalid claim_id: {claim_id!r} (expected one of A5, B2, C1, C2)")
