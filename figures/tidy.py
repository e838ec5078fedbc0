"""The figures' data as a tidy table (benchopt style): rows of named values written to CSV,
and read back with numbers as floats; every figure is drawn from the table it wrote."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

Rows = list[dict[str, Any]]


def write_csv(rows: Rows, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(rows)


def read_csv(path: Path) -> Rows:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k, v in r.items():
            try:
                r[k] = float(v)
            except ValueError:
                pass
    return rows
