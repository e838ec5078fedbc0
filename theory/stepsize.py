"""Step-size rules written for SGD, run by ``parameter_scaled`` in the scaled space: one
declared interface (``StepRule``) that the NumPy reference and the torch optimizers run
alike (docs/spec.md section 9, "Adding a step-size rule" in docs/rules.md).

A rule is pure scalar logic over named reductions. It declares what it reads, and the
engine (``theory.combinator`` on NumPy vectors, ``torch_impl`` on every path and under the
distributed engines) computes it and calls back:

    scalars = rule.init_scalars()               # a NamedTuple of floats: the rule's state
    names   = rule.reductions(scalars, k)        # theory.reductions.REDUCTIONS, by stage
    scalars = rule.transfer_scalars(scalars, rho_k)             # k > 0: the metric changed
    lam, scalars = rule.step(scalars, {"k", "loss", step-stage sums})
    x_{k+1} = x_k - lam g_k / alpha_k**2        # the engine moves (and its vector state)
    scalars, info = rule.settle(scalars, {"k", "lr": lam, "rho", move/moved-stage sums})
    rule.raised(before, after)                  # around step and settle: a new estimate

``vectors`` names the vector state the engine keeps for it (``theory.reductions.VECTORS``:
``s``, ``x0``, ``g0``), ``captures(scalars)`` the ones set from this step's values,
``transfer`` its metric transfer (``theory.transfer``; "none" for a rule whose distances
are measured afresh). The scalars' field names are the keys of the torch optimizers'
``state["global"]`` (and of their checkpoints); ``info`` and ``settle``'s are the NumPy
trajectory's per-step diagnostics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from paramscale.theory import _validate as check
from paramscale.theory.transfer import TRANSFERS

Schedule = Callable[[int], float]
Sums = Mapping[str, Any]  # "k", "loss" (None: not given), and the reductions by name

__all__ = [
    "StepRule",
    "Sums",
    "NoScalars",
    "constant",
    "polyak",
    "dadapt",
    "dog_step",
    "dowg_step",
    "Schedule",
    "NORMALISERS",
    "GROWTH_RTOL",
]


class NoScalars(NamedTuple):
    """The scalar state of a rule that keeps none."""


class StepRule:
    """The step-size rule interface, with the defaults of a rule that keeps nothing: it
    reads no loss, keeps no vector, has no metric transfer, settles nothing and never
    refuses a loss. A rule sets what differs (see the module docstring)."""

    needs_loss = False
    transfer = "none"
    vectors: frozenset[str] = frozenset()
    advice = "The step size diverged: check the rule's options"

    def init_scalars(self) -> NamedTuple:
        return NoScalars()

    def reductions(self, scalars: Any, k: int) -> frozenset[str]:
        """The reductions the rule reads at step ``k`` (every stage)."""
        return frozenset()

    def captures(self, scalars: Any) -> frozenset[str]:
        """The vectors set from this step's values (``g0``: the gradient)."""
        return frozenset()

    def transfer_scalars(self, scalars: Any, rho: float) -> Any:
        """The scalars moved to a metric ``rho`` times larger (a scaled distance times
        rho, a squared one times rho**2, a scaled gradient norm divided by rho)."""
        return scalars

    def step(self, scalars: Any, sums: Sums) -> tuple[float, Any]:
        """lam_k, the step in scaled space, and the scalars."""
        raise NotImplementedError

    def raised(self, before: Any, after: Any) -> bool:
        """Whether the distance estimate the transfer carries was made afresh between the
        scalars ``before`` and ``after`` a ``step`` or a ``settle`` (an anchored transfer,
        ``theory.transfer``, then moves its anchor to this step's metric)."""
        return False

    def settle(self, scalars: Any, sums: Sums) -> tuple[Any, dict[str, float]]:
        """The scalars after the move (from the move and moved stages' sums, ``lr`` = the
        step's lam, ``rho``), and diagnostics of what was settled."""
        return scalars, {}

    def info(self, scalars: Any, sums: Sums) -> dict[str, float]:
        """Per-step diagnostics, with the scalars after ``step`` (NumPy's trajectory)."""
        return {}

    def health(self, scalars: Any, k: int) -> str | None:
        """A warning worth giving once about the run so far (None: none)."""
        return None

    def refuses_loss(self, loss: Any) -> Any:
        """Whether the step must be refused for this loss (a float, or a tensor: then a
        boolean tensor)."""
        return False

    def loss_error(self, loss: float, k: int) -> str:
        return f"Invalid loss at step {k}: {loss!r}"


def _schedule_value(schedule: Schedule | None, k: int) -> float:
    if schedule is None:
        return 1.0
    value = float(schedule(k))
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"Invalid schedule value at step {k}: {value!r} (expected >= 0)")
    return value


@dataclass(frozen=True)
class constant(StepRule):
    """lam_k = lr * gamma_k: plain (scheduled) SGD / Adam / AdaGrad steps."""

    lr: float = 1e-3
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        check.non_negative("lr", self.lr)

    def step(self, scalars: NoScalars, sums: Sums) -> tuple[float, NoScalars]:
        return self.lr * _schedule_value(self.schedule, sums["k"]), scalars


@dataclass(frozen=True)
class polyak(StepRule):
    """SPS (Loizou et al. 2021, ``constant`` mode, docs/baselines.md section 2), in scaled space:

        eta_k = min((f(x_k) - f*) / (c * ||g_k / alpha_k||**2), eta_max)      # docs/spec.md 3.1

    A zero gradient or ``f = f*`` gives ``eta = 0`` (no step, no division by zero). A loss
    below ``f_star - f_star_tol`` is refused, naming both values: ``f_star`` is then not a
    lower bound and the step would go uphill. Losses within ``f_star_tol`` below ``f*``
    count as ``f = f*`` (default 0: only exact ties).
    """

    f_star: float
    c: float = 0.5
    eta_max: float = math.inf
    f_star_tol: float = 0.0
    needs_loss = True
    advice = "The step size diverged: check f_star and c, or bound it with eta_max"

    def __post_init__(self) -> None:
        if not (isinstance(self.f_star, (int, float)) and math.isfinite(self.f_star)):
            raise ValueError(f"Invalid f_star: {self.f_star!r} (expected a finite number)")
        check.positive("c", self.c)
        check.positive_or_inf("eta_max", self.eta_max)
        check.non_negative("f_star_tol", self.f_star_tol)

    def reductions(self, scalars: NoScalars, k: int) -> frozenset[str]:
        return frozenset({"scaled_grad_sq"})

    def refuses_loss(self, loss: Any) -> Any:
        """Whether ``loss`` is below ``f*`` by more than the tolerance (a refused step)."""
        return loss - self.f_star < -self.f_star_tol

    def loss_error(self, loss: float, k: int) -> str:
        return (
            f"Loss below f_star at step {k}: f = {loss!r} < f_star = {self.f_star!r} "
            "(f_star must be a lower bound of the loss)"
        )

    def step(self, scalars: NoScalars, sums: Sums) -> tuple[float, NoScalars]:
        h, gsq = sums["loss"] - self.f_star, sums["scaled_grad_sq"]
        return (0.0 if (h <= 0 or gsq == 0.0) else min(h / (self.c * gsq), self.eta_max)), scalars

    def info(self, scalars: NoScalars, sums: Sums) -> dict[str, float]:
        return {"h": max(sums["loss"] - self.f_star, 0.0), "g_scaled_sq": sums["scaled_grad_sq"]}


class DAdaptScalars(NamedTuple):
    """D-Adaptation's scalar state: ``d`` (0 before the first step), the numerator ``N``
    (``||s||**2 - A = 2 N``), ``g0_norm``, the norm of the first nonzero gradient the step
    is normalised by (``||g_0||`` for ``normaliser="max_alpha"``, ``||g_0 / alpha||`` in the
    current metric for ``"g0/alpha_0"``; 0 until that gradient), the last estimate ``dhat``
    and ``d_growths``, the steps at which dhat raised d by more than a tie."""

    d: float = 0.0
    numerator: float = 0.0
    g0_norm: float = 0.0
    dhat: float = 0.0
    d_growths: int = 0


NORMALISERS = ("g0/alpha_0", "max_alpha", "g0/alpha_k")
# A rise of d by at most this (relative) is a tie, not a growth: where the gradient has
# not changed (the first step of a float16 model, whose first moves are below its
# resolution; a piecewise-linear loss) dhat equals d in exact arithmetic at step 1, and
# the paths' float32 statistics break the tie either way (measured: 3e-8 apart).
GROWTH_RTOL = 1e-6
STUCK_STEPS = 100  # steps after which a d that dhat never raised is warned about (once)


@dataclass(frozen=True)
class dadapt(StepRule):
    """D-Adaptation's step size (Defazio & Mishchenko 2023, ``dadaptation.DAdaptSGD``),
    made parameter-scaled as PS-DA-SGD (docs/spec.md, "PS-DA-SGD"):

        k = 0:  d = d0 * max(alpha_0)                         # d lives in scaled units
        k > 0:  d, N *= rho_k, rho_k**2; n /= rho_k; s *= rho_k  # the metric transfer
        lam_k   = gamma_k * d / n_k                            # n_k: the normaliser
        N      += lam_k <g'_k, s>;   s += lam_k g'_k           # settle, after the move
        dhat    = 2 N / ||s||   (= (||s||**2 - A)/||s||; ``dhat="paper"``: N / ||s||)
        d       = max(d, min(dhat, d * growth_rate))          # skipped when lam_k == 0

    ``transfer``: how rho_k is measured (``theory.transfer.TRANSFERS``). ``normaliser``:
    ``"g0/alpha_0"``, n = ||g_0 / alpha_0|| moved with the metric (D-Adapt SGD's ||g_0||
    in the first scaled space); ``"max_alpha"``, n = ||g_0|| / max(alpha_k) (docs/spec.md 3.2's
    reading); ``"g0/alpha_k"``, n = ||g_0 / alpha_k|| (the naive conversion the paper says
    halts training; it keeps g_0 as a vector). With identity scaling every combination is
    exactly D-Adapt SGD. A zero gradient before the first nonzero one gives ``lam = 0``
    (D-Adapt SGD divides by zero there); g_0 is the first nonzero gradient.
    """

    d0: float = 1e-6
    schedule: Schedule | None = None
    growth_rate: float = math.inf
    dhat: str = "code"
    transfer: str = "min_active"
    normaliser: str = "g0/alpha_0"
    advice = (
        "The step size diverged: with PSDASGD try the default transfer='min_active' and "
        "normaliser='g0/alpha_0' (docs/findings.md), a finite growth_rate or a smaller d0"
    )

    def __post_init__(self) -> None:
        check.positive("d0", self.d0)
        check.growth("growth_rate", self.growth_rate)
        check.choice("dhat", self.dhat, ("code", "paper"))
        check.choice("transfer", self.transfer, tuple(TRANSFERS))
        check.choice("normaliser", self.normaliser, NORMALISERS)

    @property
    def vectors(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"s", "g0"} if self.normaliser == "g0/alpha_k" else {"s"})

    def init_scalars(self) -> DAdaptScalars:
        return DAdaptScalars()

    def reductions(self, scalars: DAdaptScalars, k: int) -> frozenset[str]:
        names = {"alpha_max", "step_dot", "sum_sq"}
        if self.normaliser == "g0/alpha_k":
            names.add("g0_scaled_sq")
        elif scalars.g0_norm == 0:  # the first nonzero gradient sets the normaliser
            names.add("scaled_grad_sq" if self.normaliser == "g0/alpha_0" else "grad_sq")
        return frozenset(names)

    def captures(self, scalars: DAdaptScalars) -> frozenset[str]:
        first = self.normaliser == "g0/alpha_k" and scalars.g0_norm == 0
        return frozenset({"g0"} if first else ())

    def transfer_scalars(self, sc: DAdaptScalars, rho: float) -> DAdaptScalars:
        """A distance times rho, the numerator times rho**2, a scaled gradient norm divided
        by rho (docs/spec.md, "Metric transfer")."""
        g0_norm = sc.g0_norm / rho if self.normaliser == "g0/alpha_0" else sc.g0_norm
        return sc._replace(d=sc.d * rho, numerator=sc.numerator * rho**2, g0_norm=g0_norm)

    def step(self, sc: DAdaptScalars, sums: Sums) -> tuple[float, DAdaptScalars]:
        """lam_k, and the scalars with d started (k = 0) and the normaliser set (at the
        first nonzero gradient)."""
        if sums["k"] == 0:
            sc = sc._replace(d=self.d0 * sums["alpha_max"])  # d = d0 * max(alpha_0)
        if sc.g0_norm == 0:  # the first nonzero gradient, measured as the normaliser does
            first = {
                "g0/alpha_0": "scaled_grad_sq",
                "max_alpha": "grad_sq",
                "g0/alpha_k": "g0_scaled_sq",
            }[self.normaliser]
            sc = sc._replace(g0_norm=math.sqrt(sums[first]))
        if sc.g0_norm == 0:  # no gradient yet: no step
            return 0.0, sc
        gamma = _schedule_value(self.schedule, sums["k"])
        if self.normaliser == "g0/alpha_0":
            return gamma * sc.d / sc.g0_norm, sc  # ||g_0 / alpha_0||, moved with the metric
        if self.normaliser == "max_alpha":
            return gamma * sc.d * sums["alpha_max"] / sc.g0_norm, sc  # ||g_0|| / max(alpha_k)
        return gamma * sc.d / math.sqrt(sums["g0_scaled_sq"]), sc  # ||g_0 / alpha_k||

    def settle(self, sc: DAdaptScalars, sums: Sums) -> tuple[DAdaptScalars, dict[str, float]]:
        """N += rho lam <g', s_{k-1}>; dhat = 2 N / ||s_k||; d = max(d, min(dhat, d
        growth_rate)); skipped (dhat NaN) without a move or while ||s|| = 0."""
        if sums["lr"] == 0:
            return sc, {"dhat": math.nan}
        numerator = sc.numerator + sums["rho"] * sums["step_dot"]
        if sums["sum_sq"] <= 0:
            return sc._replace(numerator=numerator), {"dhat": math.nan}
        dhat = (2.0 if self.dhat == "code" else 1.0) * numerator / math.sqrt(sums["sum_sq"])
        capped = dhat if self.growth_rate == math.inf else min(dhat, sc.d * self.growth_rate)
        d = max(sc.d, capped)
        growths = sc.d_growths + int(self.grew(sc.d, d))
        return DAdaptScalars(d, numerator, sc.g0_norm, dhat, growths), {"dhat": dhat}

    def raised(self, before: DAdaptScalars, after: DAdaptScalars) -> bool:
        return after.d_growths > before.d_growths  # dhat raised d by more than a tie

    @staticmethod
    def grew(d_before: float, d_after: float) -> bool:
        """Whether an estimate raised d by more than a tie (``GROWTH_RTOL``): what the
        growth counter and the stuck-d warning count."""
        return d_after > d_before * (1 + GROWTH_RTOL)

    def info(self, sc: DAdaptScalars, sums: Sums) -> dict[str, float]:
        return {"d": sc.d}

    def health(self, sc: DAdaptScalars, k: int) -> str | None:
        """A d that dhat has not raised in ``STUCK_STEPS`` steps (once a run)."""
        if sc.d_growths > 0 or k < STUCK_STEPS:
            return None
        return (
            f"d has not grown in {k} steps: dhat = 2 N / ||s|| never exceeded it (the last "
            f"dhat: {sc.dhat!r}, d: {sc.d!r}), so the step is still set by d0 = {self.d0!r}. "
            "If the loss does not fall, raise d0; opt.stats() shows d, dhat and the "
            "numerator N"
        )


class DoGScalars(NamedTuple):
    """DoG's scalar state: ``rbar``, the largest scaled distance from the start (r_eps at
    first), and ``grad_sum``, the sum of the scaled gradients' squared norms (eps once)."""

    rbar: float = 0.0
    grad_sum: float = 0.0


@dataclass(frozen=True)
class dog_step(StepRule):
    """DoG's step size (Ivgi, Hinder, Carmon 2023; ``dog.DoG``, docs/baselines.md section 3),
    with distances and gradient norms measured in the scaled metric (PS-DoG):

        k = 0:  rbar = reps_rel (a + ||alpha_0 x_0||),  G = ||g'_0||**2 + eps / a**2
        k > 0:  rbar = max(rbar, ||alpha_k (x_k - x_0)||),  G += ||g'_k||**2
        lam_k   = lr * rbar / sqrt(G),        a = max(alpha_0)

    With identity scaling (a = 1) this is DoG itself: ``reps_rel (1 + ||x_0||)``, ``eps``
    once, and every norm the plain one. ``a`` puts the constants in scaled units, so that
    multiplying every alpha by t multiplies rbar by t and G by 1/t**2, and the step in x
    does not change (principle (i)). ``transfer`` (default "none": each distance is
    measured in its step's metric) moves rbar and G to a new metric as D-Adaptation's d
    and normaliser are.
    """

    lr: float = 1.0
    reps_rel: float = 1e-6
    eps: float = 1e-8
    transfer: str = "none"
    vectors = frozenset({"x0"})
    advice = "The step size diverged: lower lr or reps_rel"

    def __post_init__(self) -> None:
        check.positive("lr", self.lr)
        check.positive("reps_rel", self.reps_rel)
        check.positive("eps", self.eps)
        check.choice("transfer", self.transfer, tuple(TRANSFERS))

    def init_scalars(self) -> DoGScalars:
        return DoGScalars()

    def reductions(self, scalars: DoGScalars, k: int) -> frozenset[str]:
        first = {"alpha_max", "x_scaled_sq"} if k == 0 else {"moved_sq"}
        return frozenset({"scaled_grad_sq", *first})

    def transfer_scalars(self, sc: DoGScalars, rho: float) -> DoGScalars:
        return DoGScalars(sc.rbar * rho, sc.grad_sum / rho**2)

    def raised(self, before: DoGScalars, after: DoGScalars) -> bool:
        return after.rbar > before.rbar  # a new largest distance, in this step's metric

    def step(self, sc: DoGScalars, sums: Sums) -> tuple[float, DoGScalars]:
        if sums["k"] == 0:
            a = sums["alpha_max"]
            rbar = self.reps_rel * (a + math.sqrt(sums["x_scaled_sq"]))
            grad_sum = sums["scaled_grad_sq"] + self.eps / a**2  # eps enters G once
        else:
            rbar = max(sc.rbar, math.sqrt(sums["moved_sq"]))
            grad_sum = sc.grad_sum + sums["scaled_grad_sq"]
        return self.lr * rbar / math.sqrt(grad_sum), DoGScalars(rbar, grad_sum)

    def info(self, sc: DoGScalars, sums: Sums) -> dict[str, float]:
        return {"d": sc.rbar}


class DoWGScalars(NamedTuple):
    """DoWG's scalar state: ``sq_dist``, the largest squared scaled distance from the start
    (its initial guess at first), and ``weighted``, the sum of ``sq_dist_i ||g'_i||**2``."""

    sq_dist: float = 0.0
    weighted: float = 0.0


@dataclass(frozen=True)
class dowg_step(StepRule):
    """DoWG's step size (Khaled, Mishchenko, Jin 2023; optax's ``contrib.dowg``,
    docs/baselines.md section 15), with distances and gradient norms measured in the scaled
    metric (PS-DoWG):

        k = 0:  r2 = init_sq_dist (default eps) * max(alpha_0)**2,  v = 0
        r2      = max(r2, ||alpha_k (x_k - x_0)||**2)
        v      += r2 ||g'_k||**2
        lam_k   = r2 / (sqrt(v) + eps)

    With identity scaling this is optax's DoWG. ``max(alpha_0)**2`` puts the initial guess
    in scaled units (principle (i): every alpha times t gives r2 t**2 and an unchanged v).
    """

    eps: float = 1e-4
    init_sq_dist: float | None = None
    transfer: str = "none"
    vectors = frozenset({"x0"})
    advice = "The step size diverged: lower init_sq_dist or eps"

    def __post_init__(self) -> None:
        check.positive("eps", self.eps)
        if self.init_sq_dist is not None:
            check.positive("init_sq_dist", self.init_sq_dist)
        check.choice("transfer", self.transfer, tuple(TRANSFERS))

    def init_scalars(self) -> DoWGScalars:
        return DoWGScalars()

    def reductions(self, scalars: DoWGScalars, k: int) -> frozenset[str]:
        return frozenset({"scaled_grad_sq", "moved_sq", *(("alpha_max",) if k == 0 else ())})

    def transfer_scalars(self, sc: DoWGScalars, rho: float) -> DoWGScalars:
        return DoWGScalars(sc.sq_dist * rho**2, sc.weighted)  # r2 ||g'||^2 does not change

    def raised(self, before: DoWGScalars, after: DoWGScalars) -> bool:
        return after.sq_dist > before.sq_dist

    def step(self, sc: DoWGScalars, sums: Sums) -> tuple[float, DoWGScalars]:
        sq_dist = sc.sq_dist
        if sums["k"] == 0:
            guess = self.eps if self.init_sq_dist is None else self.init_sq_dist
            sq_dist = guess * sums["alpha_max"] ** 2
        sq_dist = max(sq_dist, sums["moved_sq"])
        weighted = sc.weighted + sq_dist * sums["scaled_grad_sq"]
        return sq_dist / (math.sqrt(weighted) + self.eps), DoWGScalars(sq_dist, weighted)

    def info(self, sc: DoWGScalars, sums: Sums) -> dict[str, float]:
        return {"d": math.sqrt(sc.sq_dist)}
