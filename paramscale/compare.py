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

import numpy as np

import synthetic
import theory
from synthetic import Problem, Solution
from theory import optimizers
from theory import scaling as rules

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
    "ps_dadapt_sgd[adam,shrink]": lambda p, s, K: optimizers.ps_dadapt_sgd(transfer="shrink"),
    "dog": lambda p, s, K: optimizers.dog(),
    "ldog": lambda p, s, K: optimizers.ldog(blocks=_halves(p.n)),
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


def run_one(problem: Problem, sol: Solution, method: str, iters: int) -> Result:
    opt = METHODS[method](problem, sol, iters)
    acc = _sps_tol(sol)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is a result
        traj = theory.run(opt, problem, iters=iters, stop_on_nonfinite=True)
    if "stopped_at" in traj.info:
        step = int(traj.info["stopped_at"][0])
        return Result(problem.name, method, math.inf, math.inf, step, acc)
    h = traj.f - sol.f
    return Result(problem.name, method, float(np.min(h)), float(h[-1]), None, acc)


def compare(
    problems: list[Problem], methods: list[str], iters: int, progress: bool = True
) -> list[Result]:
    results = []
    for i, p in enumerate(problems):
        sol = p.solve()
        if progress:
            print(f"[{i + 1}/{len(problems)}] {p.name}", file=sys.stderr, flush=True)
        results += [run_one(p, sol, m, iters) for m in methods]
    return results


def _cell(r: Result) -> str:
    if r.diverged_at is not None:
        return f"div@{r.diverged_at}"
    return f"<={r.accuracy:.0e}" if r.best_gap <= r.accuracy else f"{r.best_gap:.1e}"


def format_table(results: list[Result], methods: list[str]) -> str:
    rows: dict[str, dict[str, Result]] = {}
    for r in results:
        rows.setdefault(r.problem, {})[r.method] = r
    width = max(len(p) for p in rows) + 1
    cols = [max(len(m), 9) for m in methods]
    head = "problem".ljust(width) + " ".join(m.rjust(c) for m, c in zip(methods, cols, strict=True))
    lines = [head, "-" * len(head)]
    for name, by_method in rows.items():
        cells = " ".join(_cell(by_method[m]).rjust(c) for m, c in zip(methods, cols, strict=True))
        lines.append(name.ljust(width) + cells)
    return "\n".join(lines)


def write_csv(results: list[Result], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["problem", "method", "best_gap", "final_gap", "diverged_at", "accuracy"])
        for r in results:
            w.writerow([r.problem, r.method, r.best_gap, r.final_gap, r.diverged_at, r.accuracy])


def default_problems(quick: bool = False) -> list[Problem]:
    return synthetic.suite(real_data=not quick)
