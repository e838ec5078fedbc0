"""Step-size rules written for SGD, run by ``parameter_scaled`` in the scaled space.

A rule has ``init(x0) -> state``, ``step_size(state, inp) -> (lam, state, info)``,
``transfer`` (the name of its metric transfer, ``theory.transfer``; "none" for a rule
without scaled-space state) and ``transfer_state(state, rho) -> state``: the combinator
measures ``rho_k`` when the scaled space changes and calls ``transfer_state``, so a rule
that keeps scaled-space state (D-Adaptation's ``d``, ``s``) moves it to the new space.
``lam`` is the step in scaled space: the update is ``x_{k+1} = x_k - lam_k g_k /
alpha_k**2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from theory import _validate as check
from theory.transfer import TRANSFERS

Schedule = Callable[[int], float]

__all__ = ["StepInput", "constant", "polyak", "dadapt", "Schedule"]


class StepInput(NamedTuple):
    """What a step-size rule sees at step ``k``: loss, raw gradient ``g``, ``alpha_k``, the
    scaled-space gradient ``g_scaled = g / alpha`` (SPEC section 1) and the iterate ``x``."""

    k: int
    loss: float | None
    g: np.ndarray
    alpha: np.ndarray
    g_scaled: np.ndarray
    x: np.ndarray


def _schedule_value(schedule: Schedule | None, k: int) -> float:
    if schedule is None:
        return 1.0
    value = float(schedule(k))
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"Invalid schedule value at step {k}: {value!r} (expected >= 0)")
    return value


@dataclass(frozen=True)
class constant:
    """lam_k = lr * gamma_k: plain (scheduled) SGD / Adam / AdaGrad steps."""

    lr: float = 1e-3
    schedule: Schedule | None = None
    transfer = "none"  # no scaled-space state

    def __post_init__(self) -> None:
        check.non_negative("lr", self.lr)

    def init(self, x0: np.ndarray) -> None:
        return None

    def step_size(self, state: None, inp: StepInput) -> tuple[float, None, dict[str, float]]:
        return self.lr * _schedule_value(self.schedule, inp.k), None, {}

    def transfer_state(self, state: None, rho: float) -> None:
        return None


@dataclass(frozen=True)
class polyak:
    """SPS (Loizou et al. 2021, ``constant`` mode, baselines.md section 2), in scaled space:

        eta_k = min((f(x_k) - f*) / (c * ||g_k / alpha_k||**2), eta_max)      # SPEC 3.1

    A zero gradient or ``f = f*`` gives ``eta = 0`` (no step, no division by zero). A loss
    below ``f_star - f_star_tol`` raises, naming both values: ``f_star`` is then not a
    lower bound and the step would go uphill. Losses within ``f_star_tol`` below ``f*``
    count as ``f = f*`` (default 0: only exact ties).
    """

    f_star: float
    c: float = 0.5
    eta_max: float = math.inf
    f_star_tol: float = 0.0
    transfer = "none"  # no scaled-space state: the step is measured afresh each step

    def __post_init__(self) -> None:
        if not (isinstance(self.f_star, (int, float)) and math.isfinite(self.f_star)):
            raise ValueError(f"Invalid f_star: {self.f_star!r} (expected a finite number)")
        check.positive("c", self.c)
        check.positive_or_inf("eta_max", self.eta_max)
        check.non_negative("f_star_tol", self.f_star_tol)

    def init(self, x0: np.ndarray) -> None:
        return None

    def step_size(self, state: None, inp: StepInput) -> tuple[float, None, dict[str, float]]:
        if inp.loss is None:
            raise ValueError(f"polyak step size needs the loss at step {inp.k} (got None)")
        h = inp.loss - self.f_star
        if h < -self.f_star_tol:
            raise ValueError(
                f"Loss below f_star at step {inp.k}: f = {inp.loss!r} < f_star = "
                f"{self.f_star!r} (f_star must be a lower bound of the loss)"
            )
        gsq = float(np.dot(inp.g_scaled, inp.g_scaled))
        eta = 0.0 if (h <= 0 or gsq == 0.0) else min(h / (self.c * gsq), self.eta_max)
        return eta, None, {"h": max(h, 0.0), "g_scaled_sq": gsq}

    def transfer_state(self, state: None, rho: float) -> None:
        return None


class DAdaptState(NamedTuple):
    """D-Adaptation's scaled-space state (docs/spec.md, PS-DA-SGD): ``d``, ``s``, numerator
    ``N`` with ``||s||**2 - A = 2 N``, ``g0_norm`` (the norm of the first nonzero gradient
    the step is normalised by: ``||g_0||`` for ``normaliser="max_alpha"``, ``||g_0 /
    alpha||`` in the current metric for ``"g0/alpha_0"``; None until that gradient) and
    ``g0`` (kept for ``"g0/alpha_k"`` only)."""

    d: float
    s: np.ndarray
    numerator: float
    g0_norm: float | None
    g0: np.ndarray | None


NORMALISERS = ("g0/alpha_0", "max_alpha", "g0/alpha_k")


@dataclass(frozen=True)
class dadapt:
    """D-Adaptation's step size (Defazio & Mishchenko 2023, ``dadaptation.DAdaptSGD``),
    made parameter-scaled as PS-DA-SGD (docs/spec.md, "PS-DA-SGD"):

        k = 0:  d = d0 * max(alpha_0)                         # d lives in scaled units
        k > 0:  d, s, N *= rho_k, rho_k, rho_k**2; n /= rho_k  # transfer() (theory.transfer)
        lam_k   = gamma_k * d / n_k                            # n_k: the normaliser
        N      += lam_k <g'_k, s>;   s += lam_k g'_k
        dhat    = 2 N / ||s||   (= (||s||**2 - A)/||s||; ``dhat="paper"``: N / ||s||)
        d       = max(d, min(dhat, d * growth_rate))          # skipped when lam_k == 0

    ``transfer``: how rho_k is measured (``theory.transfer.TRANSFERS``). ``normaliser``:
    ``"g0/alpha_0"``, n = ||g_0 / alpha_0|| moved with the metric (D-Adapt SGD's ||g_0||
    in the first scaled space); ``"max_alpha"``, n = ||g_0|| / max(alpha_k) (SPEC 3.2's
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

    def __post_init__(self) -> None:
        check.positive("d0", self.d0)
        check.growth("growth_rate", self.growth_rate)
        check.choice("dhat", self.dhat, ("code", "paper"))
        check.choice("transfer", self.transfer, tuple(TRANSFERS))
        check.choice("normaliser", self.normaliser, NORMALISERS)

    def init(self, x0: np.ndarray) -> DAdaptState:
        return DAdaptState(math.nan, np.zeros_like(x0), 0.0, None, None)

    def transfer_state(self, state: DAdaptState, rho: float) -> DAdaptState:
        """The state moved to a metric ``rho`` times larger (docs/spec.md, "Metric
        transfer"): distances times rho, the numerator times rho**2, a scaled gradient
        norm divided by rho."""
        g0_norm = state.g0_norm
        if g0_norm is not None and self.normaliser == "g0/alpha_0":
            g0_norm = g0_norm / rho
        return state._replace(
            d=state.d * rho, s=state.s * rho, numerator=state.numerator * rho**2, g0_norm=g0_norm
        )

    def step_size(
        self, state: DAdaptState, inp: StepInput
    ) -> tuple[float, DAdaptState, dict[str, float]]:
        amax = float(np.max(inp.alpha))
        if inp.k == 0:
            state = state._replace(d=self.d0 * amax)  # d = d0 * max(alpha_0)
        if state.g0_norm is None:
            g = inp.g if self.normaliser == "max_alpha" else inp.g_scaled
            norm = float(np.sqrt(np.dot(g, g)))
            if norm > 0:
                state = state._replace(g0_norm=norm, g0=inp.g)
        gamma = _schedule_value(self.schedule, inp.k)
        d = state.d
        if state.g0_norm is None:
            lam = 0.0
        elif self.normaliser == "g0/alpha_0":
            lam = gamma * d / state.g0_norm
        elif self.normaliser == "max_alpha":
            lam = gamma * d * amax / state.g0_norm  # ||g_0|| / max(alpha_k)
        else:
            g0s = state.g0 / inp.alpha
            lam = gamma * d / float(np.sqrt(np.dot(g0s, g0s)))
        info = {"d": d, "dhat": math.nan}
        if lam == 0.0:
            return 0.0, state, info
        numerator = state.numerator + lam * float(np.dot(inp.g_scaled, state.s))
        s = state.s + lam * inp.g_scaled
        s_norm = float(np.sqrt(np.dot(s, s)))
        if s_norm > 0:
            dhat = (2.0 if self.dhat == "code" else 1.0) * numerator / s_norm
            d = max(d, min(dhat, d * self.growth_rate))
            info["dhat"] = dhat
        return lam, DAdaptState(d, s, numerator, state.g0_norm, state.g0), info
