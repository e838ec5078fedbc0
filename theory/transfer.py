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
    none          1

The statistics run only over coordinates that have both metrics (torch: a parameter whose
first gradient comes at step k has no ``alpha_{k-1}`` and does not enter), except
``HOST_STATISTICS``: the largest alpha of step k and of step k-1, which the torch
optimizers keep on the host from each step's reductions (over every parameter stepped at
that step; the same as here when every parameter steps at every step), so that no sweep
reduces them again. ``min_active`` falls back on their ratio at a step where no coordinate
has a nonzero gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = ["MetricChange", "Statistic", "Transfer", "STATISTICS", "TRANSFERS", "statistics"]


class MetricChange(NamedTuple):
    """The two metrics, the distance travelled ``moved = x_k - x_0`` and the gradient
    ``g_k`` (arrays of one shape: NumPy, or one torch tensor)."""

    alpha_prev: Any
    alpha: Any
    moved: Any = None
    g: Any = None


def _masked(ratio: Any, g: Any) -> Any:
    """``ratio`` (a temporary: overwritten; positive, as alpha is) where ``g != 0``, +inf
    elsewhere (so a min ignores those coordinates). On torch, eagerly ``ratio / |sign(g)|``
    (divided by 1 or by 0: arithmetic passes, which the CPU runs several times faster than
    a comparison and a masked fill); in a compiled kernel the masked fill, which the
    compiler fuses into one select (4% faster there). A tensor's own methods, as the
    compiled kernels call it (array_api_compat's lookup does not trace)."""
    if hasattr(ratio, "div_"):
        from torch.compiler import is_compiling

        if is_compiling():
            return ratio.masked_fill_(g == 0, math.inf)
        return ratio.div_(g.sign().abs_())
    return np.where(g != 0, ratio, math.inf)


@dataclass(frozen=True)
class Statistic:
    """A reduction: ``elementwise(change)`` (array API), reduced by ``op`` ("max", "min"
    or "sum") over the coordinates, then over tensors and ranks."""

    op: str
    elementwise: Callable[[MetricChange], Any]


STATISTICS: dict[str, Statistic] = {
    "ratio_max": Statistic("max", lambda c: c.alpha / c.alpha_prev),
    "ratio_min": Statistic("min", lambda c: c.alpha / c.alpha_prev),
    "ratio_min_active": Statistic("min", lambda c: _masked(c.alpha / c.alpha_prev, c.g)),
    "alpha_max": Statistic("max", lambda c: c.alpha),
    "alpha_prev_max": Statistic("max", lambda c: c.alpha_prev),
    "alpha_sq": Statistic("sum", lambda c: c.alpha * c.alpha),
    "alpha_prev_sq": Statistic("sum", lambda c: c.alpha_prev * c.alpha_prev),
    "moved_sq": Statistic("sum", lambda c: (c.alpha * c.moved) ** 2),
    "moved_prev_sq": Statistic("sum", lambda c: (c.alpha_prev * c.moved) ** 2),
}


HOST_STATISTICS = ("alpha_max", "alpha_prev_max")


def _displacement(s: dict[str, float]) -> float:
    if s["moved_prev_sq"] > 0:
        return math.sqrt(s["moved_sq"] / s["moved_prev_sq"])
    return s["alpha_max"] / s["alpha_prev_max"]  # nothing moved: d is still d0 max(alpha)


@dataclass(frozen=True)
class Transfer:
    """``rho(stats)`` from the reductions named in ``needs``; ``why``: one line for docs."""

    name: str
    needs: tuple[str, ...]
    rho: Callable[[dict[str, float]], float]
    why: str

    @property
    def uses_start(self) -> bool:
        """Whether it reads the distance travelled, ``x_k - x_0`` (the start is kept)."""
        return any(key.startswith("moved") for key in self.needs)


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
            "shrink", ("ratio_max",), lambda s: min(1.0, s["ratio_max"]), "only ever shrink d"
        ),
        Transfer("none", (), lambda s: 1.0, "no transfer (breaks invariance (i))"),
    )  # fmt: skip
}


def reduce(name: str, change: MetricChange) -> float:
    """One statistic of ``change`` as a float (the NumPy reference's reduction)."""
    stat = STATISTICS[name]
    return float(getattr(stat.elementwise(change), stat.op)())


def statistics(names: tuple[str, ...], change: MetricChange) -> dict[str, float]:
    return {name: reduce(name, change) for name in names}


def rho(kind: str, change: MetricChange) -> float:
    """``rho_k`` of transfer ``kind`` (NumPy)."""
    transfer = TRANSFERS[kind]
    return transfer.rho(statistics(transfer.needs, change))
