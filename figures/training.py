"""The figure of ``paramscale train``, drawn from its CSV (``paramscale.train.runner``).

One row of panels per task: the logged train loss, the test metric (mean over seeds, the
band from the lowest to the highest seed), and the effective learning rate of the
learning-rate-free methods whose step has units (Adam's, SGD's, a rule's own), against the
band of constant Adam learning rates that end within 1 point of the best (the paper's
learning-rate plot). To keep each panel readable it shows the best tuned Adam and SGD,
this project's methods (every variant run) and D-Adapt Adam and Prodigy where they ran;
a run with none of those (``--methods DoG``) shows every method it ran. Every method is in
the table and the CSV. A run with nothing to draw (every run skipped or failed, or one
logged step) gets no figure: ``train_plot`` raises ``NoFigure`` saying why.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from paramscale.figures.style import PALETTE, pyplot, save_figure
from paramscale.train.report import best_of_grids, good_band, summarize
from paramscale.train.tasks import TASKS

SHOWN = ("adam", "sgd", "PSDASGD", "PSSPS", "DAdaptAdam", "Prodigy")
FAMILY_COLOURS = {
    "adam": PALETTE[6], "sgd": "#999999", "PSSPS": PALETTE[5], "DAdaptAdam": PALETTE[1],
    "Prodigy": PALETTE[3],
}  # fmt: skip
VARIANT_COLOURS = [PALETTE[4], PALETTE[2], PALETTE[0], PALETTE[7]]  # PSDASGD and its variants
OTHER_COLOURS = [PALETTE[i] for i in (0, 2, 4, 7, 1, 3, 5, 6)]  # methods outside SHOWN
BAND = "#bbbbbb"


class NoFigure(ValueError):
    """A run whose figure cannot be drawn, and why (the CSV and the table are written)."""


def shown(summaries: list[Any]) -> list[Any]:
    """The best-of-grid summaries the figure draws: those of ``SHOWN``'s families that ran,
    or, where none did, every method that ran (skipped and wholly failed ones left out)."""
    ran = [s for s in best_of_grids(summaries) if s.status == "ok" and s.seeds > s.errors]
    fixed = [s for s in ran if s.family in SHOWN]
    return fixed or ran


def _curves(rows: list[dict[str, Any]], task: str, method: str, key: str):
    """steps, mean, low, high of ``key`` over the seeds of one method (NaN where a seed has
    no value, e.g. after it diverged)."""
    by_seed: dict[int, dict[int, float]] = {}
    for r in rows:
        if r["task"] == task and r["method"] == method and r["status"] != "skipped":
            by_seed.setdefault(r["seed"], {})[r["step"]] = r[key]
    steps = sorted({s for seed in by_seed.values() for s in seed})
    values = np.array([[seed.get(s, np.nan) for s in steps] for seed in by_seed.values()])
    if values.size == 0:
        return np.array([]), *(np.array([]),) * 3
    with warnings.catch_warnings():  # a step where every seed had diverged: NaN, not drawn
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.array(steps), *(f(values, 0) for f in (np.nanmean, np.nanmin, np.nanmax))


def _has_units(s: Any) -> bool:
    """Whether a learning-rate-free method reports a step with units (COCOB's is "none";
    a grid's lr is its constant, drawn as the band instead)."""
    return s.grid_lr is None and s.lr_units not in ("", "none")


def _colour(method: str, chosen: list[Any]) -> str | None:
    """A fixed colour for the families of ``SHOWN`` (None for any other method)."""
    family = next(s.family for s in chosen if s.method == method)
    return FAMILY_COLOURS.get(family) if family != "PSDASGD" else VARIANT_COLOURS[0]


def train_plot(rows: list[dict[str, Any]], out: Path, name: str = "train") -> list[Path]:
    """The figure, as ``out/name.png`` and ``.pdf``."""
    summaries = summarize(rows)
    chosen = shown(summaries)
    if not chosen:
        raise NoFigure("no method ran: every run was skipped or failed")
    if max(s.steps for s in chosen) == 0:
        raise NoFigure("one step logged: no curve to draw (run more --steps)")
    plt = pyplot()
    tasks = list(dict.fromkeys(s.task for s in chosen))
    units = {s.lr_units for s in chosen if _has_units(s)}
    others = [m for m in dict.fromkeys(s.method for s in chosen) if _colour(m, chosen) is None]
    fig, axes = plt.subplots(len(tasks), 3, figsize=(13, 2.9 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        ax_loss, ax_metric, ax_lr = axes[row]
        variants = 0
        for s in (s for s in chosen if s.task == task):
            if s.family == "PSDASGD":
                colour = VARIANT_COLOURS[variants % len(VARIANT_COLOURS)]
                variants += 1
            else:
                colour = _colour(s.method, chosen)
                if colour is None:
                    colour = OTHER_COLOURS[others.index(s.method) % len(OTHER_COLOURS)]
            label = s.method if s.grid_lr is None else f"{s.family} (best lr {s.grid_lr:.2g})"
            if s.diverged + s.errors:
                label += f" [{s.diverged + s.errors}/{s.seeds} diverged]"
            for ax, key in ((ax_loss, "train_loss"), (ax_metric, "test_metric")):
                steps, mean, low, high = _curves(rows, task, s.method, key)
                ax.plot(steps, mean, color=colour, lw=1.4, label=label)
                ax.fill_between(steps, low, high, color=colour, alpha=0.15, lw=0)
            if _has_units(s):  # the lr panel
                steps, mean, low, high = _curves(rows, task, s.method, "effective_lr")
                unit = "" if units == {"adam"} else f" ({s.lr_units} units)"
                ax_lr.plot(steps, mean, color=colour, lw=1.4, label=label + unit)
                ax_lr.fill_between(steps, low, high, color=colour, alpha=0.15, lw=0)
        band = good_band(summaries, task)
        if band is not None:
            ax_lr.axhspan(band[0], band[1], color=BAND, alpha=0.5, lw=0,
                          label="Adam lrs within 1 pt of best")  # fmt: skip
            if band[0] == band[1]:
                ax_lr.axhline(band[0], color=BAND, lw=3)
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel(f"{task}\ntrain loss")
        ax_metric.set_ylabel(TASKS[task].metric)
        ax_lr.set_ylabel("effective lr (Adam units)" if units == {"adam"} else "effective lr")
        for ax in (ax_loss, ax_metric, ax_lr):
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        ax_metric.legend(fontsize=6.5, loc="lower right")
        if ax_lr.get_legend_handles_labels()[0]:
            ax_lr.set_yscale("log")
            ax_lr.legend(fontsize=6.5, loc="best")
        else:
            ax_lr.text(0.5, 0.5, "no method with a step in units", ha="center",
                       transform=ax_lr.transAxes, fontsize=8)  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, out, name)
