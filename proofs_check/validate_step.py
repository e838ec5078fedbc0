"""``validate_step_rule``: put a new step-size rule (``theory.stepsize.StepRule``) through
what the theory and the torch side need, the counterpart of ``validate_rule`` for scaling
rules (docs/rules.md, "Adding a step-size rule"):

1. the interface: a ``StepRule``, a NamedTuple of scalars, reductions, vectors and a
   transfer that exist (a wrong one is bad input, not a finding);
2. steps finite and non-negative, in the scaled space of the identity, Adam and AMSGrad
   rules, on the quick suite (or the user's problems);
3. uniform-scale invariance (every alpha times 7.3: principle (i) of docs/spec.md) and
   permutation equivariance, under Adam scaling;
4. every claim of docs/spec.md section 4 that holds for any step of the form
   ``x_{k+1} = x_k - lam_k g_k / alpha_k**2`` (A1, A3, A4 where the scaling is monotone,
   B2) on those runs;
5. NumPy / torch agreement on the per-tensor and foreach paths;
6. how far each run got: the geometric mean of final gap / start gap per scaling (a
   measurement, not a pass or fail).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from paramscale import synthetic, theory
from paramscale.loading import RuleInputError
from paramscale.proofs_check import runner
from paramscale.proofs_check.claims import CLAIMS
from paramscale.proofs_check.validate import Check, RuleReport
from paramscale.synthetic.transforms import permuted
from paramscale.theory import scaling as rules
from paramscale.theory.combinator import parameter_scaled
from paramscale.theory.reductions import REDUCTIONS, VECTORS
from paramscale.theory.stepsize import StepRule
from paramscale.theory.transfer import TRANSFERS

SCALINGS = {"identity": rules.identity, "adam": rules.adam, "amsgrad": rules.amsgrad}


def check_step_interface(rule: Any) -> None:
    """A step rule with the interface ``theory.stepsize.StepRule`` declares, else
    RuleInputError naming what is wrong."""
    if not isinstance(rule, StepRule):
        raise RuleInputError(
            f"{rule!r} is not a step-size rule (expected a theory.stepsize.StepRule: "
            "init_scalars, reductions, step; docs/rules.md)"
        )
    scalars = rule.init_scalars()
    if not hasattr(scalars, "_asdict"):
        raise RuleInputError(f"{rule!r}.init_scalars() is not a NamedTuple: {scalars!r}")
    names = rule.reductions(scalars, 0) | rule.reductions(scalars, 1)
    unknown = sorted(names - set(REDUCTIONS))
    if unknown:
        raise RuleInputError(
            f"{rule!r} names unknown reductions {unknown} (expected some of: "
            f"{', '.join(REDUCTIONS)}; a new one is an entry of theory.reductions)"
        )
    if not set(rule.vectors) <= set(VECTORS) or rule.transfer not in TRANSFERS:
        raise RuleInputError(
            f"{rule!r}: vectors {sorted(rule.vectors)} (expected some of {sorted(VECTORS)}) "
            f"or transfer {rule.transfer!r} (expected one of {', '.join(TRANSFERS)})"
        )


def _runs(rule: StepRule, problems: list[Any], iters: int) -> list[tuple[str, Any, Any]]:
    """(scaling, problem, trajectory) of the rule in each scaled space, no momentum."""
    out = []
    for p in problems:
        for name, make in SCALINGS.items():
            opt = parameter_scaled(rule, make(), name=f"step[{name}]")
            with np.errstate(all="ignore"):
                out.append((name, p, theory.run(opt, p, iters=iters, stop_on_nonfinite=True)))
    return out


def _step_checks(runs: list[tuple[str, Any, Any]], iters: int) -> list[Check]:
    bad = next(
        (f"{name} scaling on {p.name}: stopped at step {len(t.lr)} (a non-finite step)"
         for name, p, t in runs if len(t.lr) < iters),
        None,
    ) or next(
        (f"{name} scaling on {p.name}: lr = {t.lr[~(np.isfinite(t.lr) & (t.lr >= 0))][0]!r}"
         for name, p, t in runs if not np.all(np.isfinite(t.lr) & (t.lr >= 0))),
        None,
    )  # fmt: skip
    return [Check("steps finite and non-negative", bad is None,
                  bad or f"{len(runs)} runs of {iters} steps")]  # fmt: skip


def _invariance_checks(rule: StepRule, iters: int = 60) -> list[Check]:
    problems = [synthetic.lad(30, 6, 0.0, seed=1), synthetic.hinge(30, 6, 2.0, seed=2)]
    scale_dev = perm_dev = 0.0
    for p in problems:
        x0 = p.x0 + np.linspace(-1, 1, p.n)
        perm = np.random.default_rng(0).permutation(p.n)

        def run(scaling: Any, problem: Any, start: np.ndarray) -> np.ndarray:
            opt = parameter_scaled(rule, scaling)
            return theory.run(opt, problem, x0=start, iters=iters, stop_on_nonfinite=True).x

        a = run(rules.adam(), p, x0)
        b = run(rules.uniformly_scaled(rules.adam(), 7.3), p, x0)
        c = run(rules.adam(), permuted(p, perm), x0[perm])
        if a.shape != b.shape or a.shape != c.shape:
            return [Check("invariances", False, "runs stopped at different steps")]
        ref = max(float(np.max(np.abs(a))), 1e-300)
        scale_dev = max(scale_dev, float(np.max(np.abs(a - b))) / ref)
        perm_dev = max(perm_dev, float(np.max(np.abs(a[:, perm] - c))) / ref)
    return [
        Check("uniform-scale invariance", scale_dev <= 1e-9,
              f"max relative deviation {scale_dev:.1e} (Adam's alpha -> 7.3 alpha)"),
        Check("permutation equivariance", perm_dev <= 1e-9,
              f"max relative deviation {perm_dev:.1e}"),
    ]  # fmt: skip


def _claims(runs: list[tuple[str, Any, Any]]) -> tuple[Check, list[str], list[str]]:
    applied, failed, count = set(), set(), 0
    for _, p, traj in runs:
        sol = p.solve()
        for claim in CLAIMS.values():
            if claim.kind != "theorem" or not claim.applies(traj, p):
                continue
            count += 1
            applied.add(claim.id)
            if not claim.check(traj, p, sol).holds:
                failed.add(claim.id)
    detail = f"{count} checks; theorems that apply: {', '.join(sorted(applied)) or 'none'}"
    if failed:
        detail += f"; FAILED: {', '.join(sorted(failed))}"
    return (
        Check("claims of docs/spec.md section 4", not failed, detail),
        sorted(applied),
        sorted(failed),
    )


def _progress(runs: list[tuple[str, Any, Any]]) -> Check:
    """Geometric mean of final gap / start gap per scaling (measured)."""
    ratios: dict[str, list[float]] = {}
    for name, p, traj in runs:
        sol = p.solve()
        start, end = traj.f[0] - sol.f, np.min(traj.f) - sol.f
        if start > 0:
            ratios.setdefault(name, []).append(max(end, 1e-16) / start)
    parts = [f"{k} {math.exp(np.mean(np.log(v))):.1e}" for k, v in ratios.items()]
    return Check("best gap / start gap (geometric mean)", None, ", ".join(parts))


def _torch_check(rule: StepRule, iters: int = 40) -> Check:
    try:
        import torch

        from paramscale import torch_impl

        p = synthetic.lad(30, 6, 1.0, seed=3)
        x0 = p.x0 + np.linspace(-1, 1, p.n)
        opt_np = parameter_scaled(rule, rules.adam())
        ours = theory.run(opt_np, p, x0=x0, iters=iters).x
        worst = 0.0
        for foreach in (True, False):
            params = [torch.nn.Parameter(torch.tensor(part)) for part in np.split(x0, [3])]
            opt = torch_impl.ParameterScaled(params, rule, "adam", foreach=foreach)
            xs = [x0]
            for _ in range(iters):
                x = torch.cat([q.detach() for q in params]).numpy().copy()
                for q, part in zip(params, np.split(p.grad(x), [3]), strict=True):
                    q.grad = torch.tensor(part)
                opt.step(loss=p.f(x))
                xs.append(torch.cat([q.detach() for q in params]).numpy().copy())
            dev = float(np.max(np.abs(np.array(xs) - ours)) / max(np.max(np.abs(ours)), 1e-300))
            worst = max(worst, dev)
    except Exception as exc:
        return Check("NumPy / torch agreement", False, f"fails on torch tensors ({exc})")
    return Check(
        "NumPy / torch agreement", worst <= 1e-9, f"max relative deviation {worst:.1e} "
        "(per-tensor and foreach paths)"
    )  # fmt: skip


def validate_step_rule(
    rule: Any, iters: int = 150, spec: str | None = None, problems: list[Any] | None = None
) -> RuleReport:
    """Run every check on the step rule ``rule``; see the module docstring."""
    check_step_interface(rule)
    report = RuleReport(spec or type(rule).__name__)
    problems = problems or runner.default_problems(quick=True)
    runs = _runs(rule, problems, iters)
    report.checks += _step_checks(runs, iters)
    report.checks += _invariance_checks(rule)
    claims, report.theorems, report.failed_claims = _claims(runs)
    report.checks += [claims, _progress(runs), _torch_check(rule)]
    return report


def write_step_report(report: RuleReport, rule: Any, out: Path, problems: list[Any] | None = None):
    """The Markdown report and a figure: a panel per problem (four of the quick suite, or
    the given ones), the rule's best gap in the identity, Adam and AMSGrad spaces."""
    from paramscale.figures.style import PALETTE, pyplot, save_figure

    out.mkdir(parents=True, exist_ok=True)
    problems = (problems or runner.default_problems(quick=True))[:4]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(problems), figsize=(3.6 * len(problems), 3.0),
                             squeeze=False, layout="constrained")  # fmt: skip
    colours = dict(zip(SCALINGS, (PALETTE[5], "#000000", PALETTE[2]), strict=True))
    for ax, (name, p, traj) in zip(
        [a for a in axes[0] for _ in SCALINGS], _runs(rule, problems, 200), strict=True
    ):
        sol = p.solve()
        best = np.minimum.accumulate(np.maximum(traj.f - sol.f, 1e-16))
        ax.loglog(np.arange(1, len(best) + 1), best, label=name, color=colours[name])
        ax.set_title(p.name, fontsize=8)
        ax.set_xlabel("step k", fontsize=8)
        ax.set_ylabel("best f - f*", fontsize=8)
    axes[0, 0].legend(title="scaling", fontsize=7, frameon=False)
    fig.suptitle(f"{report.rule}: the step rule in three scaled spaces", fontsize=10)
    png, _ = save_figure(fig, out, "rate_curves")
    md = out / "report.md"
    md.write_text(report.markdown() + f"\n![rate curves]({png.name})\n")
    return [md, png]
