"""Step-for-step comparison of a NumPy optimizer against a torch oracle.

As baselines.md section 14 advises: the gradient is computed in NumPy from each side's
own current iterate and assigned to ``p.grad``, so only optimizer arithmetic is compared;
the vector is split into two tensors so per-tensor and global logic are both exercised.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

import theory


def split(n: int) -> list[int]:
    return [n - n // 2, n // 2] if n > 1 else [1]


def oracle_trajectory(
    make_oracle: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    problem,
    x0: np.ndarray,
    steps: int,
    before_step: Callable[[torch.optim.Optimizer, int], None] | None = None,
    needs_loss: bool = False,
) -> np.ndarray:
    sizes = split(problem.n)
    params = [
        torch.nn.Parameter(torch.tensor(part, dtype=torch.float64))
        for part in np.split(x0, np.cumsum(sizes)[:-1])
    ]
    opt = make_oracle(params)
    xs = [x0.copy()]
    for k in range(steps):
        x = torch.cat([p.detach() for p in params]).numpy().copy()
        g = problem.grad(x)
        for p, part in zip(params, np.split(g, np.cumsum(sizes)[:-1]), strict=True):
            p.grad = torch.tensor(part, dtype=torch.float64)
        if before_step is not None:
            before_step(opt, k)
        if needs_loss:
            opt.step(loss=problem.f(x))
        else:
            opt.step()
        xs.append(torch.cat([p.detach() for p in params]).numpy().copy())
    return np.array(xs)


def max_rel_dev(a: np.ndarray, b: np.ndarray) -> float:
    """max over the trajectory of |a - b| / max|b| (baselines.md section 14 metric)."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def numpy_trajectory(optimizer, problem, x0: np.ndarray, steps: int) -> np.ndarray:
    return theory.run(optimizer, problem, x0=x0, iters=steps).x
