"""Problems derived from a problem: the transformations the spec's identities and the
paper's arguments talk about."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np


def permuted(problem: Any, perm: np.ndarray) -> SimpleNamespace:
    """``problem`` with its coordinates permuted: ``x' = x[perm]`` (permutation
    equivariance, docs/spec.md 3.1/3.2). The trajectory from ``x0[perm]`` is the permuted one."""
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


def steady_stopping(n: int = 5, seed: int = 0, j: int = 0, margin: float = 1e-9) -> SimpleNamespace:
    """``sum_{i != j} c_i |x_i - a_i| + c_j max(0, x_j - t)`` from x0 = 0: the other
    coordinates' gradients keep a constant magnitude ``c_i`` (their targets ``|a_i| >= 1``
    lie far from where a few hundred small steps go, and past them the sign flips, not the
    size), so under Adam scaling their alpha is constant; coordinate ``j``'s gradient is
    ``c_j`` until it passes ``t = -margin`` and exactly 0 for ever after (it only moves
    down). The test problem of principle (ii) with nothing else changing the metric (on LAD
    the other coordinates' subgradients change too)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.5, 2.0, n)
    a = rng.uniform(1.0, 3.0, n) * rng.choice([-1.0, 1.0], n)
    t = -margin
    others = np.arange(n) != j

    def f(x, idx=None):
        return float(c[others] @ np.abs(x[others] - a[others]) + c[j] * max(0.0, x[j] - t))

    def grad(x, idx=None):
        g = c * np.sign(x - a)
        g[j] = c[j] if x[j] > t else 0.0
        return g

    return SimpleNamespace(
        f=f, grad=grad, n=n, m=1, x0=np.zeros(n), name=f"steady(n={n},seed={seed})[{j} stops]"
    )
