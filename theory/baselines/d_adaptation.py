"""D-Adaptation's Adam (dadaptation 3.2) and Prodigy (prodigyopt 1.1.2): a distance
estimate ``d`` grown from lambda-weighted sums, with Adam's moments (so not
``parameter_scaled``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from paramscale.theory import _validate as check


class DAdaptAdamState(NamedTuple):
    k: int
    d: float
    N: float  # the numerator
    s: np.ndarray
    m: np.ndarray
    v: np.ndarray


@dataclass(frozen=True)
class dadapt_adam:
    """D-Adapt Adam, the v3 ("inner product") algorithm of ``dadaptation.DAdaptAdam``
    (docs/baselines.md section 5). Not ``parameter_scaled``: its first moment is lambda-weighted.

        lam = d lr bc,  a = lam <g, s/(sqrt(v)+eps)>,  m = b1 m + (1-b1) lam g,
        v = b2 v + (1-b2) g^2,  s = sqrt(b2) s + (1-sqrt(b2)) lam g,
        N = sqrt(b2) N + (1-sqrt(b2)) a,  dhat = N / ((1-sqrt(b2)) ||s||_1),
        d = max(d, min(dhat, d growth)),  x -= m / (sqrt(v) + eps)

    With ``||s||_1 = 0`` (a zero first gradient, or lr = 0) the official code returns
    without moving, storing ``N`` or advancing ``k``; so does this one."""

    lr: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    d0: float = 1e-6
    growth_rate: float = math.inf
    use_bias_correction: bool = False
    name: str = "dadapt_adam"

    def __post_init__(self) -> None:
        check.non_negative("lr", self.lr)
        check.unit_interval("beta1", self.betas[0])
        check.unit_interval("beta2", self.betas[1])
        check.positive("eps", self.eps)
        check.positive("d0", self.d0)
        check.growth("growth_rate", self.growth_rate)

    def init(self, x0: np.ndarray) -> DAdaptAdamState:
        z = np.zeros_like(np.asarray(x0, dtype=np.float64))
        return DAdaptAdamState(0, self.d0, 0.0, z, z, z)

    def step(self, state: DAdaptAdamState, x: np.ndarray, loss: Any, grad: Any):
        k = state.k
        g = check.gradient(grad, x, k)
        b1, b2 = self.betas
        sb2 = b2**0.5
        bc = (1 - b2 ** (k + 1)) ** 0.5 / (1 - b1 ** (k + 1)) if self.use_bias_correction else 1
        d = state.d
        lam = d * self.lr * bc
        a = lam * float(g @ (state.s / (np.sqrt(state.v) + self.eps)))
        m = b1 * state.m + lam * (1 - b1) * g
        v = b2 * state.v + (1 - b2) * g * g
        s = sb2 * state.s + lam * (1 - sb2) * g
        N = sb2 * state.N + (1 - sb2) * a
        s_l1 = float(np.sum(np.abs(s)))
        info = {"lr": lam, "d": d}
        if s_l1 == 0:
            return x, state._replace(m=m, v=v, s=s), info
        if self.lr > 0:
            d = max(d, min(N / ((1 - sb2) * s_l1), d * self.growth_rate))
        x_next = x - m / (np.sqrt(v) + self.eps)
        return x_next, DAdaptAdamState(k + 1, d, N, s, m, v), info


class ProdigyState(NamedTuple):
    k: int
    d: float
    d_max: float
    R: float  # the numerator
    x0: np.ndarray
    s: np.ndarray
    m: np.ndarray
    v: np.ndarray


@dataclass(frozen=True)
class prodigy:
    """Prodigy (``prodigyopt.Prodigy`` 1.1.2, docs/baselines.md section 6), beta1 > 0:

        lam = d lr bc;  R = beta3 R + (d/d0) lam <g, x_0 - x_k>
        m = b1 m + d (1-b1) g;  v = b2 v + d^2 (1-b2) g^2
        s = beta3 s + (d/d0) (safeguard_warmup ? d : lam) g
        dhat = d_coef R / ||s||_1;  if d == d0: d = max(d, dhat)
        d_max = max(d_max, dhat);  d = min(d_max, d growth)
        x -= lam m / (sqrt(v) + d_new eps)

    ``||s||_1 = 0`` returns without moving, as the official code does (R's decay is not
    stored, k not advanced)."""

    lr: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    beta3: float | None = None
    eps: float = 1e-8
    d0: float = 1e-6
    d_coef: float = 1.0
    growth_rate: float = math.inf
    use_bias_correction: bool = False
    safeguard_warmup: bool = False
    name: str = "prodigy"

    def __post_init__(self) -> None:
        check.non_negative("lr", self.lr)
        check.unit_interval("beta1", self.betas[0])
        check.unit_interval("beta2", self.betas[1])
        if self.betas[0] == 0:
            raise ValueError(
                "Invalid beta1: 0 (expected > 0; the beta1 = 0 variant of "
                "Prodigy 1.1 is not implemented)"
            )
        check.positive("eps", self.eps)
        check.positive("d0", self.d0)
        check.positive("d_coef", self.d_coef)
        check.growth("growth_rate", self.growth_rate)

    def init(self, x0: np.ndarray) -> ProdigyState:
        x0 = np.array(x0, dtype=np.float64)
        z = np.zeros_like(x0)
        return ProdigyState(0, self.d0, self.d0, 0.0, x0, z, z, z)

    def step(self, state: ProdigyState, x: np.ndarray, loss: Any, grad: Any):
        k = state.k
        g = check.gradient(grad, x, k)
        b1, b2 = self.betas
        b3 = b2**0.5 if self.beta3 is None else self.beta3
        bc = (1 - b2 ** (k + 1)) ** 0.5 / (1 - b1 ** (k + 1)) if self.use_bias_correction else 1
        d, d0 = state.d, self.d0
        lam = d * self.lr * bc
        R = b3 * state.R + (d / d0) * lam * float(g @ (state.x0 - x))
        m = b1 * state.m + d * (1 - b1) * g
        v = b2 * state.v + d * d * (1 - b2) * g * g
        s = b3 * state.s + (d / d0) * (d if self.safeguard_warmup else lam) * g
        s_l1 = float(np.sum(np.abs(s)))
        info = {"lr": lam, "d": d}
        if s_l1 == 0:
            return x, state._replace(m=m, v=v, s=s), info
        d_max = state.d_max
        if self.lr > 0:
            dhat = self.d_coef * R / s_l1
            if d == d0:
                d = max(d, dhat)
            d_max = max(d_max, dhat)
            d = min(d_max, d * self.growth_rate)
        x_next = x - lam * m / (np.sqrt(v) + d * self.eps)
        new = state._replace(k=k + 1, d=d, d_max=d_max, R=R, s=s, m=m, v=v)
        return x_next, new, info
