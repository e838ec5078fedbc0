"""Problems derived from a problem: the transformations the spec's identities and the
paper's arguments talk about."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np


def permuted(problem: Any, perm: np.ndarray) -> SimpleNamespace:
    """``problem`` with its coordinates permuted: ``x' = x[perm]`` (permutation
    equivariance, SPEC 3.1/3.2). The trajectory from ``x0[perm]`` is the permuted one."""
    inv = np.argsort(perm)
    return SimpleNamespace(
        f=lambda x, idx=None: problem.f(x[inv], idx),
        grad=lambda x, idx=None: problem.grad(x[inv], idx)[perm],
        n=problem.n,
        m=problem.m,
        x0=problem.x0[perm],
        name=problem.name + "[perm]",
    )


def stopping_coordinate(problem: Any, j: int = 0, margin: float = 1e-9) -> SimpleNamespace:
    """A LAD-type ``problem`` (data ``A``, ``b``) whose coordinate ``j`` converges early
    (paper section 4.1): its column is zeroed and ``max(0, x_j - t)`` is added, with ``t``
    just below ``x0_j``, so ``g_j != 0`` for the first step(s) and exactly 0 for ever after.
    Convex and Lipschitz."""
    A = problem.data["A"].copy()
    A[:, j] = 0.0
    b = problem.data["b"]
    t = problem.x0[j] - margin

    def f(x, idx=None):
        return float(np.mean(np.abs(A @ x - b)) + max(0.0, x[j] - t))

    def grad(x, idx=None):
        g = A.T @ np.sign(A @ x - b) / A.shape[0]
        g[j] = 1.0 if x[j] > t else 0.0
        return g

    return SimpleNamespace(
        f=f,
        grad=grad,
        n=problem.n,
        m=problem.m,
        x0=problem.x0,
        name=f"{problem.name}[coordinate {j} stops]",
    )
