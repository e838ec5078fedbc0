"""The problems of docs/spec.md sections 5 and 9 by name: each family's constructor draws
its data from ``seed`` and checks its sizes; ``scale`` > 0 gives the badly scaled variant
(columns of the design, or coordinates, multiplied by ``exp(N(0, scale))``, the regime where
adaptive scaling matters); two problems on scikit-learn's bundled data; ``from_params``
rebuilds any of them from its printed parameters. The families themselves are
``synthetic.families``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paramscale.synthetic.families import (
    LAD,
    Hinge,
    Huber,
    L1Ball,
    Logistic,
    MaxAffine,
    NesterovWorst,
)
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
