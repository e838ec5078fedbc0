"""Family A of docs/spec.md section 4: PS-SPS and the scaling rules (alpha monotone and
bounded, the one-step Polyak identity, the metric change, the product bound, the rate,
non-monotone growth)."""

from __future__ import annotations

import math

import numpy as np

from paramscale.proofs_check import quantities
from paramscale.proofs_check.claims.base import Claim, _is_pssps
from paramscale.proofs_check.quantities import Result, compare


class AMSGradMonotoneBounded(Claim):
    """alpha_{k+1} >= alpha_k and alpha_k**2 <= G_inf + eps"""

    id, kind, assumptions = "A1", "theorem", "AMSGrad rule (monotone form)"

    def applies(self, traj, problem) -> bool:
        rule = quantities.scaling_rule(traj)
        return type(rule).__name__ == "amsgrad" and rule.monotone

    def evaluate(self, traj, problem, solution) -> Result:
        a = traj.alpha
        g_inf = float(np.max(np.abs(traj.grad)))
        mono = np.min(a[1:] - a[:-1], axis=1) if len(a) > 1 else np.zeros(0)
        # alpha_{k+1} >= alpha_k as -min(alpha_{k+1} - alpha_k) <= 0; alpha_k**2 <= G_inf + eps
        lhs = np.concatenate([-mono, np.max(a**2, axis=1)])
        eps = quantities.scaling_rule(traj).eps
        rhs = np.concatenate([np.zeros_like(mono), np.full(len(a), g_inf + eps)])
        steps = np.concatenate([np.arange(1, len(a)), np.arange(len(a))])
        return compare(self.id, lhs, rhs, {"G_inf": g_inf}, steps)


class SPSOneStep(Claim):
    """||x_{k+1}-x*||_{alpha_k}**2 <= R_k - kappa h_k**2 / ||g'_k||**2 (paper Eq. 12-13)"""

    id, kind = "A2", "theorem"
    assumptions = "PS-SPS, c > 1/2, eta_max = inf, no momentum; any rule"

    def applies(self, traj, problem) -> bool:
        return _is_pssps(traj)

    def evaluate(self, traj, problem, solution) -> Result:
        x, a = traj.x, traj.alpha
        hk = quantities.gap(traj, solution)[: traj.iters]
        gsq = quantities.scaled_grad_sq(traj)
        ok = gsq > 0
        lhs = quantities.metric_sq(x[1:] - solution.x, a)  # ||x_{k+1} - x*||_{alpha_k}**2
        rk = quantities.metric_sq(x[:-1] - solution.x, a)
        kap = quantities.kappa(quantities.step_rule(traj).c)
        rhs = rk - kap * np.where(ok, hk**2 / np.where(ok, gsq, 1.0), 0.0)
        return compare(self.id, lhs[ok], rhs[ok], steps=np.nonzero(ok)[0])


class MetricChange(Claim):
    """||x_{k+1}-x*||_{alpha_{k+1}} <= rho_k ||x_{k+1}-x*||_{alpha_k} (paper Eq. 14)"""

    id, kind, assumptions = "A3", "theorem", "any positive alpha"

    def evaluate(self, traj, problem, solution) -> Result:
        x, a = traj.x, traj.alpha
        v = x[1:-1] - solution.x  # v = x_{k+1} - x*, k = 0..K-2
        lhs = quantities.metric_norm(v, a[1:])
        rhs = quantities.rho(traj) * quantities.metric_norm(v, a[:-1])
        return compare(self.id, lhs, rhs)


class ProductBound(Claim):
    """prod_{k<K} rho_k <= P_K = prod_i alpha_{K,i}/alpha_{0,i} (paper Eq. 15)"""

    id, kind, assumptions = "A4", "theorem", "monotone rule"

    def applies(self, traj, problem) -> bool:
        return quantities.monotone(traj)

    def evaluate(self, traj, problem, solution) -> Result:
        a = traj.alpha
        log_prod_rho = np.cumsum(np.log(quantities.rho(traj)))  # log prod_{k<K} rho_k, K = 1..
        log_p = np.sum(np.log(a[1:] / a[0]), axis=1)  # log P_K
        # compared in the log domain (the products overflow)
        return compare(self.id, log_prod_rho, log_p, steps=np.arange(1, len(a)))


class SPSRate(Claim):
    """kappa sum h_k**2/(pi_k ||g'_k||**2) <= R_0; min h_k <= sqrt(max pi_k) D_{alpha_0}
    max||g'_k|| / sqrt(kappa K); monotone: P_K D G/min(alpha_0) / sqrt(kappa K) (paper Eq.
    16-17)"""

    id, kind, assumptions = "A5", "theorem", "PS-SPS, c > 1/2, eta_max = inf, no momentum"

    def applies(self, traj, problem) -> bool:
        return _is_pssps(traj)

    def series(self, traj, problem, solution) -> dict[str, np.ndarray]:
        ks = np.arange(1, traj.iters + 1)
        observed = quantities.best_gap(traj, solution)
        return {"k": ks, "observed": observed, "bound": quantities.sps_rate_bound(traj, problem)}

    def evaluate(self, traj, problem, solution) -> Result:
        K, c = traj.iters, quantities.step_rule(traj).c
        hk = np.maximum(quantities.gap(traj, solution)[:K], 0.0)
        gsq, pik, R0 = (
            quantities.scaled_grad_sq(traj),
            quantities.pi(traj)[:K],
            quantities.r0(traj, problem),
        )
        ok = gsq > 0
        terms = np.where(ok, hk**2 / (pik * np.where(ok, gsq, 1.0)), 0.0)
        sum_lhs = quantities.kappa(c) * np.cumsum(terms)  # Eq. 16 at every prefix K
        rate = self.series(traj, problem, solution)
        lhs, rhs = [sum_lhs, rate["observed"]], [np.full(K, R0), rate["bound"]]
        measured = {"R0": R0, "c": c}
        if quantities.monotone(traj):  # a priori form: P_K and G / min(alpha_0)
            a = traj.alpha
            log_p = np.concatenate([[0.0], np.sum(np.log(a[1:] / a[0]), axis=1)])
            G = quantities.grad_norm_max(traj)
            prior = np.exp(log_p) * math.sqrt(R0) * (G / np.min(a[0]))
            lhs.append(rate["observed"])
            rhs.append(prior / np.sqrt(quantities.kappa(c) * rate["k"]))
        steps = np.concatenate([np.arange(K)] * len(lhs))
        res = compare(self.id, np.concatenate(lhs), np.concatenate(rhs), measured, steps)
        tight = compare(self.id, rate["observed"], rate["bound"]).tightness  # the plotted one
        return Result(self.id, res.holds, res.margin, res.first_violation, tight, measured)


class NonMonotoneGrowth(Claim):
    """non-monotone rules: growth of log pi_k, and does PS-SPS still converge"""

    id, kind, assumptions = "A6", "conjecture", "PS-SPS with Adam / RMSProp"

    def applies(self, traj, problem) -> bool:
        return _is_pssps(traj) and not quantities.monotone(traj)

    def evaluate(self, traj, problem, solution) -> Result:
        log_pi = np.log(quantities.pi(traj))
        K = len(log_pi)
        slope = float(np.polyfit(np.arange(K), log_pi, 1)[0]) if K > 2 else math.nan
        hk = quantities.gap(traj, solution)
        converged = float(np.min(hk) / max(hk[0], 1e-300))
        measured = {
            "log_pi_final": float(log_pi[-1]),
            "log_pi_slope": slope,
            "best_over_initial_gap": converged,
        }
        return Result(self.id, bool(converged < 1e-2), math.nan, None, math.nan, measured)
