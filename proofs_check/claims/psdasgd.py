"""Family B of docs/spec.md section 4: PS-DA-SGD (d non-decreasing, the weighted
average's rate, d bounded, the distance lower bounds, the transported bound, decaying
schedules)."""

from __future__ import annotations

import math

import numpy as np

from paramscale.proofs_check import quantities
from paramscale.proofs_check.claims.base import Claim, _is_dadapt
from paramscale.proofs_check.quantities import Result, compare
from paramscale.theory.scaling import identity
from paramscale.theory.stepsize import dadapt


class DNonDecreasing(Claim):
    """d_k non-decreasing"""

    id, kind, assumptions = "B1", "theorem", "PS-DA-SGD, monotone rule"

    def applies(self, traj, problem) -> bool:
        return _is_dadapt(traj) and quantities.monotone(traj)

    def evaluate(self, traj, problem, solution) -> Result:
        d = traj.info["d"]
        return compare(self.id, -np.diff(d), np.zeros(len(d) - 1), steps=np.arange(1, len(d)))


class WeightedAverageRate(Claim):
    """f(xtilde_K) - f* <= (R_0 + sum lam_k**2 ||g'_k||**2/pi_k) / (2 sum lam_k/pi_k);
    monotone: f(xbar_K) - f* <= pi_K (R_0 + sum lam_k**2 ||g'_k||**2) / (2 sum lam_k)
    (paper Eq. 21-24)"""

    id, kind = "B2", "theorem"
    assumptions = "x_{k+1} = x_k - lam_k g_k/alpha_k**2 (no momentum); any rule"

    def applies(self, traj, problem) -> bool:
        return quantities.is_plain(traj)

    def series(self, traj, problem, solution) -> dict[str, np.ndarray]:
        avg = quantities.weighted_average_bound(traj, problem, solution)
        ks = np.arange(1, traj.iters + 1)
        return {"k": ks, "observed": avg.gap, "bound": np.where(avg.ok, avg.bound, np.nan)}

    def evaluate(self, traj, problem, solution) -> Result:
        K = traj.iters
        avg = quantities.weighted_average_bound(traj, problem, solution)
        lhs, rhs, steps = [avg.gap[avg.ok]], [avg.bound[avg.ok]], [np.nonzero(avg.ok)[0]]
        if quantities.monotone(traj):
            lam, gsq = traj.lr, quantities.scaled_grad_sq(traj)
            cl = np.cumsum(lam)
            okm = cl > 0
            cl1 = np.where(okm, cl, 1.0)
            xb = np.cumsum(lam[:, None] * traj.x[:K], axis=0) / cl1[:, None]
            pi_next = np.concatenate(
                [quantities.pi(traj)[1:K], [np.nan]]
            )  # pi_K = prod_{k<K} rho_k**2
            valid = okm & np.isfinite(pi_next)
            lhs.append((np.array([problem.f(v) for v in xb]) - solution.f)[valid])
            rhs.append((pi_next * (avg.r0 + np.cumsum(lam**2 * gsq)) / (2 * cl1))[valid])
            steps.append(np.nonzero(valid)[0])
        measured = {"R0": avg.r0}
        res = compare(self.id, *map(np.concatenate, (lhs, rhs)), measured, np.concatenate(steps))
        tight = compare(self.id, lhs[0], rhs[0]).tightness
        measured |= {"final_bound": float(avg.bound[-1]), "final_gap": float(avg.gap[-1])}
        return Result(self.id, res.holds, res.margin, res.first_violation, tight, measured)


class DBounded(Claim):
    """d_k stays bounded: max_k d_k / ||x_0 - x*||_{alpha_k}"""

    id, kind, assumptions = "B3", "conjecture", "PS-DA-SGD"

    def applies(self, traj, problem) -> bool:
        return _is_dadapt(traj)

    def evaluate(self, traj, problem, solution) -> Result:
        ratio = traj.info["d"] / quantities.metric_norm(traj.x[0] - solution.x, traj.alpha)
        measured = {"max_d_over_D": float(np.max(ratio)), "final_d_over_D": float(ratio[-1])}
        finite = bool(np.all(np.isfinite(ratio)))
        return Result(self.id, finite, math.nan, None, math.nan, measured)


class DistanceLowerBound(Claim):
    """dhat/2 <= D (the D-Adaptation lemma)"""

    id, kind = "B4", "theorem"
    assumptions = "D-Adapt SGD: identity rule, no momentum, dhat='code'"
    factor = 0.5  # the lemma's; B4code measures the code's estimate itself

    def applies(self, traj, problem) -> bool:
        rule = quantities.step_rule(traj)
        return (
            _is_dadapt(traj)
            and quantities.is_plain(traj)
            and isinstance(quantities.scaling_rule(traj), identity)
            and rule.dhat == "code"
        )

    def evaluate(self, traj, problem, solution) -> Result:
        D = problem.distance(traj.x[0])
        dhat = traj.info["dhat"]
        ok = np.isfinite(dhat)
        steps = np.nonzero(ok)[0]
        res = compare(self.id, self.factor * dhat[ok], np.full(ok.sum(), D), steps=steps)
        measured = {"D": D, "max_dhat_over_D": float(np.max(dhat[ok]) / D) if ok.any() else 0.0}
        return Result(self.id, res.holds, res.margin, res.first_violation, res.tightness, measured)


class CodeDistanceEstimate(DistanceLowerBound):
    """dhat <= D (the code's estimate, without the lemma's 1/2)"""

    id, kind, factor = "B4code", "conjecture", 1.0


class TransportedLowerBound(Claim):
    """d_k / D_k <= d_a / D_a between estimates: the transported d stays a lower bound

    D_k = ||x_0 - x*||_{alpha_k}; a is the last step at which the rule raised d
    (``StepRule.raised``, ties of ``GROWTH_RTOL`` carried as they come); then d_k =
    d_a prod_{j=a+1..k} rho_j, so d_a <= D_a implies d_k <= D_k, the lower bound
    D-Adaptation's argument needs, in the metric of each step (docs/spec.md, "Metric
    transfer"; for ``min`` and ``anchor`` prod rho_j <= min_i alpha_k,i / alpha_a,i <= D_k / D_a).
    """

    id, kind = "B6", "theorem"
    assumptions = "PS-DA-SGD whose transfer keeps the lower bound (min, min_active, anchor*)"
    transfers = ("min", "min_active", "anchor", "anchor_active")

    def applies(self, traj, problem) -> bool:
        return _is_dadapt(traj) and quantities.step_rule(traj).transfer in self.transfers

    def evaluate(self, traj, problem, solution) -> Result:
        d, rho = traj.info["d"], traj.info["rho"]  # d_k: after the transfer, before settle
        D = quantities.metric_norm(traj.x[0] - solution.x, traj.alpha)
        K = len(d)
        allowed, bound = np.full(K, np.nan), d[0] / D[0]
        for k in range(1, K):
            settled = d[k] / rho[k]  # step k-1's d after its settle, in alpha_{k-1}
            if dadapt.grew(d[k - 1], settled):
                bound = settled / D[k - 1]  # a new estimate: the anchor moves
            elif settled > d[k - 1]:
                bound *= settled / d[k - 1]  # a tie (< GROWTH_RTOL), carried
            allowed[k] = bound * D[k]
        steps = np.arange(1, K)
        res = compare(self.id, d[1:], allowed[1:], steps=steps)
        return Result(self.id, res.holds, res.margin, res.first_violation, res.tightness)


class DecayingScheduleRate(Claim):
    """gamma_k = 1/sqrt(k+1): the B2 bound -> 0, log-log slope near -1/2"""

    id, kind = "B5", "conjecture"
    assumptions = "PS-DA-SGD, monotone rule, no momentum, decaying schedule"

    def applies(self, traj, problem) -> bool:
        return (
            _is_dadapt(traj)
            and quantities.is_plain(traj)
            and quantities.monotone(traj)
            and quantities.step_rule(traj).schedule is not None
        )

    def evaluate(self, traj, problem, solution) -> Result:
        K = traj.iters
        avg = quantities.weighted_average_bound(traj, problem, solution)
        bound = np.where(avg.ok, avg.bound, np.nan)
        half = slice(K // 2, K)
        slope = float(np.polyfit(np.log(np.arange(1, K + 1)[half]), np.log(bound[half]), 1)[0])
        measured = {"slope": slope, "final_bound": float(bound[-1])}
        return Result(self.id, bool(slope < -0.25), math.nan, None, math.nan, measured)
