"""The table of ``paramscale train``, made from the CSV's rows (``runner.read_csv``).

Per task: each method's final test metric (mean +- std over seeds), its rank, how many of
its runs diverged, its final effective learning rate and the gap to the best tuned Adam.
A grid family (``adam``, ``sgd``, ``amsgrad``) enters the table at its best learning rate
for the task, chosen by the mean final test metric (which favours the baseline: it is
tuned on the test set); the whole grid is a second table. A diverged or failed run counts
as a final metric of 0 in the mean and the rank, and is marked.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from paramscale.train.tasks import TASKS

__all__ = ["Summary", "summarize", "best_of_grids", "format_table", "format_grid", "good_band"]


@dataclass(frozen=True)
class Summary:
    """One method on one task, over its seeds."""

    task: str
    method: str
    family: str
    grid_lr: float | None
    seeds: int
    mean: float
    std: float
    diverged: int
    errors: int
    final_lr: float  # median over seeds of the last logged effective lr
    lr_units: str
    final_gap: float  # mean final train_loss - f* (NaN where f* is unknown)
    steps: int
    status: str  # "ok" | "skipped: why"


def _runs(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        runs.setdefault((row["task"], row["method"], row["seed"]), []).append(row)
    return runs


def summarize(rows: list[dict[str, Any]]) -> list[Summary]:
    """A ``Summary`` per (task, method), in the order of first appearance."""
    by_method: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}
    for (task, method, _), run in _runs(rows).items():
        by_method.setdefault((task, method), []).append(sorted(run, key=lambda r: r["step"]))
    out = []
    for (task, method), runs in by_method.items():
        first = runs[0][0]
        if first["status"] == "skipped":
            out.append(
                Summary(
                    task,
                    method,
                    first["family"],
                    None,
                    0,
                    math.nan,
                    math.nan,
                    0,
                    0,
                    math.nan,
                    "",
                    math.nan,
                    0,
                    f"skipped: {first['detail']}",
                )  # fmt: skip
            )
            continue
        finals = [_final_metric(run) for run in runs]
        lrs = [run[-1]["effective_lr"] for run in runs if run[-1]["status"] == "ok"]
        gaps = [run[-1]["train_gap"] for run in runs if run[-1]["status"] == "ok"]
        out.append(
            Summary(
                task=task,
                method=method,
                family=first["family"],
                grid_lr=first["grid_lr"],
                seeds=len(runs),
                mean=statistics.fmean(finals),
                std=statistics.pstdev(finals) if len(finals) > 1 else 0.0,
                diverged=sum(run[-1]["status"] == "diverged" for run in runs),
                errors=sum(run[-1]["status"] == "error" for run in runs),
                final_lr=statistics.median(lrs) if lrs else math.nan,
                lr_units=first["lr_units"],
                final_gap=statistics.fmean(gaps) if gaps else math.nan,
                steps=max(run[-1]["step"] for run in runs),
                status="ok",
            )  # fmt: skip
        )
    return out


def _final_metric(run: list[dict[str, Any]]) -> float:
    last = run[-1]
    return last["test_metric"] if last["status"] == "ok" else 0.0


def best_of_grids(summaries: list[Summary]) -> list[Summary]:
    """Each task's summaries with every grid family replaced by its best point."""
    best: dict[tuple[str, str], Summary] = {}
    out: list[Summary] = []
    for s in summaries:
        if s.grid_lr is None:
            out.append(s)
            continue
        key = (s.task, s.family)
        if key not in best:
            out.append(s)  # its place in the order; replaced below
        if key not in best or s.mean > best[key].mean:
            best[key] = s
    return [best[(s.task, s.family)] if s.grid_lr is not None else s for s in out]


def good_band(summaries: list[Summary], task: str, family: str = "adam", points: float = 0.01):
    """(lowest, highest) lr of ``family``'s grid whose mean final metric on ``task`` is
    within ``points`` of the grid's best: the band of good constant learning rates."""
    grid = [s for s in summaries if s.task == task and s.family == family and s.grid_lr]
    if not grid:
        return None
    top = max(s.mean for s in grid)
    good = [s.grid_lr for s in grid if s.mean >= top - points and s.diverged + s.errors == 0]
    return (min(good), max(good)) if good else None


def format_table(summaries: list[Summary]) -> str:
    """Per task: rank, method, final metric mean +- std, gap to the best tuned Adam (in
    points), diverged runs, final effective lr (units), f - f* where known."""
    lines = []
    chosen = best_of_grids(summaries)
    for task in dict.fromkeys(s.task for s in chosen):
        rows = [s for s in chosen if s.task == task]
        ran = sorted((s for s in rows if s.status == "ok"), key=lambda s: -s.mean)
        adam = next((s for s in ran if s.family == "adam"), None)
        meta = TASKS[task]
        steps = max((s.steps for s in ran), default=0)
        seeds = max((s.seeds for s in ran), default=0)
        lines.append(f"{task}: {meta.metric}, {steps} steps, {seeds} seeds")
        with_gap = any(not math.isnan(s.final_gap) for s in ran)
        head = (
            f"{'rank':>4}  {'method':<34} {'final':>15} {'vs Adam':>8} {'diverged':>8} "
            f"{'final lr':>17}" + ("  f - f*" if with_gap else "")
        )
        lines += [head, "-" * len(head)]
        for rank, s in enumerate(ran, start=1):
            vs = "" if adam is None else f"{100 * (s.mean - adam.mean):+.1f}"
            div = f"{s.diverged + s.errors}/{s.seeds}" if s.diverged + s.errors else ""
            lr = "" if math.isnan(s.final_lr) else f"{s.final_lr:.2g} ({s.lr_units})"
            gap = f"  {s.final_gap:.2e}" if with_gap and not math.isnan(s.final_gap) else ""
            lines.append(
                f"{rank:>4}  {_label(s):<34} {s.mean:>7.3f} +- {s.std:.3f} {vs:>8} {div:>8} "
                f"{lr:>17}{gap}"
            )
        for s in rows:
            if s.status != "ok":
                lines.append(f"{'':>4}  {s.method:<34} {s.status}")
        lines.append("")
    lines.append(
        "final: the test metric at the last step (a diverged run counts as 0); vs Adam: "
        "points from the best tuned Adam (grid best, chosen on the test metric); final lr: "
        "the last effective learning rate (median over seeds)"
    )
    return "\n".join(lines)


def _label(s: Summary) -> str:
    if s.grid_lr is None:
        return s.method
    return f"{s.family} (best lr {s.grid_lr:.3g})"


def format_grid(summaries: list[Summary]) -> str:
    """The whole grid of each grid family: mean final metric per task and lr."""
    grid = [s for s in summaries if s.grid_lr is not None]
    if not grid:
        return ""
    lines = ["the learning-rate grids: mean final test metric (d: a seed diverged)"]
    for family in dict.fromkeys(s.family for s in grid):
        lrs = sorted({s.grid_lr for s in grid if s.family == family})
        head = f"{family:<22}" + "".join(f"{lr:>9.3g}" for lr in lrs)
        lines += ["", head, "-" * len(head)]
        for task in dict.fromkeys(s.task for s in grid if s.family == family):
            cells = {s.grid_lr: s for s in grid if s.family == family and s.task == task}
            text = "".join(
                f"{_grid_cell(cells[lr]):>9}" if lr in cells else f"{'':>9}" for lr in lrs
            )
            lines.append(f"{task:<22}{text}")
    return "\n".join(lines)


def _grid_cell(s: Summary) -> str:
    return f"{s.mean:.3f}" + ("d" if s.diverged + s.errors else "")
