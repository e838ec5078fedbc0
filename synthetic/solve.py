"""Certified exact solutions: cvxpy + Clarabel, checked against an independent second
solver, cached on disk by the problem's content hash (docs/spec.md section 5, user-needs B1-B5).

Never trust a status alone: the objective is re-evaluated in float64 NumPy at both
solutions, the two values must agree to ``AGREE_RTOL * max(1, |f*|)``, and the lower
one is kept as ``f*`` with ``gap`` = the disagreement.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cvxpy as cp
import numpy as np

if TYPE_CHECKING:
    from paramscale.synthetic.problem import Problem

AGREE_RTOL = 1e-7
CLARABEL_TOL = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


class SolveError(RuntimeError):
    """A solve that failed, was inaccurate, or disagreed with the second solver."""


@dataclass(frozen=True)
class Solution:
    x: np.ndarray
    f: float
    solver: str
    status: str
    gap: float
    reference_solver: str
    reference_f: float
    cvxpy_f: float
    versions: str


def cache_dir() -> Path:
    root = os.environ.get("PARAMSCALE_CACHE") or Path.home() / ".cache" / "paramscale"
    return Path(root) / "solutions"


def _versions() -> str:
    import clarabel
    import scipy

    return f"cvxpy={cp.__version__} clarabel={clarabel.__version__} scipy={scipy.__version__}"


def _load(path: Path) -> Solution | None:
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return Solution(x=z["x"].copy(), **meta)


def _store(path: Path, sol: Solution) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in asdict(sol).items() if k != "x"}
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, x=sol.x, meta=json.dumps(meta))
    os.replace(tmp, path)


def cvxpy_solve(problem: Problem, **solver_options: Any) -> tuple[np.ndarray, str]:
    """Solve with Clarabel at tolerances 1e-10, then (if that is not ``optimal``) once more
    at Clarabel's defaults; raise SolveError naming problem, solver and status unless a
    status is exactly ``optimal``. Either way the answer is then certified by the second
    solver's agreement (``certified_solve``)."""
    statuses = []
    for tolerances in (CLARABEL_TOL, {}):
        y = cp.Variable(problem.n)
        prob = cp.Problem(cp.Minimize(problem.cvx_objective(y)))
        try:
            prob.solve(solver=cp.CLARABEL, **{**tolerances, **solver_options})
        except cp.error.SolverError as exc:
            statuses.append(f"solver_error ({exc})")
            continue
        if prob.status == cp.OPTIMAL and y.value is not None:
            note = "" if tolerances else " (Clarabel default tolerances)"
            return np.asarray(y.value, dtype=np.float64), prob.status + note
        statuses.append(repr(prob.status))
    raise SolveError(
        f"{problem.name}: solver CLARABEL returned status {' then '.join(statuses)} "
        "(expected 'optimal'); the exact solution is not certified"
    )


def certified_solve(problem: Problem, *, cache: bool = True, **solver_options: Any) -> Solution:
    path = cache_dir() / f"{problem.family}-{problem.content_hash}.npz"
    if cache and not solver_options and (sol := _load(path)) is not None:
        return sol
    x1, status = cvxpy_solve(problem, **solver_options)
    x2, ref_name = problem.reference_solve()
    f1, f2 = problem.f(x1), problem.f(x2)
    gap = abs(f1 - f2)
    if not gap <= AGREE_RTOL * max(1.0, abs(f1)):
        raise SolveError(
            f"{problem.name}: CLARABEL (f={f1!r}) and {ref_name} (f={f2!r}) disagree by "
            f"{gap:.3e} (allowed {AGREE_RTOL:g} relative)"
        )
    x, f = (x1, f1) if f1 <= f2 else (x2, f2)
    sol = Solution(x, f, "CLARABEL", status, gap, ref_name, f2, f1, _versions())
    if cache:
        _store(path, sol)
    return sol


_NEAREST: dict[tuple[str, bytes, bytes, float | None], tuple[float, np.ndarray]] = {}


def nearest_solution(
    problem: Problem, x0: np.ndarray, a: np.ndarray | None, tol: float | None
) -> tuple[float, np.ndarray]:
    """Memoised ``_nearest_solution`` (claims ask for the same D_a many times)."""
    a_bytes = b"" if a is None else np.asarray(a, dtype=np.float64).tobytes()
    key = (problem.content_hash, np.asarray(x0, dtype=np.float64).tobytes(), a_bytes, tol)
    if key not in _NEAREST:
        _NEAREST[key] = _nearest_solution(problem, x0, a, tol)
    return _NEAREST[key]


def _nearest_solution(
    problem: Problem, x0: np.ndarray, a: np.ndarray | None, tol: float | None
) -> tuple[float, np.ndarray]:
    """``D_a = min ||a*(x0 - y)||_2 s.t. f(y) <= f* + tol`` (docs/spec.md section 1).

    Where the minimiser is provably unique (``Problem.unique_minimizer``) this is
    ``||a*(x0 - x*)||`` exactly; otherwise the level-set problem is solved with Clarabel
    (default ``tol = 1e-8 max(1, |f*|) + 10 gap``) and its answer re-checked in NumPy.
    """
    sol = problem.solve()
    a = np.ones(problem.n) if a is None else np.asarray(a, dtype=np.float64)
    if a.shape != (problem.n,) or not np.all(a > 0):
        raise ValueError(
            f"Invalid metric a: shape {a.shape} "
            f"(expected a positive vector of shape ({problem.n},))"
        )
    if tol is None and problem.unique_minimizer(sol.x):
        return float(np.linalg.norm(a * (x0 - sol.x))), sol.x
    tol = 1e-8 * max(1.0, abs(sol.f)) + 10 * sol.gap if tol is None else tol
    y = cp.Variable(problem.n)
    prob = cp.Problem(
        cp.Minimize(cp.norm(cp.multiply(a, x0 - y), 2)),
        [problem.cvx_objective(y) <= sol.f + tol],
    )
    prob.solve(solver=cp.CLARABEL)
    if prob.status != cp.OPTIMAL or y.value is None:
        raise SolveError(
            f"{problem.name}: nearest-solution solve with CLARABEL returned status "
            f"{prob.status!r} (expected 'optimal')"
        )
    y_star = np.asarray(y.value, dtype=np.float64)
    if not problem.f(y_star) <= sol.f + 100 * tol:  # Clarabel feasibility is ~1e-8 relative
        raise SolveError(
            f"{problem.name}: nearest-solution solve with CLARABEL left the level set "
            f"(f(y) - f* = {problem.f(y_star) - sol.f:.3e} > 100 * tol = {100 * tol:.3e})"
        )
    return float(np.linalg.norm(a * (x0 - y_star))), y_star
