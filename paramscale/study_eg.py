"""``paramscale study eg``: which exponent makes the EG step-size adaptation adapt
(docs/findings.md, "EG step-size adaptation").

The paper's first claim is good accuracy without a tuned learning rate. Each candidate
exponent (``theory.eg.EG_EXPONENTS``) runs ``EGAdam`` on the ``paramscale train
--quick`` tasks from a base rate 10x below and 10x above the best tuned Adam rate of that
task, against Adam left at the same rate. Results: one tidy CSV (``eg.csv``, the train
rows), then per candidate and start the points from the best tuned Adam, the points
gained over Adam at the same rate, the final scale ``s_K`` (the effective rate over the
base), a table and a figure of the scale over steps.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any

from paramscale.theory.eg import EG_EXPONENTS

FACTORS = (0.1, 10.0)  # the base rate over the best tuned Adam rate
CANDIDATES = tuple(f"exponent={e}" for e in EG_EXPONENTS) + (
    "exponent=cosine,gamma_s=0.1",
    "exponent=normalised,gamma_s=0.1",
)  # EGAdam options besides lr (gamma_s = gamma_p = 0.01 unless given)


def candidate(method: str) -> str:
    """``EGAdam[lr=X,<options>]`` -> ``<options>``."""
    return method.partition(",")[2].rstrip("]")


def _best_adam(rows: list[dict[str, Any]]) -> dict[str, float]:
    from paramscale.train import report

    summaries = [s for s in report.summarize(rows) if s.family == "adam" and s.grid_lr]
    tasks = dict.fromkeys(s.task for s in summaries)
    return {t: max((s for s in summaries if s.task == t), key=lambda s: s.mean) for t in tasks}


def specs(rate: float) -> list[str]:
    """Adam and every candidate at one base rate (train method specs)."""
    return [f"adam[lr={rate:.4g}]"] + [f"EGAdam[lr={rate:.4g},{c}]" for c in CANDIDATES]


def run_rows(tasks: list[str], seeds: list[int], workers: int, steps: int | None,
             progress: Any) -> list[dict[str, Any]]:  # fmt: skip
    """The tuned Adam grid, then Adam and the candidates from each task's two rates."""
    from paramscale import train

    rows = train.benchmark(tasks, ["adam"], seeds, True, "cpu", workers, steps, progress)
    best = _best_adam(rows)
    for task in tasks:
        rates = [f * best[task].grid_lr for f in FACTORS]
        methods = [spec for rate in rates for spec in specs(rate)]
        rows += train.benchmark([task], methods, seeds, True, "cpu", workers, steps, progress)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, Any]]:
    """Per (candidate, factor): the tasks' points from the best tuned Adam, points over Adam
    at the same rate, and final scale (median over seeds of the final lr / the base)."""
    from paramscale.train import report

    summaries = report.summarize(rows)
    best = _best_adam(rows)
    out: dict[tuple[str, float], dict[str, Any]] = {}
    for s in summaries:
        if s.family != "EGAdam" or s.status != "ok":
            continue
        base = float(s.method.split("lr=")[1].split(",")[0])
        factor = min(FACTORS, key=lambda f: abs(math.log(base / (f * best[s.task].grid_lr))))
        exponent = candidate(s.method)
        adam = next(a for a in summaries if a.task == s.task and a.method == f"adam[lr={base:.4g}]")
        entry = out.setdefault((exponent, factor), {"tasks": {}})
        entry["tasks"][s.task] = {
            "vs_tuned": 100 * (s.mean - best[s.task].mean),
            "vs_same_rate": 100 * (s.mean - adam.mean),
            "scale": s.final_lr / base,
            "diverged": s.diverged + s.errors,
        }
    for entry in out.values():
        t = entry["tasks"].values()
        entry["within_2"] = sum(v["vs_tuned"] >= -2.0 for v in t)
        entry["moved_2x"] = sum(abs(math.log(v["scale"])) >= math.log(2) for v in t)
        entry["mean_vs_same_rate"] = statistics.fmean(v["vs_same_rate"] for v in t)
    return out


def format_table(table: dict[tuple[str, float], dict[str, Any]]) -> str:
    tasks = list(dict.fromkeys(t for e in table.values() for t in e["tasks"]))
    head = f"{'candidate':<32} {'start':>6} " + " ".join(f"{t[:14]:>16}" for t in tasks)
    head += f" {'within 2':>8} {'moved 2x':>8} {'vs Adam':>8}"
    lines = [head, "-" * len(head)]
    for (exponent, factor), e in sorted(table.items()):
        cells = " ".join(
            f"{e['tasks'][t]['vs_tuned']:>+7.1f} x{e['tasks'][t]['scale']:<7.3g}" if t in e["tasks"]
            else f"{'':>16}" for t in tasks
        )  # fmt: skip
        lines.append(
            f"{exponent:<32} {f'{factor:g}x':>6} {cells} {e['within_2']:>8} {e['moved_2x']:>8} "
            f"{e['mean_vs_same_rate']:>+8.1f}"
        )
    lines.append(
        "start: the base rate over the best tuned Adam rate; per task: points from the best "
        "tuned Adam (mean over seeds) and the final scale s_K; within 2: tasks within 2 "
        "points of tuned Adam; moved 2x: tasks whose final scale is off 1 by 2x or more; "
        "vs Adam: mean points over Adam left at the same rate"
    )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """The scale s_k over steps, a panel per task, a line per candidate and start."""
    from paramscale.figures.style import PALETTE, pyplot, save_figure

    plt = pyplot()
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    cols = math.ceil(len(tasks) / 2)
    fig, axes = plt.subplots(2, cols, figsize=(4 * cols, 6.5), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        methods = dict.fromkeys(r["method"] for r in rows
                                if r["task"] == task and r["family"] == "EGAdam")  # fmt: skip
        for method in methods:
            base = float(method.split("lr=")[1].split(",")[0])
            exponent = candidate(method)
            mine = [r for r in rows if r["task"] == task and r["method"] == method
                    and r["seed"] == min(x["seed"] for x in rows) and r["step"] > 0]  # fmt: skip
            colour = PALETTE[CANDIDATES.index(exponent) % len(PALETTE)]
            low = base < statistics.median(float(m.split("lr=")[1].split(",")[0]) for m in methods)
            ax.plot([r["step"] for r in mine], [r["effective_lr"] / base for r in mine],
                    color=colour, ls="-" if low else "--",
                    label=f"{exponent}, {'low' if low else 'high'} start")  # fmt: skip
        ax.axhline(1.0, color="k", lw=0.6)
        ax.set_yscale("log")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("scale s_k")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=6.5, frameon=False)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, out, "eg_study")


def run(out: Path, seeds: list[int], workers: int, tasks: list[str] | None = None,
        steps: int | None = None, progress: bool = True) -> str:  # fmt: skip
    """The study: ``eg.csv``, ``table.txt`` and ``eg_study.png`` in ``out``; the table."""
    from paramscale import train
    from paramscale.train import runner

    names = tasks or list(train.TASKS)
    if progress:
        print(f"study eg: {len(names)} tasks, seeds {seeds}", file=sys.stderr, flush=True)
    rows = run_rows(names, seeds, workers, steps, progress or None)
    out.mkdir(parents=True, exist_ok=True)
    runner.write_csv(rows, out / "eg.csv")
    rows = runner.read_csv(out / "eg.csv")  # the table and the figure come from the CSV
    table = format_table(summary(rows))
    (out / "table.txt").write_text(table + "\n")
    plot(rows, out)
    return table
