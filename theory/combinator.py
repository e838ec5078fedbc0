"""``parameter_scaled``: a step-size rule written for SGD + a scaling rule = an adaptive
optimizer (the paper's one idea, docs/spec.md section 9).

    g_k     = grad f(x_k);   alpha_k = scaling(g_0..g_k)
    rho_k   = the step rule's metric transfer          (k > 0; theory.transfer)
    lam_k   = step-size rule in scaled space (sees g'_k = g_k / alpha_k)
    z_{k+1} = z_k - lam_k * u_k,   u_k = mhat_k / alpha_k**2  (mhat_k = g_k if beta1 = 0)
    x_{k+1} = beta * x_k + (1 - beta) * z_{k+1}        (primal averaging; beta = 0: x = z)

``first_moment`` (beta1) is Adam's bias-corrected EMA of the gradient, used only in the
direction (the plain Adam / AMSGrad optimizers of docs/spec.md section 2); ``momentum`` (beta) is
D-Adapt SGD's primal averaging. Every step is functional: a rejected step (NaN/Inf
gradient, wrong shape, loss below f*) raises before a new state exists, so the caller's
state is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from paramscale.theory import _validate as check
from paramscale.theory import transfer
from paramscale.theory.scaling import ScalingRule
from paramscale.theory.stepsize import StepInput
from paramscale.theory.transfer import MetricChange


class PSState(NamedTuple):
    k: int
    x0: np.ndarray
    z: np.ndarray
    m: np.ndarray | None
    alpha_prev: np.ndarray | None
    scaling: Any
    step: Any


@dataclass(frozen=True)
class ParameterScaled:
    """An optimizer ``init(x0) -> state``, ``step(state, x, loss, grad) -> (x, state, info)``."""

    step_rule: Any
    scaling: ScalingRule
    momentum: float = 0.0
    first_moment: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        check.unit_interval("momentum", self.momentum)
        check.unit_interval("first_moment", self.first_moment)
        if not isinstance(self.scaling, ScalingRule):
            raise TypeError(f"Invalid scaling: {self.scaling!r} (expected a scaling rule)")

    def init(self, x0: Any) -> PSState:
        x0 = np.array(x0, dtype=np.float64)
        if x0.ndim != 1:
            raise ValueError(f"Invalid x0: shape {x0.shape} (expected a 1-D vector)")
        m = np.zeros_like(x0) if self.first_moment > 0 else None
        return PSState(0, x0, x0, m, None, self.scaling.init(x0), self.step_rule.init(x0))

    def step(
        self, state: PSState, x: np.ndarray, loss: float | None, grad: Any
    ) -> tuple[np.ndarray, PSState, dict[str, Any]]:
        k = state.k
        g = check.gradient(grad, state.z, k)
        loss = check.loss(loss, k)
        alpha, scaling_state = self.scaling.update(state.scaling, g, x)
        if alpha.shape != g.shape or not np.all(np.isfinite(alpha)) or np.any(alpha <= 0):
            raise FloatingPointError(
                f"Scaling rule {self.scaling.name!r} gave an invalid alpha at step {k} "
                "(expected a finite positive vector of the gradient's shape)"
            )
        x = np.asarray(x, dtype=np.float64)
        step_state, rho = state.step, 1.0
        if state.alpha_prev is not None and self.step_rule.transfer != "none":
            change = MetricChange(state.alpha_prev, alpha, x - state.x0, g)
            rho = transfer.rho(self.step_rule.transfer, change)  # docs/spec.md, transfer
            step_state = self.step_rule.transfer_state(step_state, rho)
        lam, step_state, info = self.step_rule.step_size(
            step_state, StepInput(k, loss, g, alpha, g / alpha, x)
        )
        m, direction = state.m, g
        if self.first_moment > 0:
            b1 = self.first_moment
            m = state.m + (1 - b1) * (g - state.m)  # torch's lerp form of b1 m + (1-b1) g
            direction = m / (1 - b1 ** (k + 1))
        # z_{k+1} = z_k - lam_k u_k; without momentum z is the iterate the caller passes
        z = (state.z if self.momentum > 0 else x) - lam * (direction / alpha**2)
        x_next = z if self.momentum == 0 else self.momentum * x + (1 - self.momentum) * z
        info = {"lr": lam, "rho": rho, **info}
        return (
            x_next,
            PSState(k + 1, state.x0, z, m, alpha, scaling_state, step_state),
            {
                **info,
                "alpha": alpha,
            },
        )


def parameter_scaled(
    step: Any,
    scaling: ScalingRule,
    momentum: float = 0.0,
    *,
    first_moment: float = 0.0,
    name: str = "",
) -> ParameterScaled:
    """Compose a step-size rule written for SGD with a scaling rule (docs/spec.md section 9)."""
    return ParameterScaled(step, scaling, momentum, first_moment, name)
