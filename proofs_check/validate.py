"""``validate_rule``: put a new scaling rule through everything the theory needs
(docs/spec.md section 8) and say which theorems now apply.

1. interface and output shape (a wrong shape is bad input, not a finding);
2. positivity and finiteness of alpha on gradient histories from the suite, plus zero,
   tiny and huge gradients;
3. monotonicity (the hypothesis of A1/A4/B1 and of A5's a-priori form), when the rule
   declares it, and boundedness (max alpha**2 / G_inf);
4. uniform-scale invariance and permutation equivariance of PS-SPS and PS-DA-SGD on it;
5. every claim of docs/spec.md section 4 on the quick suite, with the rule in the sweep;
6. NumPy / torch agreement when the rule runs on torch tensors;
7. on a failed theorem, a hypothesis search for the smallest counterexample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paramscale import synthetic, theory
from paramscale.loading import RuleInputError
from paramscale.proofs_check import runner, search
from paramscale.synthetic.transforms import permuted
from paramscale.theory import optimizers
from paramscale.theory import scaling as rules


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not applicable
    detail: str


@dataclass
class RuleReport:
    rule: str
    checks: list[Check] = field(default_factory=list)
    theorems: list[str] = field(default_factory=list)
    failed_claims: list[str] = field(default_factory=list)
    counterexample: str = ""

    @property
    def passed(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def markdown(self) -> str:
        mark = {True: "pass", False: "**FAIL**", None: "n/a"}
        lines = [
            f"# validate-rule: `{self.rule}`",
            "",
            f"Verdict: **{'passes' if self.passed else 'fails'}**.",
            "",
            "| check | result | detail |",
            "|---|---|---|",
        ]
        lines += [f"| {c.name} | {mark[c.ok]} | {c.detail} |" for c in self.checks]
        lines += [
            "",
            "Theorems that apply to this rule: "
            + (", ".join(self.theorems) if self.theorems else "none"),
            "",
        ]
        if self.failed_claims:
            lines += ["Claims that failed on the suite: " + ", ".join(self.failed_claims), ""]
        if self.counterexample:
            lines += ["Smallest counterexample found:", "", "```", self.counterexample, "```"]
        return "\n".join(lines) + "\n"


def check_interface(rule: Any) -> None:
    """A rule has the interface and gives alpha of the gradient's shape, else RuleInputError."""
    if not isinstance(rule, rules.ScalingRule):
        raise RuleInputError(
            f"{rule!r} is not a scaling rule (expected attributes name and monotone, and "
            "methods init(x0) and update(state, g, x))"
        )
    x = np.ones(4)
    try:
        alpha, _ = rule.update(rule.init(x), np.arange(1.0, 5.0), x)
    except Exception as exc:
        raise RuleInputError(f"rule {rule.name!r} fails on a 4-vector: {exc}") from exc
    if np.shape(alpha) != (4,):
        raise RuleInputError(
            f"rule {rule.name!r} returned alpha of shape {np.shape(alpha)} for a gradient of "
            "shape (4,) (expected the gradient's shape)"
        )


def _histories(iters: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, gradients, iterates) along SGD runs on the quick suite, plus edge cases."""
    out = []
    for p in runner.default_problems(quick=True):
        traj = theory.run(optimizers.sgd(lr=0.01), p, iters=iters)
        out.append((p.name, traj.grad, traj.x[:-1]))
    rng = np.random.default_rng(0)
    for name, scale in (
        ("zero gradients", 0.0),
        ("tiny gradients", 1e-12),
        ("huge gradients", 1e12),
    ):
        g = scale * rng.standard_normal((iters, 5))
        out.append((name, g, np.ones((iters, 5))))
    return out


def _rule_checks(rule: Any, iters: int) -> list[Check]:
    bad_value, decreasing, worst_bound, largest = None, None, 0.0, 0.0
    for name, gs, xs in _histories(iters):
        state = rule.init(xs[0])
        prev = None
        for k, (g, x) in enumerate(zip(gs, xs, strict=True)):
            try:
                alpha, state = rule.update(state, g, x)
                alpha = np.asarray(alpha, dtype=float)
            except Exception as exc:
                bad_value = bad_value or f"raises at step {k} on {name}: {exc}"
                break
            if not (np.all(np.isfinite(alpha)) and np.all(alpha > 0)):
                bad_value = bad_value or (
                    f"alpha = {float(alpha[~(np.isfinite(alpha) & (alpha > 0))][0])!r} at step {k} "
                    f"on {name}"
                )
                break
            if prev is not None and decreasing is None and np.any(alpha < prev * (1 - 1e-12)):
                decreasing = f"alpha decreases at step {k} on {name}"
            largest = max(largest, float(np.max(alpha**2)))
            g_inf = float(np.max(np.abs(gs[: k + 1])))
            if g_inf >= 1e-6:  # A1's bound alpha**2 <= G_inf + eps, where it is meaningful
                eps = getattr(rule, "eps", 0.0)
                worst_bound = max(worst_bound, float(np.max(alpha**2)) / (g_inf + eps))
            prev = alpha
    checks = [
        Check(
            "alpha positive and finite",
            bad_value is None,
            bad_value or f"on {len(_histories(1))} gradient histories of {iters} steps",
        )
    ]
    if rule.monotone:
        checks.append(
            Check(
                "monotone (as declared)", decreasing is None, decreasing or "alpha never decreased"
            )
        )
    else:
        checks.append(Check("monotone (as declared)", None, "not declared monotone"))
    checks.append(
        Check(
            "bounded",
            math.isfinite(largest),
            f"max alpha^2 = {largest:.3g}; max alpha^2 / (G_inf + eps) = {worst_bound:.3g} "
            "(A1's bound holds where <= 1)",
        )
    )
    return checks


def _invariance_checks(rule: Any, iters: int = 60) -> list[Check]:
    problems = [synthetic.lad(30, 6, 0.0, seed=1), synthetic.hinge(30, 6, 2.0, seed=2)]
    methods = {
        "PS-SPS": lambda r: optimizers.ps_sps(0.0, scaling=r),
        "PS-DA-SGD": lambda r: optimizers.ps_dadapt_sgd(scaling=r),
    }
    checks = []
    for label, make in methods.items():
        scale_dev = perm_dev = 0.0
        for p in problems:
            x0 = p.x0 + np.linspace(-1, 1, p.n)
            a = theory.run(make(rule), p, x0=x0, iters=iters, stop_on_nonfinite=True).x
            b = theory.run(
                make(rules.uniformly_scaled(rule, 7.3)),
                p,
                x0=x0,
                iters=iters,
                stop_on_nonfinite=True,
            ).x
            perm = np.random.default_rng(0).permutation(p.n)
            c = theory.run(
                make(rule), permuted(p, perm), x0=x0[perm], iters=iters, stop_on_nonfinite=True
            ).x
            if a.shape != b.shape or a.shape != c.shape:
                return [Check(f"{label} invariances", False, "runs stopped at different steps")]
            ref = max(float(np.max(np.abs(a))), 1e-300)
            scale_dev = max(scale_dev, float(np.max(np.abs(a - b))) / ref)
            perm_dev = max(perm_dev, float(np.max(np.abs(a[:, perm] - c))) / ref)
        checks.append(
            Check(
                f"{label}: uniform-scale invariance",
                scale_dev <= 1e-9,
                f"max relative deviation {scale_dev:.1e} (alpha -> 7.3 alpha)",
            )
        )
        checks.append(
            Check(
                f"{label}: permutation equivariance",
                perm_dev <= 1e-9,
                f"max relative deviation {perm_dev:.1e}",
            )
        )
    return checks


def _torch_check(rule: Any, iters: int = 40) -> Check:
    try:
        import torch

        from paramscale import torch_impl

        p = synthetic.lad(30, 6, 1.0, seed=3)
        x0 = p.x0 + np.linspace(-1, 1, p.n)
        ours = theory.run(optimizers.ps_dadapt_sgd(scaling=rule), p, x0=x0, iters=iters).x
        param = torch.nn.Parameter(torch.tensor(x0))
        opt = torch_impl.PSDASGD([param], scaling=rule)
        xs = [x0]
        for _ in range(iters):
            x = param.detach().numpy().copy()
            param.grad = torch.tensor(p.grad(x))
            opt.step()
            xs.append(param.detach().numpy().copy())
        dev = float(np.max(np.abs(np.array(xs) - ours)) / max(np.max(np.abs(ours)), 1e-300))
    except Exception as exc:
        return Check("NumPy / torch agreement", None, f"does not run on torch tensors ({exc})")
    return Check("NumPy / torch agreement", dev <= 1e-10, f"max relative deviation {dev:.1e}")


def validate_rule(
    rule: Any,
    iters: int = 150,
    search_examples: int = 100,
    spec: str | None = None,
    problems: list[Any] | None = None,
) -> RuleReport:
    """Run every check on ``rule``; see the module docstring. ``spec``: where the rule was
    loaded from (``module:attr``): the counterexample's reproduce command names it, so that
    ``paramscale check --case`` can load it again. ``problems``: the claims' problems
    (default: the quick suite)."""
    check_interface(rule)
    name = spec or f"user:{rule.name}"
    report = RuleReport(rule.name)
    report.checks += _rule_checks(rule, iters)
    if any(c.ok is False for c in report.checks[:1]):
        return report  # alpha is not a valid scaling: the rest would only repeat it
    report.checks += _invariance_checks(rule)
    with runner.extra_rule(name, lambda: rule):
        records = [
            r
            for r in runner.sweep(
                problems or runner.default_problems(quick=True), iters, progress=False
            )
            if r.rule == name
        ]
        failures = sorted(
            {r.result.claim for r in records if not r.result.holds and r.kind == "theorem"}
        )
        applied = sorted({r.result.claim for r in records if r.kind == "theorem"})
        report.theorems = applied
        report.failed_claims = failures
        report.checks.append(
            Check(
                "claims of docs/spec.md section 4 on "
                + ("the given problems" if problems else "the quick suite"),
                not failures,
                f"{len(records)} checks; theorems that apply: {', '.join(applied) or 'none'}"
                + (f"; FAILED: {', '.join(failures)}" if failures else ""),
            )
        )
        if failures:
            found = search.search(failures[0], max_examples=search_examples, rules=(name,))
            if found is not None:
                report.counterexample = search.describe(*found)
    report.checks.append(_torch_check(rule))
    return report


def write_report(
    report: RuleReport, rule: Any, out: Path, problems: list[Any] | None = None
) -> list[Path]:
    """The Markdown report and a figure: a row per step rule (PS-SPS, PS-DA-SGD), a column
    per problem (``problems``, else four of the quick suite), the rule in black against the
    identity (plain SPS / DA-SGD), Adam and AMSGrad scalings in the figures' colours."""
    from paramscale.figures.style import PALETTE

    out.mkdir(parents=True, exist_ok=True)
    md = out / "report.md"
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    problems = (problems or runner.default_problems(quick=True))[:4]
    steps = {
        "PS-SPS": lambda sol, r: optimizers.ps_sps(sol.f, scaling=r, f_star_tol=1e-8),
        "PS-DA-SGD": lambda sol, r: optimizers.ps_dadapt_sgd(scaling=r),
    }
    scalings = {  # the user's rule first and wide, so a reference curve on it stays visible
        rule.name: (rule, "#000000", 2.5),
        "identity": (rules.identity(), PALETTE[5], 1.0),
        "adam": (rules.adam(), PALETTE[3], 1.0),
        "amsgrad": (rules.amsgrad(), PALETTE[2], 1.0),
    }
    fig, axes = plt.subplots(
        len(steps), len(problems), figsize=(3.6 * len(problems), 5.6), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for col, p in enumerate(problems):
        sol = p.solve()
        for row, (step_name, make) in enumerate(steps.items()):
            ax = axes[row, col]
            for label, (scaling, colour, width) in scalings.items():
                with np.errstate(all="ignore"):
                    traj = theory.run(make(sol, scaling), p, iters=200, stop_on_nonfinite=True)
                best = np.minimum.accumulate(np.maximum(traj.f - sol.f, 1e-16))
                ax.loglog(np.arange(1, len(best) + 1), best, label=label, color=colour, lw=width)
            ax.set_title(f"{step_name}: {p.name}", fontsize=8)
            ax.set_xlabel("step k", fontsize=8)
            ax.set_ylabel("best f - f*", fontsize=8)
            ax.tick_params(which="both", labelsize=7)
    axes[0, 0].legend(fontsize=7, frameon=False)
    fig.suptitle(
        f"{rule.name} (black) against the identity, Adam and AMSGrad scalings", fontsize=10
    )
    png = out / "rate_curves.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    md.write_text(report.markdown() + f"\n![rate curves]({png.name})\n")
    return [md, png]
