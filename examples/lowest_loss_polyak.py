"""A user's step-size rule: Polyak's step when f* is not known, estimated as the lowest
loss seen so far, less a margin (a relative one: ``margin`` times its size), and capped.

    f*_k  = l_k - margin |l_k|,   l_k = min_{i<=k} f(x_i)
    lam_k = min((f(x_k) - f*_k) / ||g_k / alpha_k||**2, eta_max)

It declares what it reads (the loss, ||g'||^2) and keeps one float; every engine computes
the rest, on NumPy and on every torch path. Validate it end to end (from the repository
root):

    paramscale validate-rule examples/lowest_loss_polyak.py:lowest_loss_polyak
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

from paramscale.theory.stepsize import StepRule


class LowestLoss(NamedTuple):
    low: float = math.inf  # the lowest loss seen (a key of the torch optimizer's stats())


@dataclass(frozen=True)
class lowest_loss_polyak(StepRule):
    margin: float = 0.5
    eta_max: float = math.inf  # a finite cap, in scaled units, breaks principle (i)
    needs_loss = True  # the engine passes the loss as sums["loss"]

    def init_scalars(self):
        return LowestLoss()

    def reductions(self, scalars, k):
        return frozenset({"scaled_grad_sq"})  # theory.reductions.REDUCTIONS

    def step(self, scalars, sums):
        low = min(scalars.low, sums["loss"])
        f_star = low - self.margin * abs(low)
        gsq = sums["scaled_grad_sq"]
        lam = 0.0 if gsq == 0 else min((sums["loss"] - f_star) / gsq, self.eta_max)
        return lam, LowestLoss(low)
