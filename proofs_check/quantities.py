"""What the claims of docs/spec.md section 4 are stated in, computed from a recorded
trajectory, and each bound written once (the claims check them, the figures draw them).

Notation (docs/spec.md 4): ``rho_k = max(alpha_{k+1} / alpha_k)``, ``pi_K = prod_{k<K}
rho_k**2``, ``R_k = ||x_k - x*||_{alpha_k}**2``, ``kappa = (2c - 1)/c**2``, ``h_k = f(x_k) -
f*``, ``g'_k = g_k / alpha_k``. A theorem "holds" when every violation ``lhs - rhs`` is
below ``TOL * (1 + |rhs|)``; ``margin`` is the worst ``(lhs - rhs) / (1 + |rhs|)``
(negative: holds with room), ``tightness`` the median ``rhs / lhs`` (1: tight).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from paramscale.theory.combinator import ParameterScaled

TOL = 1e-9  # float64 round-off on bounds that are attained exactly (A2 where f is linear)


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


# -- what a trajectory was made by -----------------------------------------------------------
def scaling_rule(traj: Any) -> Any:
    return getattr(traj.config, "scaling", None)


def step_rule(traj: Any) -> Any:
    return getattr(traj.config, "step_rule", None)


def is_plain(traj: Any) -> bool:
    """x_{k+1} = x_k - lam_k g_k / alpha_k**2 exactly (no momentum, no first moment)."""
    cfg = traj.config
    return isinstance(cfg, ParameterScaled) and cfg.momentum == 0 and cfg.first_moment == 0


def monotone(traj: Any) -> bool:
    rule = scaling_rule(traj)
    return bool(rule is not None and rule.monotone)


# -- the quantities ----------------------------------------------------------------------------
def rho(traj: Any) -> np.ndarray:
    """rho_k = max(alpha_{k+1} / alpha_k), k = 0..K-2."""
    a = traj.alpha
    return np.max(a[1:] / a[:-1], axis=1) if len(a) > 1 else np.zeros(0)


def pi(traj: Any) -> np.ndarray:
    """pi_k = prod_{j<k} rho_j**2, k = 0..K-1 (pi_0 = 1)."""
    return np.concatenate([[1.0], np.cumprod(rho(traj) ** 2)])


def gap(traj: Any, solution: Any) -> np.ndarray:
    """h_k = f(x_k) - f*."""
    return traj.f - solution.f


def best_gap(traj: Any, solution: Any) -> np.ndarray:
    """min_{j<K} h_j, K = 1..: the best-so-far gap a rate bounds."""
    return np.minimum.accumulate(gap(traj, solution)[: traj.iters])


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


def grad_norm_max(traj: Any) -> np.ndarray:
    """G_K = max_{k<K} ||g_k||, K = 1.."""
    return np.maximum.accumulate(np.linalg.norm(traj.grad, axis=1))


# -- the bounds, each written once ---------------------------------------------------------------
def sps_rate_bound(traj: Any, problem: Any) -> np.ndarray:
    """A5's rate form (paper Eq. 17): sqrt(max_{k<K} pi_k) D_{alpha_0} max_{k<K} ||g'_k|| /
    sqrt(kappa K), K = 1.."""
    K = traj.iters
    ks = np.arange(1, K + 1)
    g_max = np.sqrt(np.maximum.accumulate(scaled_grad_sq(traj)))
    root_pi = np.sqrt(np.maximum.accumulate(pi(traj)[:K]))
    return root_pi * math.sqrt(r0(traj, problem)) * g_max / np.sqrt(kappa(step_rule(traj).c) * ks)


class WeightedAverage(NamedTuple):
    """B2's first form (paper Eq. 21-24) at every K: the gap of the average of x_k with
    weights lam_k / pi_k, and its bound (R_0 + sum lam_k**2 ||g'_k||**2 / pi_k) / (2 sum
    lam_k / pi_k); ``ok``: the steps where the weights are not all 0 yet."""

    gap: np.ndarray
    bound: np.ndarray
    ok: np.ndarray
    r0: float


def weighted_average_bound(traj: Any, problem: Any, solution: Any) -> WeightedAverage:
    K = traj.iters
    lam, pik = traj.lr, pi(traj)[:K]
    R0 = r0(traj, problem)
    w = lam / pik
    ok = np.cumsum(w) > 0
    cw = np.where(ok, np.cumsum(w), 1.0)
    xt = np.cumsum(w[:, None] * traj.x[:K], axis=0) / cw[:, None]  # xtilde_K
    with np.errstate(invalid="ignore", over="ignore"):
        f = np.array([problem.f(v) if np.all(np.isfinite(v)) else np.nan for v in xt])
    bound = (R0 + np.cumsum(lam**2 * scaled_grad_sq(traj) / pik)) / (2 * cw)
    return WeightedAverage(f - solution.f, bound, ok, R0)


def subgradient_bound(traj: Any, problem: Any, G: np.ndarray | float) -> np.ndarray:
    """D G / sqrt(K), K = 1.. (claims C1 and C2)."""
    return problem.distance(traj.x[0]) * G / np.sqrt(np.arange(1, traj.iters + 1))


def nesterov_lower_bound(problem: Any, K: int) -> float:
    """M R / (2 (2 + sqrt(K + 1))): Nesterov's Thm 3.2.1 on his worst-case function (L1)."""
    return problem.params["M"] * problem.params["R"] / (2 * (2 + math.sqrt(K + 1)))
