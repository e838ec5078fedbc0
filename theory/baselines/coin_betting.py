"""COCOB-Backprop, coin betting per coordinate (Orabona & Tommasi 2017; parameterfree
0.0.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from paramscale.theory import _validate as check


class COCOBState(NamedTuple):
    k: int
    x0: np.ndarray
    theta: np.ndarray  # minus the sum of gradients
    G: np.ndarray  # sum of |g|
    L: np.ndarray  # max |g|
    R: np.ndarray  # the reward


@dataclass(frozen=True)
class cocob:
    """COCOB-Backprop, per coordinate (docs/baselines.md section 7):

        L = max(L, |g|);  theta -= g;  G += |g|;  R = max(R - g (x_k - x_0), 0)
        x_{k+1} = x_0 + (R + L) theta / (max(G + L, alpha L) L)

    ``info["lr"]``: the median betting fraction ``(R + L) / (max(G + L, alpha L) L)``."""

    alpha: float = 100.0
    eps: float = 1e-8
    name: str = "cocob"

    def __post_init__(self) -> None:
        check.positive("alpha", self.alpha)
        check.positive("eps", self.eps)  # eps = 0 with a zero gradient gives 0/0

    def init(self, x0: np.ndarray) -> COCOBState:
        x0 = np.array(x0, dtype=np.float64)
        z = np.zeros_like(x0)
        return COCOBState(0, x0, z, z, z + self.eps, z)

    def step(self, state: COCOBState, x: np.ndarray, loss: Any, grad: Any):
        g = check.gradient(grad, x, state.k)
        L = np.maximum(state.L, np.abs(g))
        theta = state.theta - g
        G = state.G + np.abs(g)
        R = np.maximum(state.R - g * (x - state.x0), 0.0)
        frac = (R + L) / (np.maximum(G + L, self.alpha * L) * L)
        new = state._replace(k=state.k + 1, theta=theta, G=G, L=L, R=R)
        return state.x0 + frac * theta, new, {"lr": float(np.median(frac))}
