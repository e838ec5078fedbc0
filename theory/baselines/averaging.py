"""Schedule-free averaging around any scaling rule (Defazio et al. 2024; schedulefree
1.4.1): ``schedule_free`` and its SGD and AdamW forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from paramscale.theory import _validate as check
from paramscale.theory import scaling as rules


class ScheduleFreeState(NamedTuple):
    k: int
    z: np.ndarray
    x: np.ndarray  # the average, where to evaluate
    lr_max: float
    weight_sum: float
    scaling: Any


@dataclass(frozen=True)
class schedule_free:
    """Schedule-free averaging around any scaling rule (docs/baselines.md section 9): the
    gradient is taken at ``y``, and

        gamma_k = lr * min(1, (k+1)/warmup);  lr_max = max(lr_max, gamma_k)
        c_k = w_k / sum w,  w_k = (k+1)^r lr_max^weight_lr_power
        z -= gamma_k g / alpha_k**2;  x = (1 - c_k) x + c_k z;  y = beta x + (1 - beta) z

    Identity scaling is ``SGDScheduleFreeReference``; the Adam rule without its first
    moment (``sqrt(v/(1-beta2^(k+1))) + eps``) is ``AdamWScheduleFreeReference`` at weight
    decay 0. The returned iterate is ``y``; the average ``x`` (evaluate there) is
    ``state.x``."""

    scaling: Any
    lr: float = 1.0
    beta: float = 0.9
    warmup_steps: int = 0
    r: float = 0.0
    weight_lr_power: float = 2.0
    name: str = "schedule_free"

    def __post_init__(self) -> None:
        check.non_negative("lr", self.lr)
        check.unit_interval("beta", self.beta)

    def init(self, x0: np.ndarray) -> ScheduleFreeState:
        x0 = np.array(x0, dtype=np.float64)
        return ScheduleFreeState(0, x0, x0, -1.0, 0.0, self.scaling.init(x0))

    def step(self, state: ScheduleFreeState, y: np.ndarray, loss: Any, grad: Any):
        k = state.k
        g = check.gradient(grad, y, k)
        alpha, sstate = self.scaling.update(state.scaling, g, y)
        sched = (k + 1) / self.warmup_steps if k < self.warmup_steps else 1.0
        gamma = self.lr * sched
        lr_max = max(gamma, state.lr_max)
        weight = (k + 1) ** self.r * lr_max**self.weight_lr_power
        weight_sum = state.weight_sum + weight
        c = weight / weight_sum if weight_sum > 0 else 0.0
        z = state.z - gamma * g / alpha**2
        x = (1 - c) * state.x + c * z
        y_next = self.beta * x + (1 - self.beta) * z
        new = ScheduleFreeState(k + 1, z, x, lr_max, weight_sum, sstate)
        return y_next, new, {"lr": gamma, "alpha": alpha}


def schedule_free_sgd(
    lr: float = 1.0,
    momentum: float = 0.9,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
) -> schedule_free:
    """``schedulefree.SGDScheduleFree`` (defaults of 1.4.1)."""
    return schedule_free(
        rules.identity(), lr, momentum, warmup_steps, r, weight_lr_power, "schedule_free_sgd"
    )


def schedule_free_adam(
    lr: float = 0.0025,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
) -> schedule_free:
    """``schedulefree.AdamWScheduleFree`` at weight decay 0 (defaults of 1.4.1)."""
    return schedule_free(
        rules.adam(betas[1], eps),
        lr,
        betas[0],
        warmup_steps,
        r,
        weight_lr_power,
        "schedule_free_adam",
    )
