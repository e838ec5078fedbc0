"""What every figure shares: one colour-blind safe palette (a method has the same colour in
every figure), the values a log axis draws, matplotlib's non-interactive backend, and
saving as PNG and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Okabe-Ito: colour-blind safe; one colour per method, the same in every figure
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
METHOD_COLOURS = {
    "sgd(C2 step)": PALETTE[6],
    "sps": PALETTE[1],
    "ps_sps[amsgrad]": PALETTE[0],
    "ps_sps[adam]": PALETTE[5],
    "dadapt_sgd": PALETTE[3],
    "ps_dadapt_sgd[amsgrad]": PALETTE[2],
    "ps_dadapt_sgd[adam]": PALETTE[4],
    "ps_dadapt_sgd[adam,literal]": "#8C8C8C",  # grey: yellow is unreadable on white
    "ps_dadapt_sgd[adam,naive]": PALETTE[6],
}


def on_log_axis(values: Any) -> np.ndarray:
    """Values for a log axis: non-finite, non-positive and astronomically large (> 1e100:
    diverged runs, bounds with pi_k ~ e^325) entries are not drawn; the CSV keeps them."""
    v = np.asarray(values, dtype=float)
    return np.where(np.isfinite(v) & (v > 0) & (v < 1e100), v, np.nan)


def save_figure(fig: Any, out: Path, name: str) -> list[Path]:
    """``fig`` as ``out/name.png`` and ``.pdf``, then closed; the two paths."""
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def pyplot() -> Any:
    """matplotlib's pyplot on a non-interactive backend (Agg, unless one is chosen)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
