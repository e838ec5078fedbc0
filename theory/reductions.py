"""Named reductions over the parameters: what a step-size rule and a metric transfer read
at each step, declared by name and computed by every engine (docs/spec.md section 9).

A step-size rule written for SGD reads a few numbers that sum over every coordinate of
the model (a squared norm, an inner product, a maximum). It names them
(``StepRule.reductions``); the NumPy reference (``theory.combinator``) evaluates them on
its vectors, the torch optimizers on every path (per tensor, foreach, compiled CPU
kernels, Triton) per tensor, then over tensors and ranks, and both hand the same floats
to the rule's scalar update. A reduction is one of four forms over named element-wise
``FIELDS`` of a tensor's ``Coordinates``:

    sq    sum_i f_i**2            (accumulated in float64)
    dot   sum_i f_i h_i           (accumulated in float64)
    max   max_i f_i
    min   min_i f_i

and is taken at one of three stages of a step:

    step   before the step size, in the step's one synchronisation (sweep 1)
    move   while the iterate moves, of the vector state before it changes; ``weighted``:
           each parameter group's part times the step ``lam`` that group took
    moved  after the move, of the vector state as moved

Reductions of the last two stages are read by the rule's ``settle`` (the torch optimizers
fetch them with the next step's synchronisation, or when ``stats()`` or ``state_dict()``
asks). The vector state an engine keeps for a rule is one of ``VECTORS``.

A new reduction is one entry here (with any new field); every engine computes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Coordinates", "Field", "Reduction", "FIELDS", "REDUCTIONS", "VECTORS", "evaluate"]

# the vector state an engine keeps for a rule that declares it (``StepRule.vectors``)
VECTORS = {
    "s": "the sum of scaled steps, s_k = rho_k s_{k-1} + lam_k g'_k (zero at first)",
    "x0": "the start x_0: each parameter's value at its first step",
    "g0": "a kept gradient: set at the steps where the rule's captures() names it",
    "anchor": "an anchored transfer's metric: alpha of the step whose estimate it carries",
}


class Coordinates(NamedTuple):
    """One tensor's (or the NumPy vector's) values a field reads: the gradient ``g`` (the
    direction the step descends along), ``alpha`` (alpha_k), ``alpha_prev``
    (alpha_{k-1}), the iterate ``x`` and the vector state ``x0``, ``g0``, ``s``,
    ``anchor``. Arrays of one shape (NumPy, or torch tensors); absent ones are None."""

    g: Any = None
    alpha: Any = None
    alpha_prev: Any = None
    x: Any = None
    x0: Any = None
    g0: Any = None
    s: Any = None
    anchor: Any = None


def _masked(ratio: Any, g: Any) -> Any:
    """``ratio`` (a temporary: overwritten; positive, as alpha is) where ``g != 0``, +inf
    elsewhere (so a min ignores those coordinates). On torch, eagerly ``ratio / |sign(g)|``
    (divided by 1 or by 0: arithmetic passes, which the CPU runs several times faster than
    a comparison and a masked fill); in a compiled kernel the masked fill, which the
    compiler fuses into one select. A tensor's own methods, as the compiled kernels call
    it (array_api_compat's lookup does not trace)."""
    if hasattr(ratio, "div_"):
        from torch.compiler import is_compiling

        if is_compiling():
            return ratio.masked_fill_(g == 0, math.inf)
        return ratio.div_(g.sign().abs_())
    return np.where(g != 0, ratio, math.inf)


@dataclass(frozen=True)
class Field:
    """An element-wise quantity: ``of(coordinates)`` (array API), reading ``reads``."""

    of: Callable[[Coordinates], Any]
    reads: frozenset[str]


def _field(of: Callable[[Coordinates], Any], *reads: str) -> Field:
    return Field(of, frozenset(reads))


FIELDS: dict[str, Field] = {
    "g": _field(lambda c: c.g, "g"),
    "alpha": _field(lambda c: c.alpha, "alpha"),
    "alpha_prev": _field(lambda c: c.alpha_prev, "alpha_prev"),
    "g_scaled": _field(lambda c: c.g / c.alpha, "g", "alpha"),  # g' (docs/spec.md 1)
    "ratio": _field(lambda c: c.alpha / c.alpha_prev, "alpha", "alpha_prev"),
    # the ratio where the gradient is nonzero, +inf elsewhere (a min ignores them)
    "ratio_active": _field(
        lambda c: _masked(c.alpha / c.alpha_prev, c.g), "alpha", "alpha_prev", "g"
    ),
    "s": _field(lambda c: c.s, "s"),
    "g0_scaled": _field(lambda c: c.g0 / c.alpha, "g0", "alpha"),
    "moved": _field(lambda c: c.alpha * (c.x - c.x0), "alpha", "x", "x0"),  # alpha_k (x_k - x_0)
    "moved_prev": _field(lambda c: c.alpha_prev * (c.x - c.x0), "alpha_prev", "x", "x0"),
    "x_scaled": _field(lambda c: c.alpha * c.x, "alpha", "x"),
    # alpha_k and alpha_{k-1} over the anchor's metric (theory.transfer, "anchor"); they
    # read alpha_{k-1} too: a coordinate enters once it has a previous metric
    "anchor_ratio": _field(lambda c: c.alpha / c.anchor, "alpha", "anchor", "alpha_prev"),
    "anchor_prev_ratio": _field(lambda c: c.alpha_prev / c.anchor, "alpha_prev", "anchor"),
    "anchor_ratio_active": _field(
        lambda c: _masked(c.alpha / c.anchor, c.g), "alpha", "anchor", "alpha_prev", "g"
    ),
    "anchor_prev_ratio_active": _field(
        lambda c: _masked(c.alpha_prev / c.anchor, c.g), "alpha_prev", "anchor", "g"
    ),
}

FORMS = ("sq", "dot", "max", "min")
STAGES = ("step", "move", "moved")


@dataclass(frozen=True)
class Reduction:
    """``form`` of ``fields`` (two for a dot) at ``stage``; ``weighted``: times the step of
    the parameter group (move stage); ``why``: one line for the docs."""

    form: str
    fields: tuple[str, ...]
    why: str
    stage: str = "step"
    weighted: bool = False

    @property
    def op(self) -> str:
        """How partial reductions combine over tensors and ranks: "sum", "max" or "min"."""
        return "sum" if self.form in ("sq", "dot") else self.form

    @property
    def reads(self) -> frozenset[str]:
        """The ``Coordinates`` entries its fields read."""
        return frozenset().union(*(FIELDS[f].reads for f in self.fields))


def _r(form: str, fields: str, why: str, stage: str = "step", weighted: bool = False):
    return Reduction(form, tuple(fields.split()), why, stage, weighted)


REDUCTIONS: dict[str, Reduction] = {
    "grad_sq": _r("sq", "g", "||g||^2 (every step: the finite check)"),
    "scaled_grad_sq": _r("sq", "g_scaled", "||g'||^2, g' = g / alpha"),
    "alpha_max": _r("max", "alpha", "max(alpha_k)"),
    "g0_scaled_sq": _r("sq", "g0_scaled", "||g_0 / alpha_k||^2, g_0 the kept gradient"),
    "x_scaled_sq": _r("sq", "x_scaled", "||alpha_k x_k||^2 (the scaled distance from 0)"),
    "moved_sq": _r("sq", "moved", "||alpha_k (x_k - x_0)||^2, the scaled distance travelled"),
    "moved_prev_sq": _r("sq", "moved_prev", "||alpha_{k-1} (x_k - x_0)||^2"),
    "ratio_max": _r("max", "ratio", "max_i alpha_k,i / alpha_{k-1},i"),
    "ratio_min": _r("min", "ratio", "min_i alpha_k,i / alpha_{k-1},i"),
    "ratio_min_active": _r("min", "ratio_active", "the min ratio over coordinates with g != 0"),
    "alpha_prev_max": _r("max", "alpha_prev", "max(alpha_{k-1})"),
    "anchor_ratio_min": _r("min", "anchor_ratio", "min_i alpha_k,i / alpha_a,i (a: the anchor)"),
    "anchor_prev_ratio_min": _r("min", "anchor_prev_ratio", "min_i alpha_{k-1},i / alpha_a,i"),
    "anchor_ratio_min_active": _r("min", "anchor_ratio_active", "the anchor ratio where g != 0"),
    "anchor_prev_ratio_min_active": _r(
        "min", "anchor_prev_ratio_active", "the previous anchor ratio where g != 0"
    ),
    "alpha_sq": _r("sq", "alpha", "||alpha_k||^2"),
    "alpha_prev_sq": _r("sq", "alpha_prev", "||alpha_{k-1}||^2"),
    "step_dot": _r("dot", "g_scaled s", "lam <g'_k, s_{k-1}>, lam each group's step", "move", True),
    "sum_sq": _r("sq", "s", "||s_k||^2 after the move", "moved"),
}


def evaluate(name: str, coordinates: Coordinates) -> float:
    """Reduction ``name`` of one NumPy vector's ``coordinates``, as a float (the NumPy
    reference; a weighted one unweighted: the caller multiplies by lam)."""
    reduction = REDUCTIONS[name]
    values = [FIELDS[f].of(coordinates) for f in reduction.fields]
    if reduction.form == "sq":
        return float(np.dot(values[0], values[0]))
    if reduction.form == "dot":
        return float(np.dot(values[0], values[1]))
    return float(getattr(values[0], reduction.form)())
