"""The convergence figures of ``paramscale plot``: ``rate_curves`` (suboptimality against k,
each theorem's bound dashed in its method's colour, Nesterov's lower bound on his own
function), ``learning_rates`` (the learning-rate-free methods' estimated step, paper Fig. 1)
and ``tightness`` (bound / observed against k)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from paramscale.figures.style import METHOD_COLOURS, on_log_axis, pyplot, save_figure
from paramscale.figures.tidy import Rows


def _rate_methods(problem: Any, sol: Any, iters: int) -> dict[str, tuple[Any, str]]:
    from paramscale.theory import optimizers
    from paramscale.theory import scaling as rules

    tol = 1e-9 * max(1.0, abs(sol.f)) + 10 * sol.gap
    D = problem.distance(problem.x0)
    return {
        "sgd(C2 step)": (optimizers.sgd(lr=D / (problem.lipschitz * math.sqrt(iters))), "C2"),
        "sps": (optimizers.sps(sol.f, c=1.0, f_star_tol=tol), "C1"),
        "ps_sps[amsgrad]": (
            optimizers.ps_sps(sol.f, c=1.0, scaling=rules.amsgrad(), f_star_tol=tol),
            "A5",
        ),
        "dadapt_sgd": (optimizers.dadapt_sgd(), "B2"),
        "ps_dadapt_sgd[amsgrad]": (
            optimizers.ps_dadapt_sgd(momentum=0.0, scaling=rules.amsgrad()),
            "B2",
        ),
    }


def rate_curve_data(problems: list[Any], iters: int) -> Rows:
    from paramscale import theory
    from paramscale.proofs_check.claims import bound_series
    from paramscale.proofs_check.quantities import nesterov_lower_bound

    rows: Rows = []
    for p in problems:
        sol = p.solve()
        for method, (opt, claim) in _rate_methods(p, sol, iters).items():
            with np.errstate(all="ignore"):
                traj = theory.run(opt, p, iters=iters, stop_on_nonfinite=True)
                series = bound_series(claim, traj, p, sol)
            # Nesterov's lower bound (Thm 3.2.1, claim L1) bounds his own function, from 0:
            # built for p active coordinates, every step k <= p - 1 stays above the level
            # of K = p - 1; drawn there only
            lower = np.full(len(series["k"]), np.nan)
            if p.family == "nesterov_worst" and np.all(p.x0 == 0):
                covered = series["k"] < p.params["p"]
                lower[covered] = nesterov_lower_bound(p, p.params["p"] - 1)
            for k, obs, bd, lo in zip(
                series["k"], series["observed"], series["bound"], lower, strict=True
            ):
                rows.append(
                    {
                        "family": p.family,
                        "problem": p.name,
                        "method": method,
                        "claim": claim,
                        "k": int(k),
                        "observed": obs,
                        "bound": bd,
                        "lower_bound": lo,
                    }
                )
    return rows


PANELS = {  # the methods each column of the rate curves shows: at most 5 curves a panel
    "Polyak steps": ("sgd(C2 step)", "sps", "ps_sps[amsgrad]"),
    "D-Adaptation": ("dadapt_sgd", "ps_dadapt_sgd[amsgrad]"),
}


def rate_curve_plot(rows: Rows, out: Path) -> list[Path]:
    """Small multiples: a row per problem, a column per group of methods (``PANELS``); each
    method's observed curve (solid) and its theorem's bound (dashed, its colour; o: C2 at
    the final K); Nesterov's lower bound (dotted) on his own function only, for k < n."""
    plt = pyplot()
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    fig, axes = plt.subplots(
        len(problems), len(PANELS), figsize=(4.6 * len(PANELS), 2.1 * len(problems) + 1.6),
        squeeze=False, sharex=True, layout="constrained",
    )  # fmt: skip
    for i, (row, prob) in enumerate(zip(axes, problems, strict=True)):
        sub = [r for r in rows if r["problem"] == prob]
        start = max(r["observed"] for r in sub if r["k"] == 1)
        floor = min(max(r["observed"], 1e-16) for r in sub if np.isfinite(r["observed"]))
        for ax, (title, methods) in zip(row, PANELS.items(), strict=True):
            for method in methods:
                m = [r for r in sub if r["method"] == method]
                if not m:
                    continue
                k = np.array([r["k"] for r in m])
                obs = on_log_axis(np.maximum(np.array([r["observed"] for r in m], float), 1e-16))
                bd = on_log_axis([r["bound"] for r in m])
                c = METHOD_COLOURS.get(method, "grey")
                ax.loglog(k, obs, color=c, lw=1.5, label=method)
                bound_label = f"{m[0]['claim']} bound"
                if np.isfinite(bd).sum() == 1:
                    ax.loglog(k[np.isfinite(bd)], bd[np.isfinite(bd)], "o", color=c, mfc="none",
                              label=bound_label)  # fmt: skip
                else:
                    ax.loglog(k, bd, "--", color=c, lw=1, label=bound_label)
            lower = [r for r in sub if r["method"] == methods[0] and np.isfinite(r["lower_bound"])]
            if lower:
                ax.loglog([r["k"] for r in lower], [r["lower_bound"] for r in lower], ":",
                          color="black", lw=2, label="Nesterov's lower bound")  # fmt: skip
            # bounds far above the start and the last decades of a fast run are clipped
            ax.set_ylim(max(floor, start * 1e-8) / 3, 300 * start)
            ax.tick_params(which="both", labelsize=7)
            if i == 0:
                ax.set_title(title, fontsize=10)
                ax.legend(fontsize=6.5, frameon=False, loc="lower left", ncols=2)
            if ax is row[0]:
                ax.set_ylabel(f"{sub[0]['family']}\nf - f*", fontsize=8)
            if i == len(problems) - 1:
                ax.set_xlabel("step k", fontsize=8)
    fig.suptitle(
        "Observed f - f* (solid: best so far; D-Adaptation: its weighted average iterate) "
        "and each\ntheorem's bound (dashed, same colour), on the convex suite",
        fontsize=9,
    )
    return save_figure(fig, out, "rate_curves")


# -- 2. learning rates ---------------------------------------------------------------------


def learning_rate_data(problems: list[Any], iters: int) -> Rows:
    from paramscale import theory
    from paramscale.theory import optimizers
    from paramscale.theory import scaling as rules

    rows: Rows = []
    for p in problems:
        sol = p.solve()
        tol = 1e-9 * max(1.0, abs(sol.f)) + 10 * sol.gap
        methods = {
            "sps": optimizers.sps(sol.f, f_star_tol=tol),
            "ps_sps[adam]": optimizers.ps_sps(sol.f, scaling=rules.adam(), f_star_tol=tol),
            "dadapt_sgd": optimizers.dadapt_sgd(momentum=0.9),
            "ps_dadapt_sgd[adam]": optimizers.ps_dadapt_sgd(),
            "ps_dadapt_sgd[adam,literal]": optimizers.ps_dadapt_sgd(
                transfer="max", normaliser="max_alpha"
            ),
        }
        for name, opt in methods.items():
            with np.errstate(all="ignore"):
                traj = theory.run(opt, p, iters=iters, stop_on_nonfinite=True)
            # the step a coordinate of median scale sees: lam_k / median(alpha_k)**2
            eff = traj.lr / np.median(traj.alpha, axis=1) ** 2
            d = traj.info.get("d", np.full(traj.iters, np.nan))
            for k in range(traj.iters):
                rows.append(
                    {"problem": p.name, "method": name, "k": k + 1, "lr": eff[k], "d": d[k]}
                )
    return rows


def learning_rate_plot(rows: Rows, out: Path) -> list[Path]:
    plt = pyplot()
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    fig, axes = plt.subplots(1, len(problems), figsize=(5.5 * len(problems), 3.8), squeeze=False)
    for ax, prob in zip(axes.flat, problems, strict=True):
        sub = [r for r in rows if r["problem"] == prob]
        first = on_log_axis([r["lr"] for r in sub if r["k"] == 1])
        top = 1e4 * np.nanmax(first)  # a curve that blows up leaves the panel, marked so
        for method in dict.fromkeys(r["method"] for r in sub):
            m = [r for r in sub if r["method"] == method]
            lr = on_log_axis([r["lr"] for r in m])
            off = np.nanmax(lr) > top
            ax.loglog(
                [r["k"] for r in m],
                lr,
                color=METHOD_COLOURS.get(method, "grey"),
                label=method + (" (off the top)" if off else ""),
            )
        ax.set_ylim(top=top)
        ax.set_title(prob, fontsize=8)
        ax.set_xlabel("step k")
        ax.set_ylabel("estimated step lam_k / median(alpha_k)^2")
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Learning rates estimated by the learning-rate-free methods")
    return save_figure(fig, out, "learning_rates")


# -- 3. tightness --------------------------------------------------------------------------


def tightness_plot(rows: Rows, out: Path) -> list[Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        m = [r for r in rows if r["method"] == method and r["observed"] > 0]
        ratio = on_log_axis([r["bound"] / r["observed"] for r in m])
        ax.loglog(
            [r["k"] for r in m],
            ratio,
            color=METHOD_COLOURS.get(method, "grey"),
            label=f"{method} ({m[0]['claim'] if m else ''})",
        )
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xlabel("step k")
    ax.set_ylabel("bound / observed (1 = tight)")
    ax.set_title(rows[0]["problem"], fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, out, "tightness")
