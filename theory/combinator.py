"""``parameter_scaled``: a step-size rule written for SGD + a scaling rule = an adaptive
optimizer (the paper's one idea, docs/spec.md section 9), and the NumPy engine that runs
any ``theory.stepsize.StepRule``:

    g_k     = grad f(x_k);   alpha_k = scaling(g_0..g_k)
    rho_k   = the step rule's metric transfer          (k > 0; theory.transfer)
    lam_k   = step-size rule in scaled space (its declared reductions of g'_k = g_k / alpha_k)
    z_{k+1} = z_k - lam_k * u_k,   u_k = mhat_k / alpha_k**2  (mhat_k = g_k if beta1 = 0)
    x_{k+1} = beta * x_k + (1 - beta) * z_{k+1}        (primal averaging; beta = 0: x = z)

The engine keeps the vector state the rule declares (``theory.reductions.VECTORS``),
evaluates the reductions it names at their stage and calls its scalar functions: the
same calls, on the same reductions, as the torch optimizers make. ``first_moment``
(beta1) is Adam's bias-corrected EMA of the gradient, used only in the direction (the
plain Adam / AMSGrad optimizers of docs/spec.md section 2); ``momentum`` (beta) is D-Adapt
SGD's primal averaging. Every step is functional: a rejected step (NaN/Inf gradient,
wrong shape, loss below f*) raises before a new state exists, so the caller's state is
untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from paramscale.theory import _validate as check
from paramscale.theory import transfer
from paramscale.theory.reductions import REDUCTIONS, Coordinates, evaluate
from paramscale.theory.scaling import ScalingRule
from paramscale.theory.stepsize import StepRule


class PSState(NamedTuple):
    """The engine's state: step ``k``, the start ``x0``, the iterate ``z`` the step moves,
    the first moment ``m``, ``alpha_{k-1}``, the scaling rule's state, the step rule's
    ``scalars`` and its ``vectors`` (by name), and ``reanchor``: the rule raised its
    estimate at step k-1 (an anchored transfer moves its anchor, ``theory.transfer``)."""

    k: int
    x0: np.ndarray
    z: np.ndarray
    m: np.ndarray | None
    alpha_prev: np.ndarray | None
    scaling: Any
    scalars: Any
    vectors: dict[str, np.ndarray]
    reanchor: bool = False


def stage(names: frozenset[str], which: str) -> list[str]:
    """The reductions of ``names`` taken at stage ``which``, in a fixed order."""
    return sorted(name for name in names if REDUCTIONS[name].stage == which)


@dataclass(frozen=True)
class ParameterScaled:
    """An optimizer ``init(x0) -> state``, ``step(state, x, loss, grad) -> (x, state, info)``."""

    step_rule: StepRule
    scaling: ScalingRule
    momentum: float = 0.0
    first_moment: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        check.unit_interval("momentum", self.momentum)
        check.unit_interval("first_moment", self.first_moment)
        if not isinstance(self.scaling, ScalingRule):
            raise TypeError(f"Invalid scaling: {self.scaling!r} (expected a scaling rule)")
        if not isinstance(self.step_rule, StepRule):
            raise TypeError(
                f"Invalid step_rule: {self.step_rule!r} (expected a theory.stepsize.StepRule)"
            )

    def init(self, x0: Any) -> PSState:
        x0 = np.array(x0, dtype=np.float64)
        if x0.ndim != 1:
            raise ValueError(f"Invalid x0: shape {x0.shape} (expected a 1-D vector)")
        m = np.zeros_like(x0) if self.first_moment > 0 else None
        made = {"s": np.zeros_like(x0), "x0": x0}  # g0: when the rule captures it
        vectors = {name: made[name] for name in self._vectors() if name in made}
        scalars = self.step_rule.init_scalars()
        return PSState(0, x0, x0, m, None, self.scaling.init(x0), scalars, vectors)

    def _vectors(self) -> frozenset[str]:
        return self.step_rule.vectors | transfer.TRANSFERS[self.step_rule.transfer].vectors

    def step(
        self, state: PSState, x: np.ndarray, loss: float | None, grad: Any
    ) -> tuple[np.ndarray, PSState, dict[str, Any]]:
        k, rule = state.k, self.step_rule
        g = check.gradient(grad, state.z, k)
        loss = check.loss(loss, k)
        if rule.needs_loss:
            if loss is None:
                raise ValueError(f"The step rule needs the loss at step {k} (got None)")
            if rule.refuses_loss(loss):
                raise ValueError(rule.loss_error(loss, k))
        alpha, scaling_state = self.scaling.update(state.scaling, g, x)
        if alpha.shape != g.shape or not np.all(np.isfinite(alpha)) or np.any(alpha <= 0):
            raise FloatingPointError(
                f"Scaling rule {self.scaling.name!r} gave an invalid alpha at step {k} "
                "(expected a finite positive vector of the gradient's shape)"
            )
        x = np.asarray(x, dtype=np.float64)
        vectors = dict(state.vectors)
        scalars, rho = state.scalars, 1.0
        anchored = transfer.TRANSFERS[rule.transfer].anchored
        if state.alpha_prev is not None and rule.transfer != "none":
            if anchored and "anchor" not in vectors:
                vectors["anchor"] = state.alpha_prev  # the first anchor: alpha_0
            change = Coordinates(
                g, alpha, state.alpha_prev, x, vectors.get("x0"), anchor=vectors.get("anchor")
            )
            rho = transfer.rho(rule.transfer, change, state.reanchor)  # docs/spec.md, transfer
            scalars = rule.transfer_scalars(scalars, rho)
            if anchored and state.reanchor:
                vectors["anchor"] = state.alpha_prev  # the metric of the new estimate
        if "g0" in rule.captures(scalars):
            vectors["g0"] = g
        coords = Coordinates(g, alpha, state.alpha_prev, x, *map(vectors.get, ("x0", "g0", "s")))
        names = rule.reductions(scalars, k)
        sums = {"k": k, "loss": loss, **{n: evaluate(n, coords) for n in stage(names, "step")}}
        before = scalars
        lam, scalars = rule.step(scalars, sums)
        reanchor = anchored and rule.raised(before, scalars)
        info = {"lr": lam, "rho": rho, **rule.info(scalars, sums)}
        m, direction = state.m, g
        if self.first_moment > 0:
            b1 = self.first_moment
            m = state.m + (1 - b1) * (g - state.m)  # torch's lerp form of b1 m + (1-b1) g
            direction = m / (1 - b1 ** (k + 1))
        # z_{k+1} = z_k - lam_k u_k; without momentum z is the iterate the caller passes
        z = (state.z if self.momentum > 0 else x) - lam * (direction / alpha**2)
        x_next = z if self.momentum == 0 else self.momentum * x + (1 - self.momentum) * z
        settled = {"k": k, "lr": lam, "rho": rho}
        for name in stage(names, "move"):  # of s_{k-1}, weighted by the step
            settled[name] = lam * evaluate(name, coords)
        if "s" in vectors:
            vectors["s"] = rho * vectors["s"] + lam * (g / alpha)  # s_k = rho s + lam g'
        moved = coords._replace(s=vectors.get("s"))
        settled.update({name: evaluate(name, moved) for name in stage(names, "moved")})
        before = scalars
        scalars, settle_info = rule.settle(scalars, settled)
        reanchor = reanchor or (anchored and rule.raised(before, scalars))
        new = PSState(k + 1, state.x0, z, m, alpha, scaling_state, scalars, vectors, reanchor)
        return x_next, new, {**info, **settle_info, "alpha": alpha}


def parameter_scaled(
    step: StepRule,
    scaling: ScalingRule,
    momentum: float = 0.0,
    *,
    first_moment: float = 0.0,
    name: str = "",
) -> ParameterScaled:
    """Compose a step-size rule written for SGD with a scaling rule (docs/spec.md section 9)."""
    return ParameterScaled(step, scaling, momentum, first_moment, name)
