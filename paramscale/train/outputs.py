"""What a ``paramscale train`` run leaves: the tidy CSV first, then the table and the
figure made from the CSV as read back (benchopt's order). Apart from ``paramscale.train``
so that the package does not import the figures, which read its reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramscale.figures.training import NoFigure, train_plot
from paramscale.train import report, runner

__all__ = ["write_outputs"]


def write_outputs(rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """The CSV, then the table and the figure made from the CSV as read back. A run whose
    figure cannot be drawn (nothing ran, one step logged) has ``png`` and ``pdf`` None and
    the reason in ``no_figure``: the CSV and the table are its results."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "train.csv"
    runner.write_csv(rows, csv_path)
    data = runner.read_csv(csv_path)
    summaries = report.summarize(data)
    table = report.format_table(summaries) + "\n\n" + report.format_grid(summaries) + "\n"
    (out / "table.txt").write_text(table)
    written: dict[str, Any] = {"csv": csv_path, "table": out / "table.txt", "no_figure": None}
    try:
        written["png"], written["pdf"] = train_plot(data, out)
    except NoFigure as exc:
        written.update(png=None, pdf=None, no_figure=str(exc))
    return written
