"""``run``: drive an optimizer on a problem and record the trajectory (docs/spec.md section 9)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Trajectory:
    """x (K+1, n), f (K+1,), lr (K,), alpha (K, n) and per-step diagnostics ``info``."""

    x: np.ndarray
    f: np.ndarray
    lr: np.ndarray
    alpha: np.ndarray
    info: dict[str, np.ndarray] = field(default_factory=dict)
    grad: np.ndarray | None = None
    optimizer: str = ""
    problem: str = ""
    config: Any = None  # the optimizer object that produced it (claims read its settings)

    @property
    def iters(self) -> int:
        return len(self.lr)


def run(
    optimizer: Any,
    problem: Any,
    x0: np.ndarray | None = None,
    iters: int = 100,
    *,
    batch_size: int | None = None,
    seed: int = 0,
    stop_on_nonfinite: bool = False,
) -> Trajectory:
    """Run ``iters`` steps. Full (sub)gradients by default; ``batch_size`` draws that many
    samples per step (with replacement, from ``seed``) and feeds ``f_i`` and its gradient.
    ``f`` is always the full objective at each iterate. ``stop_on_nonfinite``: when the
    optimizer refuses a step for a NaN/Inf loss or gradient (a diverged run), return the
    finite prefix (``info["stopped_at"]`` holds the step) instead of raising."""
    if not (isinstance(iters, int) and iters >= 0):
        raise ValueError(f"Invalid iters: {iters!r} (expected an int >= 0)")
    x = np.array(problem.x0 if x0 is None else x0, dtype=np.float64)
    if x.shape != (problem.n,):
        raise ValueError(f"Invalid x0: shape {x.shape} (expected ({problem.n},))")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(f"Invalid x0: {bad} NaN/Inf entries (expected a finite start)")
    rng = np.random.default_rng(seed)
    state = optimizer.init(x)
    xs, fs, grads, lrs, alphas = [x], [problem.f(x)], [], [], []
    info: dict[str, list[float]] = {}
    stopped = None
    for k in range(iters):
        if batch_size is None:
            loss, g = fs[-1], problem.grad(x)
        else:
            idx = rng.integers(0, problem.m, size=batch_size)
            loss, g = problem.f(x, idx), problem.grad(x, idx)
        try:
            x, state, step_info = optimizer.step(state, x, loss, g)
        except FloatingPointError:
            if not stop_on_nonfinite:
                raise
            stopped = k
            break
        alphas.append(step_info.pop("alpha", np.ones(problem.n)))  # baselines: no scaling
        lrs.append(step_info.pop("lr"))
        for key, value in step_info.items():
            info.setdefault(key, []).append(value)
        grads.append(g)
        xs.append(x)
        fs.append(problem.f(x))
    n, done = problem.n, len(lrs)
    arrays = {k: np.array(v, dtype=np.float64) for k, v in info.items()}
    if stopped is not None:
        arrays["stopped_at"] = np.array([stopped])
    return Trajectory(
        x=np.array(xs),
        f=np.array(fs),
        lr=np.array(lrs, dtype=np.float64),
        alpha=np.array(alphas).reshape(done, n),
        info=arrays,
        grad=np.array(grads).reshape(done, n),
        optimizer=getattr(optimizer, "name", ""),
        problem=getattr(problem, "name", ""),
        config=optimizer,
    )
