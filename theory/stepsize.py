"""Step-size rules written for SGD, run by ``parameter_scaled`` in the scaled space.

A rule has ``init(x0) -> state``, ``step_size(state, inp) -> (lam, state, info)``,
``transfer`` (the name of its metric transfer, ``theory.transfer``; "none" for a rule
without scaled-space state) and ``transfer_state(state, rho) -> state``: the combinator
measures ``rho_k`` when the scaled space changes and calls ``transfer_state``, so a rule
that keeps scaled-space state (D-Adaptation's ``d``, ``s``) moves it to the new space.
``lam`` is the step in scaled space: the update is ``x_{k+1} = x_k - lam_k g_k /
alpha_k**2``.

The step-size math is written once, as scalar functions of reductions (``StepStats``):
``needs`` names the reductions, ``host_step(scalars, stats) -> (lam, scalars)`` computes
the step, ``transfer_scalars`` moves scalar state to a new metric and, for D-Adaptation
(``keeps_sum``), ``estimate`` updates d from <g', s> and ||s||**2. ``step_size`` reduces
NumPy arrays and calls them; ``torch_impl`` reduces tensors on the device and calls the
very same functions on the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from paramscale.theory import _validate as check
from paramscale.theory.transfer import TRANSFERS

Schedule = Callable[[int], float]

__all__ = ["StepInput", "StepStats", "constant", "polyak", "dadapt", "Schedule", "NORMALISERS"]


class StepInput(NamedTuple):
    """What a step-size rule sees at step ``k``: loss, raw gradient ``g``, ``alpha_k``, the
    scaled-space gradient ``g_scaled = g / alpha`` (docs/spec.md 1) and the iterate ``x``."""

    k: int
    loss: float | None
    g: np.ndarray
    alpha: np.ndarray
    g_scaled: np.ndarray
    x: np.ndarray


class StepStats(NamedTuple):
    """The reductions a rule's scalar step reads (``needs`` names the ones it uses at a
    step): the NumPy reference reduces its arrays, the torch optimizers reduce on the
    device, and both call the same ``host_step``."""

    k: int
    loss: float | None = None
    scaled_grad_sq: float = math.nan  # ||g'_k||**2, g' = g / alpha_k
    grad_sq: float = math.nan  # ||g_k||**2
    alpha_max: float = math.nan  # max(alpha_k)
    g0_scaled_sq: float = math.nan  # ||g_0 / alpha_k||**2 (the naive normaliser)

    @classmethod
    def of(cls, inp: StepInput, g0: np.ndarray | None = None) -> StepStats:
        """Every reduction, from the arrays of ``inp`` (and the kept ``g_0``)."""
        g0s = math.nan if g0 is None else _sq(g0 / inp.alpha)
        return cls(inp.k, inp.loss, _sq(inp.g_scaled), _sq(inp.g), float(np.max(inp.alpha)), g0s)


def _sq(v: np.ndarray) -> float:
    return float(np.dot(v, v))


def _schedule_value(schedule: Schedule | None, k: int) -> float:
    if schedule is None:
        return 1.0
    value = float(schedule(k))
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"Invalid schedule value at step {k}: {value!r} (expected >= 0)")
    return value


class _Stateless:
    """What a rule without scaled-space state has (constant, polyak): no scalars to carry,
    no transfer, no D-Adaptation sum."""

    transfer = "none"
    keeps_sum = False  # no s (D-Adaptation's sum of scaled steps)

    def init(self, x0: np.ndarray) -> None:
        return None

    def scalars_init(self) -> None:
        return None

    def transfer_state(self, state: None, rho: float) -> None:
        return None

    def transfer_scalars(self, scalars: None, rho: float) -> None:
        return None

    def step_size(self, state: None, inp: StepInput) -> tuple[float, None, dict[str, float]]:
        lam, _ = self.host_step(None, StepStats.of(inp))
        return lam, None, self._info(inp)

    def _info(self, inp: StepInput) -> dict[str, float]:
        return {}


@dataclass(frozen=True)
class constant(_Stateless):
    """lam_k = lr * gamma_k: plain (scheduled) SGD / Adam / AdaGrad steps."""

    lr: float = 1e-3
    schedule: Schedule | None = None
    needs_loss = False

    def __post_init__(self) -> None:
        check.non_negative("lr", self.lr)

    steady_needs = frozenset()  # the reductions it reads at every step

    def needs(self, scalars: None) -> frozenset[str]:
        return self.steady_needs

    def host_step(self, scalars: None, stats: StepStats) -> tuple[float, None]:
        return self.lr * _schedule_value(self.schedule, stats.k), None


@dataclass(frozen=True)
class polyak(_Stateless):
    """SPS (Loizou et al. 2021, ``constant`` mode, docs/baselines.md section 2), in scaled space:

        eta_k = min((f(x_k) - f*) / (c * ||g_k / alpha_k||**2), eta_max)      # docs/spec.md 3.1

    A zero gradient or ``f = f*`` gives ``eta = 0`` (no step, no division by zero). A loss
    below ``f_star - f_star_tol`` raises, naming both values: ``f_star`` is then not a
    lower bound and the step would go uphill. Losses within ``f_star_tol`` below ``f*``
    count as ``f = f*`` (default 0: only exact ties).
    """

    f_star: float
    c: float = 0.5
    eta_max: float = math.inf
    f_star_tol: float = 0.0
    needs_loss = True

    def __post_init__(self) -> None:
        if not (isinstance(self.f_star, (int, float)) and math.isfinite(self.f_star)):
            raise ValueError(f"Invalid f_star: {self.f_star!r} (expected a finite number)")
        check.positive("c", self.c)
        check.positive_or_inf("eta_max", self.eta_max)
        check.non_negative("f_star_tol", self.f_star_tol)

    steady_needs = frozenset({"scaled_grad_sq"})  # the reductions it reads at every step

    def needs(self, scalars: None) -> frozenset[str]:
        return self.steady_needs

    def below_f_star(self, loss: float) -> bool:
        """Whether ``loss`` is below ``f*`` by more than the tolerance (a refused step)."""
        return loss - self.f_star < -self.f_star_tol

    def loss_error(self, loss: float, k: int) -> str:
        return (
            f"Loss below f_star at step {k}: f = {loss!r} < f_star = {self.f_star!r} "
            "(f_star must be a lower bound of the loss)"
        )

    def check_loss(self, loss: float | None, k: int) -> float:
        if loss is None:
            raise ValueError(f"polyak step size needs the loss at step {k} (got None)")
        if self.below_f_star(loss):
            raise ValueError(self.loss_error(loss, k))
        return loss

    def host_step(self, scalars: None, stats: StepStats) -> tuple[float, None]:
        h = self.check_loss(stats.loss, stats.k) - self.f_star
        gsq = stats.scaled_grad_sq
        return (0.0 if (h <= 0 or gsq == 0.0) else min(h / (self.c * gsq), self.eta_max)), None

    def _info(self, inp: StepInput) -> dict[str, float]:
        return {"h": max(inp.loss - self.f_star, 0.0), "g_scaled_sq": _sq(inp.g_scaled)}


class DAdaptScalars(NamedTuple):
    """D-Adaptation's scalar state: ``d``, the numerator ``N`` (``||s||**2 - A = 2 N``) and
    ``g0_norm``, the norm of the first nonzero gradient the step is normalised by
    (``||g_0||`` for ``normaliser="max_alpha"``, ``||g_0 / alpha||`` in the current metric
    for ``"g0/alpha_0"``; 0 until that gradient). ``d`` is NaN before the first step."""

    d: float
    numerator: float
    g0_norm: float


class DAdaptState(NamedTuple):
    """D-Adaptation's scaled-space state (docs/spec.md, PS-DA-SGD): the scalars of
    ``DAdaptScalars`` (``g0_norm`` None until set), the vector ``s`` and ``g0`` (kept for
    ``normaliser="g0/alpha_k"`` only)."""

    d: float
    s: np.ndarray
    numerator: float
    g0_norm: float | None
    g0: np.ndarray | None

    @property
    def scalars(self) -> DAdaptScalars:
        return DAdaptScalars(self.d, self.numerator, self.g0_norm or 0.0)


NORMALISERS = ("g0/alpha_0", "max_alpha", "g0/alpha_k")
# A rise of d by at most this (relative) is a tie, not a growth: where the gradient has
# not changed (the first step of a float16 model, whose first moves are below its
# resolution; a piecewise-linear loss) dhat equals d in exact arithmetic at step 1, and
# the paths' float32 statistics break the tie either way (measured: 3e-8 apart).
GROWTH_RTOL = 1e-6


@dataclass(frozen=True)
class dadapt:
    """D-Adaptation's step size (Defazio & Mishchenko 2023, ``dadaptation.DAdaptSGD``),
    made parameter-scaled as PS-DA-SGD (docs/spec.md, "PS-DA-SGD"):

        k = 0:  d = d0 * max(alpha_0)                         # d lives in scaled units
        k > 0:  d, s, N *= rho_k, rho_k, rho_k**2; n /= rho_k  # transfer_state()
        lam_k   = gamma_k * d / n_k                            # n_k: the normaliser
        N      += lam_k <g'_k, s>;   s += lam_k g'_k
        dhat    = 2 N / ||s||   (= (||s||**2 - A)/||s||; ``dhat="paper"``: N / ||s||)
        d       = max(d, min(dhat, d * growth_rate))          # skipped when lam_k == 0

    The scalar part is written once, for the NumPy reference and the torch optimizers:
    ``transfer_scalars`` (the metric change), ``host_step`` (d's start, the normaliser,
    lam) and ``estimate`` (N and d from the reduced <g', s> and ||s||**2).

    ``transfer``: how rho_k is measured (``theory.transfer.TRANSFERS``). ``normaliser``:
    ``"g0/alpha_0"``, n = ||g_0 / alpha_0|| moved with the metric (D-Adapt SGD's ||g_0||
    in the first scaled space); ``"max_alpha"``, n = ||g_0|| / max(alpha_k) (docs/spec.md 3.2's
    reading); ``"g0/alpha_k"``, n = ||g_0 / alpha_k|| (the naive conversion the paper says
    halts training). With identity scaling every combination is exactly D-Adapt SGD. A zero
    gradient before the first nonzero one gives ``lam = 0`` (D-Adapt SGD divides by zero
    there); g_0 is the first nonzero gradient.
    """

    d0: float = 1e-6
    schedule: Schedule | None = None
    growth_rate: float = math.inf
    dhat: str = "code"
    transfer: str = "min_active"
    normaliser: str = "g0/alpha_0"
    needs_loss = False
    keeps_sum = True  # s, D-Adaptation's sum of scaled steps

    def __post_init__(self) -> None:
        check.positive("d0", self.d0)
        check.growth("growth_rate", self.growth_rate)
        check.choice("dhat", self.dhat, ("code", "paper"))
        check.choice("transfer", self.transfer, tuple(TRANSFERS))
        check.choice("normaliser", self.normaliser, NORMALISERS)

    # -- the scalar step, shared with torch_impl ------------------------------------------
    def scalars_init(self) -> DAdaptScalars:
        return DAdaptScalars(math.nan, 0.0, 0.0)

    @property
    def steady_needs(self) -> frozenset[str]:
        """The reductions ``host_step`` reads at every step (``needs`` adds, at the first
        nonzero gradient, what sets the normaliser)."""
        return frozenset({"alpha_max", *(("g0_scaled_sq",) if self.keeps_g0 else ())})

    @property
    def keeps_g0(self) -> bool:
        """Whether the first nonzero gradient is kept as a vector (the naive normaliser)."""
        return self.normaliser == "g0/alpha_k"

    def needs(self, scalars: DAdaptScalars) -> frozenset[str]:
        """The reductions ``host_step`` reads at a step with these scalars."""
        if scalars.g0_norm > 0 or self.keeps_g0:
            return self.steady_needs
        first = "scaled_grad_sq" if self.normaliser == "g0/alpha_0" else "grad_sq"
        return self.steady_needs | {first}  # the first nonzero gradient sets the normaliser

    def transfer_scalars(self, sc: DAdaptScalars, rho: float) -> DAdaptScalars:
        """The scalars moved to a metric ``rho`` times larger (docs/spec.md, "Metric
        transfer"): a distance times rho, the numerator times rho**2, a scaled gradient
        norm divided by rho."""
        g0_norm = sc.g0_norm / rho if self.normaliser == "g0/alpha_0" else sc.g0_norm
        return DAdaptScalars(sc.d * rho, sc.numerator * rho**2, g0_norm)

    def host_step(self, sc: DAdaptScalars, stats: StepStats) -> tuple[float, DAdaptScalars]:
        """lam_k, and the scalars with d started (k = 0) and the normaliser set (at the
        first nonzero gradient)."""
        if stats.k == 0:
            sc = sc._replace(d=self.d0 * stats.alpha_max)  # d = d0 * max(alpha_0)
        if sc.g0_norm == 0:  # the first nonzero gradient, measured as the normaliser does
            first = {
                "g0/alpha_0": stats.scaled_grad_sq,
                "max_alpha": stats.grad_sq,
                "g0/alpha_k": stats.g0_scaled_sq,
            }[self.normaliser]
            sc = sc._replace(g0_norm=math.sqrt(first))
        if sc.g0_norm == 0:  # no gradient yet: no step
            return 0.0, sc
        gamma = _schedule_value(self.schedule, stats.k)
        if self.normaliser == "g0/alpha_0":
            return gamma * sc.d / sc.g0_norm, sc  # ||g_0 / alpha_0||, moved with the metric
        if self.normaliser == "max_alpha":
            return gamma * sc.d * stats.alpha_max / sc.g0_norm, sc  # ||g_0|| / max(alpha_k)
        return gamma * sc.d / math.sqrt(stats.g0_scaled_sq), sc  # ||g_0 / alpha_k||

    @staticmethod
    def grew(d_before: float, d_after: float) -> bool:
        """Whether an estimate raised d by more than a tie (``GROWTH_RTOL``): what the
        growth counter and the stuck-d warning count."""
        return d_after > d_before * (1 + GROWTH_RTOL)

    def estimate(self, sc: DAdaptScalars, dot: float, s_sq: float) -> tuple[DAdaptScalars, float]:
        """N += dot (``dot = lam <g', s>``, s transferred); dhat = 2 N / ||s|| from
        ``s_sq = ||s_k||**2``; d = max(d, min(dhat, d growth_rate)). Returns the scalars and
        dhat (NaN when ||s|| = 0: d stays)."""
        numerator = sc.numerator + dot
        if s_sq <= 0:
            return sc._replace(numerator=numerator), math.nan
        dhat = (2.0 if self.dhat == "code" else 1.0) * numerator / math.sqrt(s_sq)
        d = max(sc.d, dhat if self.growth_rate == math.inf else min(dhat, sc.d * self.growth_rate))
        return DAdaptScalars(d, numerator, sc.g0_norm), dhat

    # -- the NumPy reference -------------------------------------------------------------
    def init(self, x0: np.ndarray) -> DAdaptState:
        return DAdaptState(math.nan, np.zeros_like(x0), 0.0, None, None)

    def transfer_state(self, state: DAdaptState, rho: float) -> DAdaptState:
        sc = self.transfer_scalars(state.scalars, rho)
        return _state(sc, state.s * rho, state.g0)

    def step_size(
        self, state: DAdaptState, inp: StepInput
    ) -> tuple[float, DAdaptState, dict[str, float]]:
        g0 = inp.g if state.g0 is None else state.g0  # the first nonzero gradient, kept
        lam, sc = self.host_step(state.scalars, StepStats.of(inp, g0))
        g0 = g0 if sc.g0_norm > 0 else None
        info = {"d": sc.d, "dhat": math.nan}
        if lam == 0.0:
            return 0.0, _state(sc, state.s, g0), info
        dot = lam * float(np.dot(inp.g_scaled, state.s))
        s = state.s + lam * inp.g_scaled
        sc, info["dhat"] = self.estimate(sc, dot, _sq(s))
        return lam, _state(sc, s, g0), info


def _state(sc: DAdaptScalars, s: np.ndarray, g0: np.ndarray | None) -> DAdaptState:
    return DAdaptState(sc.d, s, sc.numerator, sc.g0_norm or None, g0)
