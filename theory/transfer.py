"""Metric transfers: how a step-size rule's scaled-space state moves when the scaling
changes from ``alpha_{k-1}`` to ``alpha_k`` (docs/spec.md, "Metric transfer").

A scaled-space distance (D-Adaptation's ``d``, ``s``) is multiplied by ``rho_k``, a squared
one (its numerator) by ``rho_k**2``, and a scaled gradient norm (the normaliser ``N``) is
divided by ``rho_k``. Each transfer is ``rho_k`` as a scalar function of a few reductions
of the two metrics (``STATISTICS``), so the same formula serves the NumPy reference, which
reduces arrays, and the torch optimizers, which reduce on the device (per tensor, then
over tensors and ranks) and call ``Transfer.rho`` on the host.

    max           max_i alpha_k,i / alpha_{k-1},i                 (docs/spec.md 3.2, literal)
    min           min_i alpha_k,i / alpha_{k-1},i                 (keeps d a lower bound)
    max_alpha     max(alpha_k) / max(alpha_{k-1})
    rms_alpha     ||alpha_k|| / ||alpha_{k-1}||
    displacement  ||alpha_k (x_k - x_0)|| / ||alpha_{k-1} (x_k - x_0)||, max_alpha's ratio
                  while nothing has moved
    shrink        min(1, max_i alpha_k,i / alpha_{k-1},i)
    anchor        min_i alpha_k,i / alpha_a,i  /  min_i alpha_{k-1},i / alpha_a,i, alpha_a
                  the anchor: the metric of the step whose estimate the rule carries
    anchor_active the same over the coordinates with a nonzero gradient
    none          1

An anchored transfer keeps the anchor ``alpha_a`` (one parameter-sized vector,
``theory.reductions.VECTORS``). Its rho telescopes: the scaled distance carried from the
anchor to step k is multiplied by ``min_i alpha_k,i / alpha_a,i`` in all, one ratio between
two metrics, where ``min`` multiplies the per-step minima (min of a product >= product of
the mins: a coordinate's noise from step to step compounds). If ``d_a <= D_a`` (the
distance to a solution in the anchor's metric) then ``d_k <= D_k`` in the metric of step
k: the lower bound D-Adaptation's proof needs (``proofs_check``, claim
"anchored-lower-bound"). The anchor moves to the current metric at the step after the
rule raised its estimate (``StepRule.raised``): that step's rho is then the one-step
``ratio_min`` (``REANCHOR`` set by the engine), which equals the anchored formula with the
anchor moved first, and the anchor becomes ``alpha_{k-1}`` before the move. A coordinate
with no anchor yet takes ``alpha_{k-1}``.

Each needs reductions (``theory.reductions``) of the two metrics over the coordinates that
have both (torch: a parameter whose first gradient comes at step k has no
``alpha_{k-1}`` and does not enter), except ``HOST_STATISTICS``: the largest alpha of step
k and of step k-1, which the torch optimizers keep on the host from each step's reductions
(over every parameter stepped at that step; the same as here when every parameter steps
at every step), so that no sweep reduces them again. ``min_active`` falls back on their
ratio at a step where no coordinate has a nonzero gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paramscale.theory.reductions import REDUCTIONS, Coordinates, evaluate

__all__ = ["Transfer", "TRANSFERS", "HOST_STATISTICS", "REANCHOR", "rho"]

HOST_STATISTICS = ("alpha_max", "alpha_prev_max")
REANCHOR = "reanchor"  # an anchored transfer's flag: the rule raised its estimate last step


def _displacement(s: dict[str, float]) -> float:
    if s["moved_prev_sq"] > 0:
        return math.sqrt(s["moved_sq"] / s["moved_prev_sq"])
    return s["alpha_max"] / s["alpha_prev_max"]  # nothing moved: d is still d0 max(alpha)


def _anchored(ratio: str, now: str, before: str) -> Callable[[dict[str, Any]], float]:
    """rho of an anchored transfer from its three minima (docs/spec.md, "Metric transfer"):
    the one-step ratio where the anchor moves, else the ratio of the two anchor ratios;
    the ratio of the largest alphas where no coordinate enters (a masked minimum: +inf)."""

    def rho(s: dict[str, Any]) -> float:
        value = s[ratio] if s[REANCHOR] else s[now] / s[before]
        if math.isfinite(value):
            return value
        return s["alpha_max"] / s["alpha_prev_max"]

    return rho


@dataclass(frozen=True)
class Transfer:
    """``rho(sums)`` from the reductions named in ``needs``; ``why``: one line for docs."""

    name: str
    needs: tuple[str, ...]
    rho: Callable[[dict[str, Any]], float]
    why: str
    anchored: bool = False

    def __post_init__(self) -> None:
        unknown = [key for key in self.needs if key not in REDUCTIONS]
        if unknown:
            raise ValueError(f"Invalid transfer {self.name!r}: unknown reductions {unknown}")

    @property
    def vectors(self) -> frozenset[str]:
        """The vector state it reads (``x0`` for the distance travelled)."""
        reads = frozenset().union(*(REDUCTIONS[key].reads for key in self.needs))
        return reads & {"x0", "anchor"}


TRANSFERS: dict[str, Transfer] = {
    t.name: t
    for t in (
        Transfer(
            "max",
            ("ratio_max",),
            lambda s: s["ratio_max"],
            "the literal reading of the paper's line 6 (docs/spec.md 3.2)",
        ),
        Transfer(
            "min",
            ("ratio_min",),
            lambda s: s["ratio_min"],
            "the new scaled distance is at least min ratio times the old: d stays a "
            "lower bound, as D-Adaptation's proof needs",
        ),
        Transfer(
            "min_active",
            ("ratio_min_active", "alpha_max", "alpha_prev_max"),
            lambda s: (
                s["ratio_min_active"]
                if math.isfinite(s["ratio_min_active"])
                else s["alpha_max"] / s["alpha_prev_max"]
            ),
            "min over the coordinates with a nonzero gradient: a coordinate that stopped "
            "(zero gradient) does not shrink the others' step",
        ),
        Transfer(
            "max_alpha",
            ("alpha_max", "alpha_prev_max"),
            lambda s: s["alpha_max"] / s["alpha_prev_max"],
            "telescopes: d / max(alpha_k) is what is carried",
        ),
        Transfer(
            "rms_alpha",
            ("alpha_sq", "alpha_prev_sq"),
            lambda s: math.sqrt(s["alpha_sq"] / s["alpha_prev_sq"]),
            "telescopes, and one coordinate moves it by at most its share",
        ),
        Transfer(
            "displacement",
            ("moved_sq", "moved_prev_sq", "alpha_max", "alpha_prev_max"),
            _displacement,
            "the distance already travelled, in the new and the old metric: coordinates "
            "that have not moved do not count",
        ),
        Transfer(
            "anchor",
            (
                "ratio_min",
                "anchor_ratio_min",
                "anchor_prev_ratio_min",
                "alpha_max",
                "alpha_prev_max",
            ),
            _anchored("ratio_min", "anchor_ratio_min", "anchor_prev_ratio_min"),
            "min's lower bound, carried from the anchor's metric: one ratio between two "
            "metrics, so per-step noise does not compound (one parameter-sized vector)",
            anchored=True,
        ),
        Transfer(
            "anchor_active",
            (
                "ratio_min_active",
                "anchor_ratio_min_active",
                "anchor_prev_ratio_min_active",
                "alpha_max",
                "alpha_prev_max",
            ),
            _anchored(
                "ratio_min_active", "anchor_ratio_min_active", "anchor_prev_ratio_min_active"
            ),
            "anchor over the coordinates with a nonzero gradient (min_active's mask): the "
            "bound holds where the mask does not change",
            anchored=True,
        ),
        Transfer(
            "shrink", ("ratio_max",), lambda s: min(1.0, s["ratio_max"]), "only ever shrink d"
        ),
        Transfer("none", (), lambda s: 1.0, "no transfer (breaks invariance (i))"),
    )  # fmt: skip
}


def rho(kind: str, coordinates: Coordinates, reanchor: bool = False) -> float:
    """``rho_k`` of transfer ``kind`` (NumPy), from the two metrics in ``coordinates``
    (and an anchored one's anchor; ``reanchor``: the anchor moves at this step)."""
    transfer = TRANSFERS[kind]
    sums: dict[str, Any] = {key: evaluate(key, coordinates) for key in transfer.needs}
    return transfer.rho({**sums, REANCHOR: reanchor})
