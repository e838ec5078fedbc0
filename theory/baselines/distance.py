"""Distance over gradients: DoG and DoWG (a step-size rule in scaled space, identity
scaling) and LDoG (per layer, a plain optimizer). Ivgi, Hinder, Carmon 2023;
dog-optimizer 1.0.3; optax's ``contrib.dowg``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from paramscale.theory import _validate as check
from paramscale.theory import scaling as rules
from paramscale.theory.combinator import ParameterScaled, parameter_scaled
from paramscale.theory.stepsize import dog_step, dowg_step


def _blocks(n: int, blocks: tuple[int, ...] | None) -> list[slice]:
    sizes = blocks if blocks is not None else (n,)
    if sum(sizes) != n or any(b <= 0 for b in sizes):
        raise ValueError(f"Invalid blocks: {blocks!r} (expected positive sizes summing to {n})")
    cuts = np.cumsum((0,) + tuple(sizes))
    return [slice(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


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
        g = check.gradient(grad, x, k)
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
