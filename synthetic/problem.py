"""The ``Problem`` base class: objective, subgradient, per-sample losses, Lipschitz bound,
and the exact solution with a certificate (docs/spec.md section 5)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np

from paramscale.synthetic.solve import Solution, certified_solve, nearest_solution


@dataclass(frozen=True, eq=False)
class Problem:
    """A convex Lipschitz problem ``f(x) = mean_i f_i(x)`` with its data and seed.

    ``lipschitz`` bounds every full subgradient and ``lipschitz_sample`` every per-sample
    one, on the ball ``||x - x0|| <= lipschitz_radius`` (inf: everywhere).
    """

    name: str
    family: str
    params: dict[str, Any]
    data: dict[str, np.ndarray]
    x0: np.ndarray
    lipschitz: float
    lipschitz_sample: float
    m: int
    lipschitz_radius: float = math.inf

    @property
    def n(self) -> int:
        return int(self.x0.shape[0])

    # -- the four things a family defines ------------------------------------------------
    def losses(self, x: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def sample_grads_mean(self, x: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def cvx_objective(self, y: cp.Variable) -> cp.Expression:
        raise NotImplementedError

    def reference_solve(self) -> tuple[np.ndarray, str]:
        """An independent second solution (HiGHS LP, closed form or scipy): (x, solver)."""
        raise NotImplementedError

    def unique_minimizer(self, x_star: np.ndarray) -> bool:
        """True when ``x_star`` is provably the only minimiser (then ``D_a`` needs no
        level-set solve). Default: not known."""
        return False

    # -- derived -------------------------------------------------------------------------
    def f(self, x: np.ndarray, idx: np.ndarray | None = None) -> float:
        return float(np.mean(self.losses(np.asarray(x, dtype=np.float64), idx)))

    def grad(self, x: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        return self.sample_grads_mean(np.asarray(x, dtype=np.float64), idx)

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256(f"{self.family}|{sorted(self.params.items())!r}".encode())
        for key in sorted(self.data):
            arr = np.ascontiguousarray(self.data[key])
            h.update(f"{key}|{arr.dtype}|{arr.shape}".encode())
            h.update(arr.tobytes())
        return h.hexdigest()[:32]

    def solve(self, *, cache: bool = True, **solver_options: Any) -> Solution:
        """Exact solution: cvxpy + Clarabel, certified by an independent second solver."""
        return certified_solve(self, cache=cache, **solver_options)

    def distance(
        self, x0: np.ndarray, a: np.ndarray | None = None, tol: float | None = None
    ) -> float:
        """``D_a = ||x0 - x*||_a`` to the solution closest to ``x0`` in the metric ``a``
        (docs/spec.md section 1): ``min ||a*(x0 - y)|| s.t. f(y) <= f* + tol``."""
        return nearest_solution(self, np.asarray(x0, dtype=np.float64), a, tol)[0]

    def with_start(self, x0: np.ndarray) -> Problem:
        """The same problem from another start (the solution does not depend on it)."""
        from dataclasses import replace

        return replace(self, x0=np.asarray(x0, dtype=np.float64))

    def __repr__(self) -> str:
        return f"Problem({self.name!r}, n={self.n}, m={self.m})"
