"""``paramscale plot``: the figures, each drawn from the CSV it writes (benchopt style: the
data is a tidy table, the plot is made from the table).

1. ``rate_curves``: suboptimality against k, log-log, a row per problem and a column per
   family of methods (Polyak steps, D-Adaptation), each theorem's bound dashed in its
   method's colour (A5, B2, C1, C2) and Nesterov's lower bound dotted on his own function;
2. ``learning_rates``: the estimated step of the learning-rate-free methods (paper Fig. 1);
3. ``tightness``: bound / observed against k;
4. ``invariance``: uniform-scale invariance, and one coordinate converging early
   (PS-DA-SGD's transfers against the naive conversion);
5. ``rule_grid``: scaling rule x step-size rule, median final relative suboptimality, a
   user's rules as more columns.

Longer than the project's ~400 lines: five figures, each a data function (CSV rows) and a
plot function made from the rows, sharing the palette and the saving helpers.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# Okabe-Ito: colour-blind safe; one colour per method, the same in every figure
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
METHOD_COLOURS = {
    "sgd(C2 step)": PALETTE[6],
    "sps": PALETTE[1],
    "ps_sps[amsgrad]": PALETTE[0],
    "ps_sps[adam]": PALETTE[5],
    "dadapt_sgd": PALETTE[3],
    "ps_dadapt_sgd[amsgrad]": PALETTE[2],
    "ps_dadapt_sgd[adam]": PALETTE[4],
    "ps_dadapt_sgd[adam,literal]": "#8C8C8C",  # grey: yellow is unreadable on white
    "ps_dadapt_sgd[adam,naive]": PALETTE[6],
}
Rows = list[dict[str, Any]]


def write_csv(rows: Rows, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(rows)


def read_csv(path: Path) -> Rows:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k, v in r.items():
            try:
                r[k] = float(v)
            except ValueError:
                pass
    return rows


def _finite(values: Any) -> np.ndarray:
    """Values for a log axis: non-finite, non-positive and astronomically large (> 1e100:
    diverged runs, bounds with pi_k ~ e^325) entries are not drawn; the CSV keeps them."""
    v = np.asarray(values, dtype=float)
    return np.where(np.isfinite(v) & (v > 0) & (v < 1e100), v, np.nan)


def save_figure(fig: Any, out: Path, name: str) -> list[Path]:
    """``fig`` as ``out/name.png`` and ``.pdf``, then closed; the two paths."""
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def pyplot() -> Any:
    """matplotlib's pyplot on a non-interactive backend (Agg, unless one is chosen)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


# -- 1. rate curves ------------------------------------------------------------------------


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
                obs = _finite(np.maximum(np.array([r["observed"] for r in m], float), 1e-16))
                bd = _finite([r["bound"] for r in m])
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
        first = _finite([r["lr"] for r in sub if r["k"] == 1])
        top = 1e4 * np.nanmax(first)  # a curve that blows up leaves the panel, marked so
        for method in dict.fromkeys(r["method"] for r in sub):
            m = [r for r in sub if r["method"] == method]
            lr = _finite([r["lr"] for r in m])
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
        ratio = _finite([r["bound"] / r["observed"] for r in m])
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


# -- 4. invariance and early-converging coordinate ------------------------------------------


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
            _finite([max(r["value"], 1e-16) for r in m]),
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
        a2.loglog([r["k"] for r in m], _finite([r["value"] for r in m]), color=colours[s], label=s)
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


# -- all of them ---------------------------------------------------------------------------


def make_all(
    out: Path,
    iters: int = 300,
    quick: bool = False,
    progress: Callable[[str], None] = print,
    problems: list[Any] | None = None,
    rules: dict[str, Any] | None = None,
    pep: bool = False,
) -> list[Path]:
    """Every figure into ``out``; ``problems``: a user's problems instead of the default
    suite (Nesterov's function is then left out), ``rules``: a user's scaling rules (name ->
    rule), added to the rule grid as columns; ``pep``: the certified worst cases too
    (N <= 4 quick, else 8)."""
    from paramscale import synthetic

    out.mkdir(parents=True, exist_ok=True)
    if problems is None:
        fams = ["lad", "hinge", "max_affine", "huber", "logistic", "l1_ball"]
        problems = [synthetic.FAMILIES[f](scale=2.0, seed=0) for f in fams]
        problems.append(synthetic.nesterov_worst())
        if quick:
            problems = problems[:2] + problems[-1:]
    if quick:
        iters = min(iters, 60)
    convex = [p for p in problems if p.family != "nesterov_worst"] or problems
    lr_problems = [convex[0]] + [p for p in problems[-1:] if p is not convex[0]]
    written: list[Path] = []
    jobs = [
        ("rate_curves", lambda: rate_curve_data(problems, iters), rate_curve_plot),
        (
            "learning_rates",
            lambda: learning_rate_data(lr_problems, iters),
            learning_rate_plot,
        ),
        (
            "tightness",
            lambda: [
                r for r in rate_curve_data(convex[:1], iters) if r["method"] != "sgd(C2 step)"
            ],
            tightness_plot,
        ),
        ("invariance", lambda: invariance_data(iters), invariance_plot),
        (
            "rule_grid",
            lambda: rule_grid_data(convex, min(iters, 200), rules),
            rule_grid_plot,
        ),
    ]
    if pep:
        from paramscale.figures.pep import pep_data, pep_plot

        jobs.append(("pep_worst_cases", lambda: pep_data(4 if quick else 8), pep_plot))
    for name, data, plot in jobs:
        progress(f"  {name}")
        path = out / f"{name}.csv"
        write_csv(data(), path)
        written.append(path)
        written += plot(read_csv(path), out)  # the figure is drawn from the CSV
    return written
