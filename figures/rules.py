"""The scaling-rule figures of ``paramscale plot``: ``invariance`` (uniform-scale
invariance, and one coordinate converging early: PS-DA-SGD's transfers against the naive
conversion) and ``rule_grid`` (scaling rule x step-size rule, a user's rules as more
columns)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from paramscale.figures.style import METHOD_COLOURS, PALETTE, on_log_axis, pyplot, save_figure
from paramscale.figures.tidy import Rows


def invariance_data(iters: int) -> Rows:
    """Left: PS-DA-SGD on badly scaled LAD with alpha, 1e-3 alpha and 1e3 alpha (the same
    iterates). Right: one coordinate's gradient becomes exactly 0 for ever under
    Adam(beta2 = 0.9), on a problem where nothing else changes the other coordinates'
    metric (``steady_stopping``): their step under the default transfer, the ``min``
    transfer and the naive conversion of paper section 4.1."""
    from paramscale import synthetic, theory
    from paramscale.synthetic.transforms import steady_stopping
    from paramscale.theory import optimizers
    from paramscale.theory import scaling as rules

    p = synthetic.lad(60, 8, 2.0, seed=0)
    sol = p.solve()
    rows: Rows = []
    for t in (1.0, 1e-3, 1e3):
        rule = rules.adam() if t == 1.0 else rules.uniformly_scaled(rules.adam(), t)
        traj = theory.run(optimizers.ps_dadapt_sgd(scaling=rule), p, iters=iters)
        for k, f in enumerate(traj.f):
            rows.append(
                {"panel": "invariance", "series": f"alpha x {t:g}", "k": k, "value": f - sol.f}
            )
    early = steady_stopping(n=6, seed=0)
    for label, kw in (
        ("PS-DA-SGD (default)", {}),
        ("transfer='min'", {"transfer": "min"}),
        ("naive conversion", {"normaliser": "g0/alpha_k", "transfer": "none"}),
    ):
        traj = theory.run(
            optimizers.ps_dadapt_sgd(scaling=rules.adam(beta2=0.9), **kw), early, iters=iters
        )
        step = np.median(traj.lr[:, None] / traj.alpha[:, 1:] ** 2, axis=1)
        for k, v in enumerate(step):
            rows.append({"panel": "early", "series": label, "k": k + 1, "value": v})
    return rows


def invariance_plot(rows: Rows, out: Path) -> list[Path]:
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    styles = iter(["-", "--", ":"])
    for s in dict.fromkeys(r["series"] for r in rows if r["panel"] == "invariance"):
        m = [r for r in rows if r["series"] == s]
        a1.loglog(
            [r["k"] + 1 for r in m],
            on_log_axis([max(r["value"], 1e-16) for r in m]),
            next(styles),
            lw=2,
            label=s,
            color=METHOD_COLOURS["ps_dadapt_sgd[adam]"],
        )
    a1.set_title("PS-DA-SGD: alpha -> t alpha leaves the trajectory unchanged", fontsize=9)
    a1.set_xlabel("step k")
    a1.set_ylabel("f(x_k) - f*")
    a1.legend(fontsize=8, frameon=False)
    colours = {
        "PS-DA-SGD (default)": METHOD_COLOURS["ps_dadapt_sgd[adam]"],
        "transfer='min'": PALETTE[3],
        "naive conversion": "black",
    }
    for s in dict.fromkeys(r["series"] for r in rows if r["panel"] == "early"):
        m = [r for r in rows if r["series"] == s]
        a2.loglog(
            [r["k"] for r in m], on_log_axis([r["value"] for r in m]), color=colours[s], label=s
        )
    a2.set_title("one coordinate stops (Adam, beta2 = 0.9): the others' step", fontsize=9)
    a2.set_xlabel("step k")
    a2.set_ylabel("median step of the other coordinates")
    a2.legend(fontsize=8, frameon=False)
    return save_figure(fig, out, "invariance")


# -- 5. rule grid --------------------------------------------------------------------------


def rule_grid_data(problems: list[Any], iters: int, extra: dict[str, Any] | None = None) -> Rows:
    """Scaling rule x step-size rule: the median over ``problems`` of min f - f* over
    f(x0) - f*; ``extra``: a user's rules (name -> rule object), as more columns."""
    from paramscale import theory
    from paramscale.theory import optimizers
    from paramscale.theory import scaling as rules

    by_name = {
        "identity": rules.identity,
        "adagrad": rules.adagrad,
        "rmsprop": rules.rmsprop,
        "adam": rules.adam,
        "amsgrad": rules.amsgrad,
        "lars": rules.lars,
        "lamb": rules.lamb,
        **{name: (lambda rule=rule: rule) for name, rule in (extra or {}).items()},
    }
    steps: dict[str, Callable[[Any, Any], Any]] = {
        "polyak (PS-SPS)": lambda sol, r: optimizers.ps_sps(
            sol.f, scaling=r, f_star_tol=1e-9 * max(1.0, abs(sol.f)) + 10 * sol.gap
        ),
        "dadapt (PS-DA-SGD)": lambda sol, r: optimizers.ps_dadapt_sgd(scaling=r),
        "dadapt, literal": lambda sol, r: optimizers.ps_dadapt_sgd(
            scaling=r, transfer="max", normaliser="max_alpha"
        ),
    }
    rows: Rows = []
    for step_name, make in steps.items():
        for rule_name, rule in by_name.items():
            rel = []
            for p in problems:
                sol = p.solve()
                with np.errstate(all="ignore"):
                    traj = theory.run(make(sol, rule()), p, iters=iters, stop_on_nonfinite=True)
                h = traj.f - sol.f
                diverged = "stopped_at" in traj.info
                rel.append(np.inf if diverged else max(np.min(h), 0) / max(h[0], 1e-300))
            rows.append(
                {
                    "step_rule": step_name,
                    "scaling": rule_name,
                    "median_relative_gap": float(np.median(rel)),
                    "diverged": int(np.sum(np.isinf(rel))),
                    "problems": len(problems),
                }
            )
    return rows


def rule_grid_plot(rows: Rows, out: Path) -> list[Path]:
    plt = pyplot()
    steps = list(dict.fromkeys(r["step_rule"] for r in rows))
    rules = list(dict.fromkeys(r["scaling"] for r in rows))
    z = np.array(
        [
            [
                next(
                    r["median_relative_gap"]
                    for r in rows
                    if r["step_rule"] == s and r["scaling"] == ru
                )
                for ru in rules
            ]
            for s in steps
        ],
        float,
    )
    fig, ax = plt.subplots(figsize=(1.2 * len(rules) + 2, 0.8 * len(steps) + 1.5))
    shown = np.log10(np.clip(z, 1e-12, 1e3))
    im = ax.imshow(shown, cmap="cividis_r", aspect="auto")
    for i in range(len(steps)):
        for j in range(len(rules)):
            ax.text(
                j,
                i,
                "div" if not np.isfinite(z[i, j]) else f"{z[i, j]:.3g}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shown[i, j] > -3 else "black",
            )
    ax.set_xticks(range(len(rules)), rules)
    ax.set_yticks(range(len(steps)), steps)
    fig.colorbar(im, label="log10 median (min f - f*) / (f(x_0) - f*)")
    ax.set_title("Rule-comparison grid (median over the problems; lower is better)", fontsize=9)
    return save_figure(fig, out, "rule_grid")
