"""The paper's baselines and today's learning-rate-free methods, as the official code
computes them (oracles in tests/test_baselines.py).

Longer than the project's ~400 lines: eight small, independent optimizers, each a
docstring with its equations, a typed state and one ``step``; split they would share
nothing but ``_grad`` and ``_blocks``, and this order is the README's oracle table's.
EG step-size adaptation, the project's own variants included, is ``theory.eg`` (its
``eg_stepsize`` is importable from here too).

Every optimizer has ``init(x0) -> state`` and ``step(state, x, loss, grad) -> (x_next,
state, info)``; ``info["lr"]`` is its learning-rate estimate at that step and ``info["d"]``
its distance estimate where it has one. Which ones decompose as a step-size rule in scaled
space, and so are built with ``parameter_scaled``: DoG and DoWG (``theory.stepsize``'s
``dog_step``, ``dowg_step`` + identity) and
schedule-free (its averaging around any scaling rule). The others keep per-layer,
per-coordinate or lambda-weighted state and are plain optimizers.

Edge cases (docs/baselines.md section 14): a zero first gradient is harmless for DoG (``eps``
enters ``G`` once), D-Adapt Adam and Prodigy (no move, ``k`` not advanced, as the official
code does) and COCOB (no move). Weight decay is not offered: the paper runs without it
(Table 3), and an unsupported value is better absent than silently different.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from paramscale.theory import _validate as check
from paramscale.theory import scaling as rules
from paramscale.theory.combinator import ParameterScaled, parameter_scaled
from paramscale.theory.eg import EG_EXPONENTS, EGState, eg_exponents, eg_stepsize
from paramscale.theory.stepsize import dog_step, dowg_step

__all__ = [
    "dog",
    "ldog",
    "dog_step",
    "dowg",
    "dowg_step",
    "cocob",
    "dadapt_adam",
    "prodigy",
    "schedule_free_sgd",
    "schedule_free_adam",
    "schedule_free",
    "mechanic",
    "eg_stepsize",
    "eg_exponents",
    "EGState",
    "EG_EXPONENTS",
]


def _grad(grad: Any, x: np.ndarray, k: int) -> np.ndarray:
    return check.gradient(grad, np.asarray(x), k)


def _blocks(n: int, blocks: tuple[int, ...] | None) -> list[slice]:
    sizes = blocks if blocks is not None else (n,)
    if sum(sizes) != n or any(b <= 0 for b in sizes):
        raise ValueError(f"Invalid blocks: {blocks!r} (expected positive sizes summing to {n})")
    cuts = np.cumsum((0,) + tuple(sizes))
    return [slice(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


# -- DoG / LDoG (Ivgi, Hinder, Carmon 2023; dog-optimizer 1.0.3) ---------------------------


def dog(lr: float = 1.0, reps_rel: float = 1e-6, eps: float = 1e-8) -> ParameterScaled:
    """DoG = ``parameter_scaled(dog_step, identity)`` (the step rule's docstring, docs/baselines.md
    section 3); ``info["d"]`` is ``rbar``."""
    return parameter_scaled(dog_step(lr, reps_rel, eps), rules.identity(), name="dog")


def dowg(eps: float = 1e-4, init_sq_dist: float | None = None) -> ParameterScaled:
    """DoWG = ``parameter_scaled(dowg_step, identity)`` (optax's ``contrib.dowg``,
    docs/baselines.md section 15); ``info["d"]`` is the distance estimate."""
    return parameter_scaled(dowg_step(eps, init_sq_dist), rules.identity(), name="dowg")


class LDoGState(NamedTuple):
    k: int
    x0: np.ndarray
    rbar: np.ndarray  # one entry per block
    gsum: np.ndarray


@dataclass(frozen=True)
class ldog:
    """LDoG: DoG with every norm per layer (``blocks``; default one block), so ``eta`` is
    one per layer (docs/baselines.md section 3). A plain optimizer: the step is a vector."""

    lr: float = 1.0
    reps_rel: float = 1e-6
    eps: float = 1e-8
    blocks: tuple[int, ...] | None = None
    name: str = "ldog"

    def init(self, x0: np.ndarray) -> LDoGState:
        x0 = np.array(x0, dtype=np.float64)
        b = _blocks(len(x0), self.blocks)
        return LDoGState(0, x0, np.zeros(len(b)), np.zeros(len(b)))

    def step(self, state: LDoGState, x: np.ndarray, loss: Any, grad: Any):
        k = state.k
        g = _grad(grad, x, k)
        bl = _blocks(len(x), self.blocks)
        gsq = np.array([g[s] @ g[s] for s in bl])
        if k == 0:
            rbar = self.reps_rel * (1 + np.array([np.linalg.norm(state.x0[s]) for s in bl]))
            gsum = gsq + self.eps
        else:
            dist = np.array([np.linalg.norm(x[s] - state.x0[s]) for s in bl])
            rbar, gsum = np.maximum(state.rbar, dist), state.gsum + gsq
        eta = self.lr * rbar / np.sqrt(gsum)
        step = np.concatenate([np.full(s.stop - s.start, e) for s, e in zip(bl, eta, strict=True)])
        new = state._replace(k=k + 1, rbar=rbar, gsum=gsum)
        return x - step * g, new, {"lr": float(np.mean(eta)), "d": float(np.mean(rbar))}


# -- COCOB-Backprop (Orabona & Tommasi 2017; parameterfree 0.0.1) ---------------------------


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
        g = _grad(grad, x, state.k)
        L = np.maximum(state.L, np.abs(g))
        theta = state.theta - g
        G = state.G + np.abs(g)
        R = np.maximum(state.R - g * (x - state.x0), 0.0)
        frac = (R + L) / (np.maximum(G + L, self.alpha * L) * L)
        new = state._replace(k=state.k + 1, theta=theta, G=G, L=L, R=R)
        return state.x0 + frac * theta, new, {"lr": float(np.median(frac))}


# -- D-Adapt Adam (dadaptation 3.2) and Prodigy (prodigyopt 1.1.2) -------------------------


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
        g = _grad(grad, x, k)
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
        g = _grad(grad, x, k)
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


# -- schedule-free (Defazio et al. 2024; schedulefree 1.4.1) --------------------------------


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
        g = _grad(grad, y, k)
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


# -- Mechanic (Cutkosky, Defazio, Mehta 2023; mechanic-pytorch 0.0.1) ----------------------


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
        g = _grad(grad, x, state.k)
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
