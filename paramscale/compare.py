"""The main job: every reference optimizer on the default suite, with the exact f*.

Constant-step baselines get the step their textbook bound prescribes from the *true*
distance to the solution (an oracle tuning no LR-free method has): SGD the step of claim
C2, ``eta = D / (G sqrt(K))``; the coordinate-wise methods (Adam, AMSGrad, AdaGrad,
RMSProp) ``lr = D_inf / sqrt(K)`` (AdaGrad: ``D_inf``, Duchi et al. 2011), with
``D_inf = max |x0 - x*|``; schedule-free SGD / AdamW the same steps as SGD / Adam. The
learning-rate-free methods get only ``f*`` (SPS) or nothing (the others, at their official
defaults; Mechanic wraps SGD with lr 1, which its scale absorbs).
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paramscale import synthetic, theory
from paramscale.synthetic import Problem, Solution
from paramscale.theory import optimizers
from paramscale.theory import scaling as rules

MethodFactory = Callable[[Problem, Solution, int], object]


def _sps_tol(sol: Solution) -> float:
    return 1e-9 * max(1.0, abs(sol.f)) + 10 * sol.gap  # certified accuracy of f*


def _halves(n: int) -> tuple[int, ...]:
    """LDoG's layers: the vector split in two, as a weight and a bias would be."""
    return (n - n // 2, n // 2) if n > 1 else (1,)


def _dist(p: Problem, sol: Solution) -> tuple[float, float]:
    return float(np.linalg.norm(p.x0 - sol.x)), float(np.max(np.abs(p.x0 - sol.x)))


METHODS: dict[str, MethodFactory] = {
    "sgd(C2 step)": lambda p, s, K: optimizers.sgd(
        lr=_dist(p, s)[0] / (p.lipschitz * math.sqrt(K))
    ),
    "adam": lambda p, s, K: optimizers.adam(lr=_dist(p, s)[1] / math.sqrt(K)),
    "amsgrad": lambda p, s, K: optimizers.amsgrad(lr=_dist(p, s)[1] / math.sqrt(K)),
    "adagrad": lambda p, s, K: optimizers.adagrad(lr=_dist(p, s)[1]),
    "rmsprop": lambda p, s, K: optimizers.rmsprop(lr=_dist(p, s)[1] / math.sqrt(K)),
    "sps": lambda p, s, K: optimizers.sps(s.f, f_star_tol=_sps_tol(s)),
    "ps_sps[adam]": lambda p, s, K: optimizers.ps_sps(
        s.f, scaling=rules.adam(), f_star_tol=_sps_tol(s)
    ),
    "ps_sps[amsgrad]": lambda p, s, K: optimizers.ps_sps(
        s.f, scaling=rules.amsgrad(), f_star_tol=_sps_tol(s)
    ),
    "dadapt_sgd": lambda p, s, K: optimizers.dadapt_sgd(),
    "ps_dadapt_sgd[adam]": lambda p, s, K: optimizers.ps_dadapt_sgd(scaling=rules.adam()),
    "ps_dadapt_sgd[amsgrad]": lambda p, s, K: optimizers.ps_dadapt_sgd(scaling=rules.amsgrad()),
    "ps_dadapt_sgd[adam,literal]": lambda p, s, K: optimizers.ps_dadapt_sgd(
        transfer="max", normaliser="max_alpha"
    ),  # docs/spec.md 3.3-3.4: the literal reading of the paper
    "dog": lambda p, s, K: optimizers.dog(),
    "ps_dog[adam]": lambda p, s, K: optimizers.ps_dog(scaling=rules.adam()),
    "ldog": lambda p, s, K: optimizers.ldog(blocks=_halves(p.n)),
    "dowg": lambda p, s, K: optimizers.dowg(),
    "ps_dowg[adam]": lambda p, s, K: optimizers.ps_dowg(scaling=rules.adam()),
    "cocob": lambda p, s, K: optimizers.cocob(),
    "dadapt_adam": lambda p, s, K: optimizers.dadapt_adam(),
    "prodigy": lambda p, s, K: optimizers.prodigy(),
    "sf_sgd(C2 step)": lambda p, s, K: optimizers.schedule_free_sgd(
        lr=_dist(p, s)[0] / (p.lipschitz * math.sqrt(K))
    ),
    "sf_adam": lambda p, s, K: optimizers.schedule_free_adam(lr=_dist(p, s)[1] / math.sqrt(K)),
    "mechanic(sgd)": lambda p, s, K: optimizers.mechanic(optimizers.sgd(lr=1.0)),
    "eg_stepsize": lambda p, s, K: optimizers.eg_stepsize(),
}


@dataclass(frozen=True)
class Result:
    problem: str
    method: str
    best_gap: float  # min_k f(x_k) - f*
    final_gap: float  # f(x_K) - f*
    diverged_at: int | None
    accuracy: float  # certified accuracy of f*: gaps below it are not resolved
    start_gap: float  # f(x_0) - f*


def with_rule(rule: Any) -> dict[str, MethodFactory]:
    """PS-SPS and PS-DA-SGD on a user's scaling rule, as methods of the table."""
    return {
        f"ps_sps[{rule.name}]": lambda p, s, K: optimizers.ps_sps(
            s.f, scaling=rule, f_star_tol=_sps_tol(s)
        ),
        f"ps_dadapt_sgd[{rule.name}]": lambda p, s, K: optimizers.ps_dadapt_sgd(scaling=rule),
    }


def run_one(
    problem: Problem, sol: Solution, method: str, iters: int, methods: dict | None = None
) -> Result:
    opt = (methods or METHODS)[method](problem, sol, iters)
    acc = _sps_tol(sol)
    start = float(problem.f(problem.x0) - sol.f)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is a result
        traj = theory.run(opt, problem, iters=iters, stop_on_nonfinite=True)
    if "stopped_at" in traj.info:
        step = int(traj.info["stopped_at"][0])
        return Result(problem.name, method, math.inf, math.inf, step, acc, start)
    h = traj.f - sol.f
    return Result(problem.name, method, float(np.min(h)), float(h[-1]), None, acc, start)


def compare(
    problems: list[Problem],
    methods: list[str],
    iters: int,
    progress: bool = True,
    factories: dict[str, MethodFactory] | None = None,
) -> list[Result]:
    """Every method (by name, from ``factories``, default ``METHODS``) on every problem."""
    results = []
    for i, p in enumerate(problems):
        sol = p.solve()
        if progress:
            print(f"[{i + 1}/{len(problems)}] {p.name}", file=sys.stderr, flush=True)
        results += [run_one(p, sol, m, iters, factories) for m in methods]
    return results


def _cell(r: Result) -> str:
    if r.diverged_at is not None:
        return f"div@{r.diverged_at}"
    return f"<={r.accuracy:.0e}" if r.best_gap <= r.accuracy else f"{r.best_gap:.1e}"


def _by_problem(results: list[Result]) -> dict[str, dict[str, Result]]:
    rows: dict[str, dict[str, Result]] = {}
    for r in results:
        rows.setdefault(r.problem, {})[r.method] = r
    return rows


def ranks(by_method: dict[str, Result]) -> dict[str, int]:
    """Each method's rank on one problem by min f - f* (1: best); gaps below the certified
    accuracy of f* are ties; a diverged run ranks last."""

    def key(r: Result) -> float:
        return math.inf if r.diverged_at is not None else max(r.best_gap, r.accuracy)

    keys = {m: key(r) for m, r in by_method.items()}
    return {m: 1 + sum(other < mine for other in keys.values()) for m, mine in keys.items()}


def format_table(results: list[Result], methods: list[str], per_row: int = 20) -> str:
    """The default table, at most 120 columns: a row per method, its rank on each problem
    (P1, P2, ...: 1 is the best min f - f*, ``d`` a diverged run) and its mean rank; then
    the problems with f(x0) - f* and the best method's gap (``format_wide`` for every gap)."""
    rows = _by_problem(results)
    problems = list(rows)
    rank = {p: ranks(rows[p]) for p in problems}
    name_w = max(len(m) for m in methods) + 1
    lines = []
    for start in range(0, len(problems), per_row):
        block = problems[start : start + per_row]
        head = "method".ljust(name_w) + "".join(f"P{start + i + 1:<3}" for i in range(len(block)))
        last = start + per_row >= len(problems)
        head += " mean rank" if last else ""
        lines += [head, "-" * len(head)]
        for m in methods:
            cells = "".join(
                f"{'d' if rows[p][m].diverged_at is not None else rank[p][m]:<4}" for p in block
            )
            mean = sum(rank[p][m] for p in problems) / len(problems)
            lines.append(m.ljust(name_w) + cells + (f" {mean:9.1f}" if last else ""))
        lines.append("")
    w = min(max(len(p) for p in problems), 56)
    lines.append(f"{'':4}{'problem':<{w}} {'f(x0) - f*':>10}  best method (min f - f*)")
    for i, p in enumerate(problems, start=1):
        best = min(methods, key=lambda m: (rank[p][m], m))
        r = rows[p][best]
        lines.append(f"P{i:<3}{p[:w]:<{w}} {r.start_gap:10.2e}  {best} ({_cell(r)})")
    return "\n".join(lines)


def format_wide(results: list[Result], methods: list[str]) -> str:
    """Every gap: a row per problem, f(x0) - f*, then min f - f* per method."""
    rows = _by_problem(results)
    width = max(len(p) for p in rows) + 1
    cols = [max(len(m), 9) for m in methods]
    head = (
        "problem".ljust(width)
        + f"{'f(x0)-f*':>9} "
        + " ".join(m.rjust(c) for m, c in zip(methods, cols, strict=True))
    )
    lines = [head, "-" * len(head)]
    for name, by_method in rows.items():
        start = next(iter(by_method.values())).start_gap
        cells = " ".join(_cell(by_method[m]).rjust(c) for m, c in zip(methods, cols, strict=True))
        lines.append(name.ljust(width) + f"{start:9.1e} " + cells)
    return "\n".join(lines)


def write_csv(results: list[Result], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["problem", "method", "best_gap", "final_gap", "diverged_at", "accuracy", "start_gap",
             "rank"]
        )  # fmt: skip
        for by_method in _by_problem(results).values():
            rank = ranks(by_method)
            for r in by_method.values():
                w.writerow([r.problem, r.method, r.best_gap, r.final_gap, r.diverged_at,
                            r.accuracy, r.start_gap, rank[r.method]])  # fmt: skip


def default_problems(quick: bool = False) -> list[Problem]:
    return synthetic.suite(real_data=not quick)
