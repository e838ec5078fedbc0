"""The figure of ``paramscale plot --pep``: each claim's bound against its certified worst
case (``proofs_check.pep``) over the number of steps, drawn from the CSV of its rows."""

from __future__ import annotations

from pathlib import Path

from paramscale.figures.style import PALETTE, pyplot, save_figure
from paramscale.figures.tidy import Rows

__all__ = ["pep_data", "pep_plot"]


def pep_data(n_max: int) -> Rows:
    """``proofs_check.pep``'s rows: each claim's bound and its PEP worst case, N = 1..n_max."""
    from paramscale.proofs_check import pep

    return [r.as_dict() for r in pep.rows(n_max=n_max)]


def pep_plot(rows: Rows, out: Path) -> list[Path]:
    """Per claim with N steps: the bound (dashed) and the largest certified worst case over
    its grid (solid) against N; D = G = 1. A lower bound (L1) is drawn without its worst
    case, which is another claim's (C2's method)."""
    from paramscale.proofs_check.pep import PEP_CLAIMS

    plt = pyplot()
    claims = [c for c in dict.fromkeys(r["claim"] for r in rows)
              if len({r["n"] for r in rows if r["claim"] == c}) > 1]  # fmt: skip
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, claim in enumerate(claims):
        mine = [r for r in rows if r["claim"] == claim and r["status"] == "optimal"]
        ns = sorted({r["n"] for r in mine})
        worst = [max(r["worst_case"] for r in mine if r["n"] == n) for n in ns]
        bound = [next(r["bound"] for r in mine if r["n"] == n) for n in ns]
        colour = PALETTE[i % len(PALETTE)]
        lower = claim in PEP_CLAIMS and PEP_CLAIMS[claim].lower
        if not lower:
            ax.plot(ns, worst, color=colour, marker="o", lw=1.4, label=f"{claim}: worst case (PEP)")
        ax.plot(ns, bound, color=colour, ls=":" if lower else "--", lw=1.2,
                label=f"{claim}: {'lower bound' if lower else 'bound'}")  # fmt: skip
    ax.set_xlabel("steps N")
    ax.set_ylabel("min_k f(x_k) - f*   (D = G = 1)")
    ax.set_yscale("log")
    ax.legend(fontsize=6.5, frameon=False, ncol=2)
    ax.grid(alpha=0.3)
    return save_figure(fig, out, "pep_worst_cases")
