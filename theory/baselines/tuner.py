"""Mechanic, a learning-rate tuner around any base optimizer of this protocol (Cutkosky,
Defazio, Mehta 2023; mechanic-pytorch 0.0.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from paramscale.theory import _validate as check


class MechanicState(NamedTuple):
    k: int
    ref: np.ndarray  # x_ref, the start
    base: Any  # the base optimizer's state
    s: np.ndarray  # one scale per beta
    m: np.ndarray
    v: np.ndarray
    r: np.ndarray


@dataclass(frozen=True)
class mechanic:
    """Mechanic around any base optimizer of this protocol (docs/baselines.md section 10):

        u_k = base step from x_k;  S = sum_j s_j;  Delta_k = (x_k - x_ref) / (S + eps)
        h = <Delta_k, g + s_decay S ||g|| (x_k+u_k) / (||x_k+u_k|| + eps)>;  Delta += u_k
        m_j = max(b_j m_j, |h|);  v_j = b_j^2 v_j + h^2;  r_j = max(b_j r_j - s_j h, 0)
        s_j = (m_j s_init / n + r_j) / (sqrt(v_j) + eps);  x_{k+1} = x_ref + Delta max(S', 0)

    ``info["lr"]`` is the scale ``sum_j s_j``."""

    base: Any
    s_decay: float = 0.01
    betas: tuple[float, ...] = (0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999)
    s_init: float = 1e-8
    eps: float = 1e-8
    name: str = "mechanic"

    def init(self, x0: np.ndarray) -> MechanicState:
        x0 = np.array(x0, dtype=np.float64)
        n = len(self.betas)
        z = np.zeros(n)
        return MechanicState(0, x0, self.base.init(x0), z, np.full(n, 1e-6), z, z)

    def step(self, state: MechanicState, x: np.ndarray, loss: Any, grad: Any):
        g = check.gradient(grad, x, state.k)
        moved, base_state, _ = self.base.step(state.base, x, loss, g)
        u = moved - x
        S = float(np.sum(state.s))
        delta = (x - state.ref) / (S + self.eps)
        decay = self.s_decay * moved * S * np.linalg.norm(g) / (np.linalg.norm(moved) + self.eps)
        h = float(delta @ (g + decay))
        delta = delta + u
        b = np.asarray(self.betas)
        m = np.maximum(b * state.m, abs(h))
        v = b**2 * state.v + h * h
        r = np.maximum(b * state.r - state.s * h, 0.0)
        s = (m * self.s_init / len(b) + r) / (np.sqrt(v) + self.eps)
        x_next = state.ref + delta * max(float(np.sum(s)), 0.0)
        new = MechanicState(state.k + 1, state.ref, base_state, s, m, v, r)
        return x_next, new, {"lr": float(np.sum(s))}
