"""``synthetic.from_data``: a user's own data as a certified problem.

The families that take data (docs/spec.md section 5) with the user's design ``A`` and
targets or labels ``b``: the inputs are checked (shapes, dtypes, finiteness, labels), the
Lipschitz constant is computed from the data (never taken from the user), a problem without
a minimiser is refused (separable logistic data, an unbounded max of affine functions), and
the exact solution is computed with its certificate (two solvers agreeing) before the
problem is returned, so that a problem this returns always has one.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from scipy.optimize import linprog

from paramscale.synthetic import constructors as build
from paramscale.synthetic import families as fam
from paramscale.synthetic.problem import Problem

KINDS = ("lad", "hinge", "huber", "logistic", "max_affine")
LABELLED = ("hinge", "logistic")  # b holds labels, -1 or +1


def _real(name: str, x: Any) -> np.ndarray:
    """``x`` as an array of real numbers (bool, complex or non-numeric refused)."""
    a = np.asarray(x)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise TypeError(f"Invalid {name}: dtype {a.dtype} (expected real numbers)")
    return a


def _finite(name: str, a: np.ndarray) -> np.ndarray:
    """``a`` in float64, or a ValueError counting its NaN/Inf entries."""
    a = a.astype(np.float64)
    bad = int((~np.isfinite(a)).sum())
    if bad:
        raise ValueError(f"Invalid {name}: {bad} NaN/Inf entries (expected finite values)")
    return a


def _matrix(A: Any) -> np.ndarray:
    a = _real("A", A)
    if a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"Invalid A: shape {a.shape} (expected a 2-D array (m, n), m, n >= 1)")
    return _finite("A", a)


def _vector(name: str, b: Any, m: int) -> np.ndarray:
    v = _real(name, b)
    if v.shape != (m,):
        raise ValueError(f"Invalid {name}: shape {v.shape} (expected ({m},), one per row of A)")
    return _finite(name, v)


def _labels(kind: str, b: np.ndarray) -> np.ndarray:
    odd = sorted(set(np.unique(b).tolist()) - {-1.0, 1.0})
    if odd:
        raise ValueError(
            f"Invalid b for {kind}: labels {odd[:5]} (expected -1 or +1; map 0/1 labels with "
            "2 * b - 1)"
        )
    return b


def _separable(A: np.ndarray, y: np.ndarray) -> bool:
    """Whether some x has y_i a_i^T x >= 1 for every i (HiGHS LP feasibility)."""
    res = linprog(
        np.zeros(A.shape[1]), A_ub=-(y[:, None] * A), b_ub=-np.ones(len(y)),
        bounds=[(None, None)] * A.shape[1], method="highs",
    )  # fmt: skip
    return res.status == 0


def _bounded_below(A: np.ndarray) -> bool:
    """Whether max_i a_i^T x + b_i is bounded below: 0 is a convex combination of the
    a_i (else a direction lowers every piece)."""
    k, n = A.shape
    res = linprog(
        np.zeros(k), A_eq=np.vstack([A.T, np.ones((1, k))]),
        b_eq=np.concatenate([np.zeros(n), [1.0]]), bounds=[(0, None)] * k, method="highs",
    )  # fmt: skip
    return res.status == 0


def from_data(
    kind: str,
    A: Any,
    b: Any,
    *,
    x0: Any = None,
    l1: float = 0.0,
    delta: float = 1.0,
    name: str = "",
    solve: bool = True,
) -> Problem:
    """A problem of family ``kind`` (one of ``KINDS``) on the user's data ``A`` (m, n) and
    ``b`` (m,): LAD and Huber regression (``b`` the targets; Huber's ``delta``), hinge-loss
    SVM (``b`` labels -1/+1; ``l1`` >= 0 adds ``l1 ||x||_1``), logistic regression (labels;
    non-separable data only: otherwise the loss has no minimiser), ``max_i a_i^T x + b_i``
    (bounded below only). ``x0``: the start (default 0). The Lipschitz constants are
    computed from ``A``; ``solve=True`` (default) computes the certified exact solution now
    (``Problem.solve()`` then returns it from the cache), raising ``SolveError`` naming the
    problem and the solver where it cannot be certified."""
    if kind not in KINDS:
        raise ValueError(f"Invalid kind: {kind!r} (expected one of {KINDS})")
    a = _matrix(A)
    m, n = a.shape
    v = _vector("b", b, m)
    if kind in LABELLED:
        v = _labels(kind, v)
    if not (isinstance(l1, (int, float)) and not isinstance(l1, bool) and l1 >= 0):
        raise ValueError(f"Invalid l1: {l1!r} (expected a number >= 0)")
    if kind != "hinge" and l1:
        raise ValueError(f"Invalid l1: {l1!r} for {kind} (only hinge takes l1)")
    if not (isinstance(delta, (int, float)) and not isinstance(delta, bool) and delta > 0):
        raise ValueError(f"Invalid delta: {delta!r} (expected a number > 0)")
    if kind == "logistic" and _separable(a, v):
        raise ValueError(
            "Invalid data for logistic: the labels are linearly separable, so the loss has no "
            "minimiser (its infimum 0 is approached as ||x|| -> inf)"
        )
    if kind == "max_affine" and not _bounded_below(a):
        raise ValueError(
            "Invalid data for max_affine: max_i a_i^T x + b_i is unbounded below (0 is not a "
            "convex combination of the rows of A)"
        )
    start = np.zeros(n) if x0 is None else _vector("x0", x0, n)
    digest = hashlib.sha256(a.tobytes() + v.tobytes()).hexdigest()[:8]
    params: dict[str, Any] = {"m": m, "n": n, "dataset": f"user:{name or digest}"}
    full, sample = build.mean_abs_bound(a)
    if kind == "lad":
        cls, data, bound = fam.LAD, {"A": a, "b": v}, (full, sample)
    elif kind == "huber":
        params["delta"] = float(delta)
        cls, data, bound = fam.Huber, {"A": a, "b": v}, (delta * full, delta * sample)
    elif kind == "hinge":
        params["l1"] = float(l1)
        extra = l1 * np.sqrt(n)
        cls, data, bound = fam.Hinge, {"A": a, "y": v}, (full + extra, sample + extra)
    elif kind == "logistic":
        cls, data, bound = fam.Logistic, {"A": a, "y": v}, (full, sample)
    else:
        largest = float(np.max(np.linalg.norm(a, axis=1)))
        cls, data, bound = fam.MaxAffine, {"A": a, "b": v}, (largest, largest)
        m = 1  # no finite-sum structure
    family = "hinge_l1" if kind == "hinge" and l1 > 0 else kind
    problem = build.make(cls, family, params, data, n, bound, m)
    problem = problem.with_start(start)
    if solve:
        problem.solve()
    return problem
