"""Certified worst cases beside the claims' bounds: performance estimation (PEP; Drori and
Teboulle 2014, Taylor, Hendrickx and Glineur 2017) through PEPit (``paramscale check --pep``).

A PEP is the exact worst case of a method over a function class, as a small SDP. The
claims of docs/spec.md section 4 that have a fixed-metric, fixed-parameter form are held
against it. The parameter-scaled methods with a frozen metric ``alpha`` are the plain ones
in ``y = alpha * x`` (distances in the metric, subgradients measured by ``1 / alpha``), so
one SDP over convex ``G``-Lipschitz functions with ``||x_0 - x*|| <= D`` serves both;
everything scales as ``D G`` and is computed at ``D = G = 1``.

    C2   subgradient method, eta = D / (G sqrt(N+1)), N steps: min h_k <= D G / sqrt(N+1)
    C1   SPS (c = 1), and A5 (PS-SPS, c = 0.8, frozen metric): the same min_{k<=N} h_k
         <= D G / sqrt(kappa (N+1)), kappa = (2c - 1) / c**2
         worst case over the runs whose N Polyak steps all have one length gamma (a grid of
         gamma: the step is data-dependent, so each gamma is one SDP)
    A2   PS-SPS one step (frozen metric), ||g'_0|| = G, h_0 = t D G:
         ||x_1 - x*||**2 <= ||x_0 - x*||**2 - kappa h_0**2 / ||g'_0||**2
    L1   Nesterov's lower bound G D / (2 (2 + sqrt(N+1))) <= the worst case of C2's method

Each row reports the worst case (the dual objective: a certified upper bound on it), the
primal objective (attained by a function PEPit builds: a lower bound on it), their gap,
the bound and ``bound / worst case``, the claim's tightness. An upper bound holds when
``bound >= primal - tol``, a lower bound (L1) when ``bound <= dual + tol``, ``tol`` = the
duality gap plus ``TOL`` relative; a failure reports the attained function's gaps
``f(x_k) - f*`` as the counterexample. A solve whose status is not ``optimal`` is reported
and never used. Claims with no fixed-metric form (D-Adaptation's estimate, the adaptive
metric itself: A1, A3, A4, A6, B1-B6) are listed in docs/claims.md with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paramscale.proofs_check.quantities import kappa

__all__ = ["PEP_CLAIMS", "PepRow", "PepClaim", "rows", "format_table", "SOLVER"]

SOLVER = "CLARABEL"  # the SDP solver cvxpy brings (interior point: accurate duals)
TOL = 1e-6  # relative, on top of the reported duality gap: the solver's accuracy
POLYAK_GRID = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)  # Polyak step lengths gamma, D = G = 1


@dataclass(frozen=True)
class PepRow:
    claim: str
    n: int  # steps
    param: float  # gamma (Polyak runs), t = h_0 / (D G) (A2), eta (C2, L1)
    bound: float
    worst: float  # dual objective: certified upper bound on the worst case
    primal: float  # attained by PEPit's function: lower bound on the worst case
    status: str
    holds: bool
    counterexample: tuple[float, ...] = ()

    @property
    def ratio(self) -> float:
        """bound / worst case: 1 is tight; above 1 the bound is loose (below 1: L1 holds)."""
        return self.bound / self.worst if self.worst > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim, "n": self.n, "param": self.param, "bound": self.bound,
            "worst_case": self.worst, "primal": self.primal, "ratio": self.ratio,
            "status": self.status, "holds": self.holds,
            "counterexample": " ".join(f"{v:.6g}" for v in self.counterexample),
        }  # fmt: skip


def _lipschitz_pep() -> tuple[Any, Any, Any, Any]:
    """A PEP over convex 1-Lipschitz functions: (problem, f, x*, f*)."""
    from PEPit import PEP
    from PEPit.functions import ConvexLipschitzFunction

    problem = PEP()
    f = problem.declare_function(ConvexLipschitzFunction, M=1.0)
    xs = f.stationary_point()
    return problem, f, xs, f(xs)


def _steps(n: int, step: float, polyak_c: float | None = None) -> tuple[Any, list[Any]]:
    """n steps x_{k+1} = x_k - step g_k from ||x_0 - x*|| <= 1; metric min_k h_k. With
    ``polyak_c``: Polyak steps h_k / (c ||g_k||**2) that all have length ``step``, i.e.
    h_k = c step ||g_k||**2, a linear constraint once the length is fixed."""
    problem, f, xs, fs = _lipschitz_pep()
    x = problem.set_initial_point()
    problem.set_initial_condition((x - xs) ** 2 <= 1)
    gaps = []
    for k in range(n + 1):
        g, fx = f.oracle(x)
        gaps.append(fx - fs)
        problem.set_performance_metric(fx - fs)
        if k < n:
            if polyak_c is not None:
                problem.add_constraint(fx - fs == polyak_c * step * g**2)
            x = x - step * g
    return problem, gaps


def _polyak_one_step(t: float, c: float) -> tuple[Any, list[Any]]:
    """One Polyak step from ||g_0|| = 1, h_0 = t; metric ||x_1 - x*||**2."""
    problem, f, xs, fs = _lipschitz_pep()
    x0 = problem.set_initial_point()
    problem.set_initial_condition((x0 - xs) ** 2 <= 1)
    g0, f0 = f.oracle(x0)
    problem.add_constraint(g0**2 == 1)
    problem.add_constraint(f0 - fs == t)
    x1 = x0 - (t / c) * g0
    f.oracle(x1)
    problem.set_performance_metric((x1 - xs) ** 2)
    return problem, [f0 - fs]


@dataclass(frozen=True)
class PepClaim:
    """A claim's fixed-metric form: ``build(n, param)`` the PEP and the iterates' gaps,
    ``bound(n, param)`` the claim's bound, ``params`` the grid, ``lower``: the bound is a
    lower bound on the worst case (L1), ``one_step``: n is 1 only."""

    id: str
    statement: str
    build: Callable[[int, float], tuple[Any, list[Any]]]
    bound: Callable[[int, float], float]
    params: Callable[[int], tuple[float, ...]]
    lower: bool = False
    one_step: bool = False


def _c2_eta(n: int) -> tuple[float, ...]:
    return (1 / math.sqrt(n + 1),)


SPS_C = 0.8  # A5's PS-SPS constant here (kappa = 0.9375)

PEP_CLAIMS: dict[str, PepClaim] = {
    c.id: c
    for c in (
        PepClaim(
            "C2",
            "subgradient method, eta = D/(G sqrt(N+1)): min h_k <= D G / sqrt(N+1)",
            _steps,
            lambda n, eta: 1 / math.sqrt(n + 1),
            _c2_eta,
        ),
        PepClaim(
            "C1",
            "SPS, c = 1: min h_k <= D G / sqrt(N+1)",
            lambda n, gam: _steps(n, gam, 1.0),
            lambda n, gam: 1 / math.sqrt(n + 1),
            lambda n: POLYAK_GRID,
        ),
        PepClaim(
            "A5",
            f"PS-SPS, c = {SPS_C}, frozen metric: min h_k <= D G / sqrt(kappa (N+1))",
            lambda n, gam: _steps(n, gam, SPS_C),
            lambda n, gam: 1 / math.sqrt(kappa(SPS_C) * (n + 1)),
            lambda n: POLYAK_GRID,
        ),
        PepClaim(
            "A2",
            "PS-SPS one step, c = 1, frozen metric: R_1 <= R_0 - kappa h_0**2/||g'_0||**2",
            lambda n, t: _polyak_one_step(t, 1.0),
            lambda n, t: 1 - kappa(1.0) * t**2,
            lambda n: (0.25, 0.5, 0.75),
            one_step=True,
        ),
        PepClaim(
            "L1",
            "Nesterov's lower bound G D / (2 (2 + sqrt(N+1))) <= worst case (C2's method)",
            _steps,
            lambda n, eta: 1 / (2 * (2 + math.sqrt(n + 1))),
            _c2_eta,
            lower=True,
        ),
    )  # fmt: skip
}


def solve(claim: PepClaim, n: int, param: float, scale: float = 1.0) -> PepRow:
    """One PEP against ``scale`` x the claim's bound (``scale`` plants an error in tests)."""
    import cvxpy

    problem, gaps = claim.build(n, param)
    try:
        dual = problem.solve(wrapper="cvxpy", solver=SOLVER, verbose=0)
        status = str(problem.wrapper.prob.status)
        primal = float(problem.wrapper.prob.value)
    except (cvxpy.error.SolverError, ValueError) as exc:
        dual, primal, status = math.nan, math.nan, f"failed: {exc}"
    bound = scale * claim.bound(n, param)
    if status != "optimal" or dual is None or not math.isfinite(dual):
        return PepRow(claim.id, n, param, bound, math.nan, math.nan, status, False)
    dual = float(dual)
    tol = abs(dual - primal) + TOL * max(1.0, abs(dual))
    holds = bound <= dual + tol if claim.lower else bound >= primal - tol
    example = () if holds else tuple(float(g.eval()) for g in gaps)
    return PepRow(claim.id, n, param, bound, dual, primal, status, holds, example)


def rows(
    claims: tuple[str, ...] | None = None,
    n_max: int = 8,
    progress: Callable[[str], None] | None = None,
) -> list[PepRow]:
    """Every claim's PEP rows for N = 1..n_max (one-step claims: N = 1) over its grid."""
    out = []
    for cid in claims or tuple(PEP_CLAIMS):
        claim = PEP_CLAIMS[cid]
        for n in (1,) if claim.one_step else range(1, n_max + 1):
            out += [solve(claim, n, param) for param in claim.params(n)]
        if progress:
            progress(f"  {cid}: {sum(r.claim == cid for r in out)} SDPs")
    return out


def format_table(table: list[PepRow]) -> str:
    """Per claim and N: the bound, the largest worst case over the grid, their ratio."""
    head = (
        f"{'claim':5} {'N':>3} {'bound':>10} {'worst case':>11} {'ratio':>8} {'gap':>8} "
        f"{'grid':>4}  status"
    )
    lines = [head, "-" * len(head)]
    keys = dict.fromkeys((r.claim, r.n) for r in table)
    for cid, n in keys:
        group = [r for r in table if (r.claim, r.n) == (cid, n)]
        solved = [r for r in group if r.status == "optimal"]
        status = "ok" if all(r.holds for r in group) else "FAIL"
        bad = [r for r in group if r.status != "optimal"]
        if bad:
            status += f" ({len(bad)} solve(s) {bad[0].status})"
        if not solved:
            lines.append(f"{cid:5} {n:>3} {'':>48} {len(group):>4}  {status}")
            continue
        top = max(solved, key=lambda r: r.worst)
        gap = max(abs(r.worst - r.primal) for r in solved)
        lines.append(
            f"{cid:5} {n:>3} {top.bound:>10.6g} {top.worst:>11.6g} {top.ratio:>8.4g} "
            f"{gap:>8.1e} {len(group):>4}  {status}"
        )
        for r in group:
            if not r.holds and r.counterexample:
                lines.append(f"      counterexample (param {r.param:g}): f(x_k) - f* = "
                             + ", ".join(f"{v:.4g}" for v in r.counterexample))  # fmt: skip
    lines.append(
        "D = G = 1. worst case: the PEP's certified worst case (for C1 and A5 the largest over "
        "the Polyak step lengths of the grid); ratio: bound / worst case (1: tight; L1 is a "
        "lower bound, so it holds below 1); gap: the solver's duality gap"
    )
    return "\n".join(lines)
