"""Families C and L of docs/spec.md section 4: the baselines' rates (SPS with identity
scaling, the subgradient method) and Nesterov's lower bound."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from paramscale.proofs_check import quantities
from paramscale.proofs_check.claims.base import Claim, _is_pssps
from paramscale.proofs_check.quantities import Result, compare
from paramscale.theory.scaling import identity


class SPSRateIdentity(Claim):
    """min_{k<K} h_k <= D G / sqrt(K)"""

    id, kind, assumptions = "C1", "theorem", "SPS (identity), c = 1"

    def applies(self, traj, problem) -> bool:
        return (
            _is_pssps(traj)
            and isinstance(quantities.scaling_rule(traj), identity)
            and quantities.step_rule(traj).c == 1.0
        )

    def series(self, traj, problem, solution) -> dict[str, np.ndarray]:
        bound = quantities.subgradient_bound(traj, problem, quantities.grad_norm_max(traj))
        k = np.arange(1, traj.iters + 1)
        return {"k": k, "observed": quantities.best_gap(traj, solution), "bound": bound}

    def evaluate(self, traj, problem, solution) -> Result:
        s = self.series(traj, problem, solution)
        return compare(self.id, s["observed"], s["bound"], {"D": problem.distance(traj.x[0])})


class SubgradientRate(Claim):
    """min_{k<K} h_k <= D G / sqrt(K)"""

    id, kind = "C2", "theorem"
    assumptions = "subgradient method, eta = D / (G sqrt(K)), G >= every ||g_k||"

    def applies(self, traj, problem) -> bool:
        return (
            quantities.is_plain(traj)
            and isinstance(quantities.scaling_rule(traj), identity)
            and getattr(traj.config, "name", "") == "sgd"
        )

    @staticmethod
    def step_G(traj: Any, problem: Any) -> float:
        """The G the step was built with: eta = D / (G sqrt(K))."""
        return problem.distance(traj.x[0]) / (quantities.step_rule(traj).lr * math.sqrt(traj.iters))

    def series(self, traj, problem, solution) -> dict[str, np.ndarray]:
        bound = np.full(traj.iters, np.nan)  # a bound at the final K only
        bound[-1] = quantities.subgradient_bound(traj, problem, self.step_G(traj, problem))[-1]
        k = np.arange(1, traj.iters + 1)
        return {"k": k, "observed": quantities.best_gap(traj, solution), "bound": bound}

    def evaluate(self, traj, problem, solution) -> Result:
        K, G = traj.iters, self.step_G(traj, problem)
        s = self.series(traj, problem, solution)
        measured = {"D": problem.distance(traj.x[0]), "G": G}
        res = compare(self.id, [s["observed"][-1]], [s["bound"][-1]], measured, [K - 1])
        g_seen = float(np.max(np.linalg.norm(traj.grad, axis=1)))
        if g_seen > G * (1 + 1e-12):  # the theorem assumes G bounds every subgradient seen
            measured = {**res.measured, "G_seen": g_seen}
            return Result(self.id, False, res.margin, 0, res.tightness, measured)
        return res


class NesterovLowerBound(Claim):
    """h_k >= G D / (2 (2 + sqrt(K+1))) for every k <= K, n >= K + 1"""

    id, kind = "L1", "theorem"
    assumptions = (
        "Nesterov's worst-case function, x_0 = 0, iterates in x_0 + span(gradients) (any "
        "diagonal-scaled method)"
    )

    def applies(self, traj, problem) -> bool:
        return problem.family == "nesterov_worst" and np.all(traj.x[0] == 0)

    def evaluate(self, traj, problem, solution) -> Result:
        K = min(traj.iters, problem.params["p"] - 1)  # n = p >= K + 1
        hk = quantities.gap(traj, solution)[: K + 1]
        bound = quantities.nesterov_lower_bound(problem, K)
        # a lower bound: the observed h_k >= bound, i.e. bound - h_k <= 0
        res = compare(self.id, bound - hk, np.zeros(K + 1), {"bound": bound})
        tight = float(np.min(hk) / bound)
        return Result(self.id, res.holds, res.margin, res.first_violation, tight, res.measured)
