"""``paramscale study ps-dadapt`` and ``ps-sps``: the evidence the defaults of PS-DA-SGD
and PS-SPS are chosen from (``STUDIES``).

For PS-DA-SGD:
Every variant (a metric transfer, a normaliser, and ablations of the default: D-Adaptation's
provable ``dhat/2``, no momentum) runs on

- the convex suite (``synthetic.suite``, 5 seeds by default, 400 steps, NumPy reference):
  divergence, the final ``f - f*`` against the larger of ``f(x0) - f*`` and D-Adapt SGD's
  (momentum 0.9), its geometric mean ratio to D-Adapt SGD's, and the step it ends with
  against the best constant step of the same scaled update (a grid);
- the ``paramscale train --quick`` tasks (3 seeds): final test metric against the best
  tuned Adam, divergence, and the step in Adam units against the best constant step of the
  same update (``PSconst``), next to D-Adapt Adam's and Prodigy's.

For PS-SPS the variants are the constant ``c`` and the cap ``eta_max``, against SPS
(identity scaling, Loizou et al.'s ``c = 0.5``).

Results go to tidy CSVs first (``convex.csv``, ``nets.csv``), then the table and the
figure are made from them.
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

VARIANTS: tuple[dict[str, Any], ...] = (
    {},  # the default
    *({"transfer": t} for t in ("min", "anchor", "anchor_active", "max", "max_alpha",
                                 "rms_alpha", "displacement", "shrink", "none")),
    {"transfer": "max", "normaliser": "max_alpha"},  # docs/spec.md 3.2, the literal reading
    {"transfer": "shrink", "normaliser": "max_alpha"},
    {"transfer": "none", "normaliser": "max_alpha"},
    {"normaliser": "max_alpha"},  # ablations of the default
    {"dhat": "paper"},
    {"momentum": 0.0},
)  # fmt: skip
CONVEX_STEPS = 400
CONSTANT_GRID = tuple(10 ** (e / 2) for e in range(-10, 3))  # 1e-5 ... 10
NET_BASELINES = ("adam", "PSconst", "DAdaptAdam", "Prodigy")


class Study(NamedTuple):
    """A study: the train ``family`` its variants are options of, the ``variants``, how
    the NumPy reference makes one (``make(options, solution)``), the convex baseline
    (``baseline(solution)``, named ``baseline_name``), the momentum of the same update with
    a constant step (the reference for the estimated step) and the networks' baselines."""

    family: str
    variants: tuple[dict[str, Any], ...]
    make: Callable[[dict[str, Any], Any], Any]
    baseline: Callable[[Any], Any]
    baseline_name: str
    momentum: float
    net_baselines: tuple[str, ...]


def _sps_tol(sol: Any) -> float:
    return 1e-9 * max(1.0, abs(sol.f)) + 10 * sol.gap  # the certified accuracy of f*


def _studies() -> dict[str, Study]:
    from paramscale.theory import optimizers

    return {
        "ps-dadapt": Study(
            "PSDASGD", VARIANTS, lambda o, s: optimizers.ps_dadapt_sgd(**o),
            lambda s: optimizers.dadapt_sgd(momentum=0.9), "D-Adapt SGD (momentum 0.9)", 0.9,
            NET_BASELINES,
        ),
        "ps-sps": Study(
            "PSSPS", SPS_VARIANTS,
            lambda o, s: optimizers.ps_sps(s.f, f_star_tol=_sps_tol(s), **o),
            lambda s: optimizers.sps(s.f, f_star_tol=_sps_tol(s)), "SPS (c = 0.5)", 0.0,
            ("adam", "PSconst[momentum=0]"),
        ),
    }  # fmt: skip


SPS_VARIANTS: tuple[dict[str, Any], ...] = (
    {}, {"c": 0.5}, {"c": 2.0}, {"eta_max": 0.1}, {"eta_max": 0.01},
    {"scaling": "amsgrad"}, {"scaling": "amsgrad", "c": 0.5},
)  # fmt: skip
STUDY_NAMES = ("ps-dadapt", "ps-sps")


def spec(options: dict[str, Any], family: str = "PSDASGD") -> str:
    """The variant as a ``paramscale train`` method spec (its name in both CSVs)."""
    from paramscale.train.family import spec_name

    return spec_name(family, options)


# -- convex ---------------------------------------------------------------------------------
def _final(opt: Any, problem: Any, solution: Any) -> tuple[float, float]:
    """(final f - f*, final step lam) of a 400-step run; (inf, nan) when it diverged."""
    from paramscale import theory

    with np.errstate(all="ignore"):
        traj = theory.run(opt, problem, iters=CONVEX_STEPS, stop_on_nonfinite=True)
    if "stopped_at" in traj.info or not np.isfinite(traj.f[-1]):
        return math.inf, math.nan
    return float(traj.f[-1] - solution.f), float(traj.lr[-1])


def convex_rows(
    seeds: tuple[int, ...], progress: Callable[[str], None], study: Study | None = None
) -> list[dict]:
    """One row per (variant, problem): the variant's final gap and step, with the problem's
    f(x0) - f*, the baseline's final gap and the best constant step of the same update."""
    study = study or _studies()["ps-dadapt"]
    from paramscale import synthetic
    from paramscale.theory import optimizers
    from paramscale.theory import scaling as rules

    problems = synthetic.suite(seeds=seeds)
    rows = []
    for i, problem in enumerate(problems):
        progress(f"[convex {i + 1}/{len(problems)}] {problem.name}")
        sol = problem.solve()
        start = float(problem.f(problem.x0) - sol.f)
        baseline, _ = _final(study.baseline(sol), problem, sol)
        constant = {
            lam: _final(
                optimizers.parameter_scaled(
                    optimizers.constant(lam), rules.adam(), study.momentum
                ), problem, sol,
            )[0]
            for lam in CONSTANT_GRID
        }  # fmt: skip
        best_lam = min(constant, key=constant.get)
        for options in study.variants:
            gap, lam = _final(study.make(options, sol), problem, sol)
            rows.append(
                {"variant": spec(options, study.family), "problem": problem.name,
                 "final_gap": gap, "start_gap": start, "baseline_gap": baseline,
                 "final_step": lam, "best_constant_step": best_lam,
                 "best_constant_gap": constant[best_lam]}
            )  # fmt: skip
    return rows


def convex_summary(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per variant: problems, diverged, worse (final gap above max(f(x0)-f*, the
    baseline's)), the geometric mean of final gap / the baseline's, the median step / best
    constant step."""
    out: dict[str, dict[str, float]] = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        finite = [r for r in mine if math.isfinite(r["final_gap"])]
        floor = 1e-16  # gaps are float64 differences: below this they are round-off
        logs = [math.log(max(r["final_gap"], floor) / max(r["baseline_gap"], floor))
                for r in finite]  # fmt: skip
        ratios = [r["final_step"] / r["best_constant_step"] for r in finite]
        out[variant] = {
            "problems": len(mine),
            "diverged": len(mine) - len(finite),
            "worse": sum(_worse(r) for r in mine),
            "gap_ratio": math.exp(statistics.fmean(logs)) if logs else math.nan,
            "step_ratio": statistics.median(ratios) if ratios else math.nan,
        }
    return out


def _worse(r: dict) -> bool:
    """Ends above both f(x0) - f* and the baseline's final gap (diverged: worse)."""
    bound = max(r["start_gap"], r["baseline_gap"])
    return not r["final_gap"] <= bound * (1 + 1e-9) + 1e-12


# -- networks -----------------------------------------------------------------------------
def net_rows(seeds: list[int], workers: int, tasks: list[str] | None, steps: int | None,
             progress: Any, study: Study | None = None) -> list[dict]:  # fmt: skip
    from paramscale import train

    study = study or _studies()["ps-dadapt"]
    names = tasks or list(train.TASKS)
    specs = [spec(v, study.family) for v in study.variants] + list(study.net_baselines)
    return train.benchmark(names, specs, seeds, True, "cpu", workers, steps, progress)


def net_summary(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per method (variants and the learning-rate-free baselines): runs, diverged runs, the
    lowest final metric of any run, the mean over tasks of (mean final metric - best tuned
    Adam's) in points, and the median over tasks of final step / best constant step."""
    from paramscale.train import report

    summaries = report.summarize(rows)
    tasks = list(dict.fromkeys(s.task for s in summaries))
    best = {}
    for task in tasks:
        grid = [s for s in summaries if s.task == task and s.grid_lr is not None]
        adam = max((s for s in grid if s.family == "adam"), key=lambda s: s.mean)
        const = max((s for s in grid if s.family == "PSconst"), key=lambda s: s.mean)
        best[task] = (adam, const)
    lowest: dict[str, float] = {}
    runs: dict[tuple[str, str, int], list[dict]] = {}
    for r in rows:
        runs.setdefault((r["task"], r["method"], r["seed"]), []).append(r)
    for (_, method, _), run in runs.items():
        last = max(run, key=lambda r: r["step"])
        value = last["test_metric"] if last["status"] == "ok" else 0.0
        lowest[method] = min(lowest.get(method, math.inf), value)
    out: dict[str, dict[str, float]] = {}
    for s in summaries:
        if s.grid_lr is not None or s.status != "ok":
            continue
        entry = out.setdefault(s.method, {"runs": 0, "diverged": 0, "gaps": [], "steps": []})
        adam, const = best[s.task]
        entry["runs"] += s.seeds
        entry["diverged"] += s.diverged + s.errors
        entry["gaps"].append(100 * (s.mean - adam.mean))
        entry["steps"].append(s.final_lr / const.grid_lr)
    return {
        m: {"runs": e["runs"], "diverged": e["diverged"], "lowest": lowest[m],
            "vs_adam": statistics.fmean(e["gaps"]),
            "worst_task_vs_adam": min(e["gaps"]),
            "step_ratio": statistics.median(e["steps"])}
        for m, e in out.items()
    }  # fmt: skip


# -- report -------------------------------------------------------------------------------
def format_table(convex: dict, nets: dict, baseline: str = "D-Adapt SGD (momentum 0.9)") -> str:
    head = (
        f"{'variant':<52} {'cvx div':>7} {'worse':>6} {'gap/base':>8} {'step/best':>9} "
        f"{'net div':>7} {'lowest':>6} {'vs Adam':>8} {'worst':>7} {'step/best':>9}"
    )
    lines = [head, "-" * len(head)]
    for name in dict.fromkeys([*convex, *nets]):
        c, n = convex.get(name), nets.get(name)
        cells = (
            f"{c['diverged']:>4}/{c['problems']:<2} {c['worse']:>6} {c['gap_ratio']:>8.3g} "
            f"{c['step_ratio']:>9.3g}"
            if c
            else f"{'':>7} {'':>6} {'':>8} {'':>9}"
        )
        net = (
            f" {n['diverged']:>4}/{n['runs']:<2} {n['lowest']:>6.3f} {n['vs_adam']:>+8.1f} "
            f"{n['worst_task_vs_adam']:>+7.1f} {n['step_ratio']:>9.3g}"
            if n
            else ""
        )
        lines.append(f"{name:<52} {cells}{net}")
    lines.append(
        "convex: diverged runs / problems; worse: final f - f* above max(f(x0) - f*, D-Adapt "
        f"{baseline}'s); gap/base: geometric mean of final gap / its; step/best: median of "
        "the final step / the best constant step of the same update. nets: diverged / runs; "
        "lowest: the lowest final test metric of any run; vs Adam: mean over tasks of the "
        "points from the best tuned Adam; worst: the worst task's; step/best: median over "
        "tasks of the final step / the best constant step (PSconst)"
    )
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_convex(path: Path) -> list[dict]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for key in ("final_gap", "start_gap", "baseline_gap", "final_step",
                    "best_constant_step", "best_constant_gap"):  # fmt: skip
            r[key] = float(r[key])
    return rows


def plot(
    convex: dict, nets: dict, out: Path, name: str = "ps_dadapt_study", baseline: str = ""
) -> list[Path]:
    """Two panels per variant: convex geometric-mean gap ratio to D-Adapt SGD (log), and the
    networks' mean points from the best tuned Adam (diverged runs marked)."""
    from paramscale.figures.style import PALETTE, pyplot, save_figure

    plt = pyplot()
    names = [n for n in convex if n in nets] or list(convex)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.35 * len(names) + 1.5), sharey=True)
    y = np.arange(len(names))
    gaps = [convex[n]["gap_ratio"] for n in names]
    axes[0].barh(y, gaps, color=PALETTE[0])
    axes[0].set_xscale("log")
    axes[0].axvline(1.0, color="k", lw=0.8)
    axes[0].set_xlabel(f"convex: geometric mean of final gap / {baseline or 'the baseline'}'s")
    for i, n in enumerate(names):
        if convex[n]["diverged"]:
            axes[0].text(gaps[i] if np.isfinite(gaps[i]) else 1, i, f" {convex[n]['diverged']} div",
                         va="center", fontsize=7)  # fmt: skip
    if nets:
        vs = [nets[n]["vs_adam"] if n in nets else np.nan for n in names]
        axes[1].barh(y, vs, color=PALETTE[2])
        axes[1].axvline(0.0, color="k", lw=0.8)
        axes[1].set_xlabel("networks: mean points from the best tuned Adam")
        for i, n in enumerate(names):
            if n in nets and nets[n]["diverged"]:
                axes[1].text(0, i, f" {nets[n]['diverged']}/{nets[n]['runs']} diverged",
                             va="center", fontsize=7)  # fmt: skip
    axes[0].set_yticks(y, names, fontsize=7)
    axes[0].invert_yaxis()
    fig.tight_layout()
    return save_figure(fig, out, name)


def run(out: Path, seeds: tuple[int, ...], net_seeds: list[int], workers: int,
        tasks: list[str] | None = None, steps: int | None = None,
        progress: bool = True, which: str = "ps-dadapt") -> str:  # fmt: skip
    """The whole study ``which``: CSVs, table (returned and written) and figure in
    ``out``."""
    study = _studies()[which]

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    from paramscale.train import runner

    convex = convex_rows(seeds, say, study)
    write_csv(convex, out / "convex.csv")
    nets = []
    if net_seeds:
        nets = net_rows(net_seeds, workers, tasks, steps, progress or None, study)
        runner.write_csv(nets, out / "nets.csv")
    convex_table = convex_summary(read_convex(out / "convex.csv"))
    net_table = net_summary(runner.read_csv(out / "nets.csv")) if nets else {}
    table = format_table(convex_table, net_table, study.baseline_name)
    (out / "table.txt").write_text(table + "\n")
    plot(convex_table, net_table, out, which.replace("-", "_") + "_study", study.baseline_name)
    return table
