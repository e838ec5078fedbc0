"""The paper's convergence claims (docs/spec.md section 4), one class each, PEPit style: the
statement in the docstring's first line (in the spec's notation), its assumptions, its
kind (``theorem``: must hold, a violation is a bug or a false proof; ``conjecture``:
measured and reported), ``applies(trajectory, problem)`` and ``evaluate(trajectory,
problem, solution) -> Result``; a rate claim also has ``series``, the bound per step for the
figures. The quantities and the bounds, each written once, are ``proofs_check.quantities``.

Longer than the project's ~400 lines: fifteen small, independent claims, each a class of
10-40 lines with its statement; the registry (``check``, ``bound_series``) reads them all.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from paramscale.proofs_check import quantities
from paramscale.proofs_check.quantities import Result, compare
from paramscale.theory.scaling import identity
from paramscale.theory.stepsize import dadapt, polyak

__all__ = ["Claim", "Result", "CLAIMS", "check", "bound_series"]


class Claim:
    """A claim of docs/spec.md section 4."""

    id: ClassVar[str]
    kind: ClassVar[str]  # "theorem" | "conjecture"
    assumptions: ClassVar[str]

    @property
    def statement(self) -> str:
        return " ".join((type(self).__doc__ or "").split("\n\n")[0].split())

    def applies(self, traj: Any, problem: Any) -> bool:
        return True

    def evaluate(self, traj: Any, problem: Any, solution: Any) -> Result:
        raise NotImplementedError

    def check(self, trajectory: Any, problem: Any, solution: Any) -> Result:
        if not self.applies(trajectory, problem):
            raise ValueError(
                f"Claim {self.id} does not apply to {trajectory.optimizer!r} on "
                f"{problem.name!r} (assumptions: {self.assumptions})"
            )
        return self.evaluate(trajectory, problem, solution)


def _is_pssps(traj: Any) -> bool:
    """PS-SPS with c > 1/2 and no cap, no momentum (A2, A5, A6, C1)."""
    rule = quantities.step_rule(traj)
    return (
        quantities.is_plain(traj)
        and isinstance(rule, polyak)
        and rule.c > 0.5
        and rule.eta_max == math.inf
    )


def _is_dadapt(traj: Any) -> bool:
    return isinstance(quantities.step_rule(traj), dadapt)


# -- A: PS-SPS and the scaling rules ------------------------------------------------------
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


# -- B: PS-DA-SGD -------------------------------------------------------------------------
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


# -- C, L: baselines and the lower bound --------------------------------------------------
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


CLAIMS: dict[str, Claim] = {
    c.id: c
    for c in (
        AMSGradMonotoneBounded(),
        SPSOneStep(),
        MetricChange(),
        ProductBound(),
        SPSRate(),
        NonMonotoneGrowth(),
        DNonDecreasing(),
        WeightedAverageRate(),
        DBounded(),
        DistanceLowerBound(),
        CodeDistanceEstimate(),
        TransportedLowerBound(),
        DecayingScheduleRate(),
        SPSRateIdentity(),
        SubgradientRate(),
        NesterovLowerBound(),
    )  # fmt: skip
}


def check(claim_id: str, trajectory: Any, problem: Any, solution: Any) -> Result:
    """Evaluate one claim on a recorded trajectory (docs/spec.md section 9)."""
    if claim_id not in CLAIMS:
        raise ValueError(f"Invalid claim_id: {claim_id!r} (expected one of {tuple(CLAIMS)})")
    return CLAIMS[claim_id].check(trajectory, problem, solution)


def bound_series(claim_id: str, traj: Any, problem: Any, solution: Any) -> dict[str, np.ndarray]:
    """The quantity a rate claim bounds and its bound, per step K = 1.. (for figures): A5
    and C1 bound the best-so-far gap, B2 the weighted average's gap, C2 the best gap at the
    final K only."""
    claim = CLAIMS.get(claim_id)
    if not hasattr(claim, "series"):
        rates = [c.id for c in CLAIMS.values() if hasattr(c, "series")]
        raise ValueError(f"Invalid claim_id: {claim_id!r} (expected one of {', '.join(rates)})")
    return claim.series(traj, problem, solution)
