"""Step-for-step comparison of a NumPy optimizer against a torch oracle.

As docs/baselines.md section 14 advises: the gradient is computed in NumPy from each side's
own current iterate and assigned to ``p.grad``, so only optimizer arithmetic is compared;
the vector is split into two tensors so per-tensor and global logic are both exercised.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from paramscale import theory


def split(n: int) -> list[int]:
    return [n - n // 2, n // 2] if n > 1 else [1]


def oracle_trajectory(
    make_oracle: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    problem,
    x0: np.ndarray,
    steps: int,
    before_step: Callable[[torch.optim.Optimizer, int], None] | None = None,
    needs_loss: bool = False,
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
) -> np.ndarray:
    """Run a torch optimizer on ``problem`` with NumPy (float64) gradients computed at its
    own iterates; returns the (steps+1, n) trajectory as float64."""
    sizes = split(problem.n)
    cuts = np.cumsum(sizes)[:-1]
    params = [
        torch.nn.Parameter(torch.tensor(part, dtype=dtype, device=device))
        for part in np.split(x0, cuts)
    ]

    def current() -> np.ndarray:
        return torch.cat([p.detach().double().cpu() for p in params]).numpy().copy()

    opt = make_oracle(params)
    xs = [current()]
    for k in range(steps):
        x = current()
        g = problem.grad(x)
        for p, part in zip(params, np.split(g, cuts), strict=True):
            p.grad = torch.tensor(part, dtype=dtype, device=device)
        if before_step is not None:
            before_step(opt, k)
        if needs_loss:
            opt.step(loss=problem.f(x))
        else:
            opt.step()
        xs.append(current())
    return np.array(xs)


def max_rel_dev(a: np.ndarray, b: np.ndarray) -> float:
    """max over the trajectory of |a - b| / max|b| (docs/baselines.md section 14 metric)."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def numpy_trajectory(optimizer, problem, x0: np.ndarray, steps: int) -> np.ndarray:
    return theory.run(optimizer, problem, x0=x0, iters=steps).x
