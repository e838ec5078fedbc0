"""``paramscale plot``: the figures, each drawn from the CSV it writes (benchopt style: the
data is a tidy table, the plot is made from the table).

1. ``rate_curves``: suboptimality against k, log-log, one panel per family, every method,
   its theorem's bound dashed (A5, B2, C1, C2) and Nesterov's lower bound dotted;
2. ``learning_rates``: the estimated step of the learning-rate-free methods (paper Fig. 1);
3. ``tightness``: bound / observed against k;
4. ``invariance``: uniform-scale invariance, and one coordinate converging early
   (PS-DA-SGD against the naive conversion);
5. ``rule_grid``: scaling rule x step-size rule, median final relative suboptimality.

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
    "ps_dadapt_sgd[adam,literal]": PALETTE[7],
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


def _save(fig: Any, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _plt():
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
    from paramscale.proofs_check.claims import bound_series

    from paramscale import theory

    rows: Rows = []
    for p in problems:
        sol = p.solve()
        for method, (opt, claim) in _rate_methods(p, sol, iters).items():
            with np.errstate(all="ignore"):
                traj = theory.run(opt, p, iters=iters, stop_on_nonfinite=True)
                series = bound_series(claim, traj, p, sol)
            # Nesterov's lower bound over the class of G-Lipschitz functions with
            # ||x0 - x*|| = D (Thm 3.2.1): for every K some function in dimension K + 1 keeps
            # every first-order method at least this far from f* after K steps
            G, D = p.lipschitz, p.distance(p.x0)
            lower = G * D / (2 * (2 + np.sqrt(series["k"] + 1)))
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


def rate_curve_plot(rows: Rows, out: Path) -> list[Path]:
    plt = _plt()
    families = list(dict.fromkeys(r["family"] for r in rows))
    cols = min(3, len(families))
    nrows = math.ceil(len(families) / cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(5 * cols, 3.4 * nrows + 0.8), squeeze=False, layout="constrained"
    )
    for ax, fam in zip(axes.flat, families, strict=False):
        sub = [r for r in rows if r["family"] == fam]
        start = max(r["observed"] for r in sub if r["k"] == 1)
        for method in dict.fromkeys(r["method"] for r in sub):
            m = [r for r in sub if r["method"] == method]
            k = np.array([r["k"] for r in m])
            obs = _finite(np.maximum(np.array([r["observed"] for r in m], float), 1e-16))
            bd = _finite([r["bound"] for r in m])
            c = METHOD_COLOURS.get(method, "grey")
            ax.loglog(k, obs, color=c, lw=1.5, label=f"{method}")
            if np.isfinite(bd).sum() == 1:
                ax.loglog(k[np.isfinite(bd)], bd[np.isfinite(bd)], "o", color=c, mfc="none")
            else:
                ax.loglog(k, bd, "--", color=c, lw=1, label=f"{m[0]['claim']} bound")
        first = [r for r in sub if r["method"] == sub[0]["method"]]
        ax.loglog(
            [r["k"] for r in first],
            _finite([r["lower_bound"] for r in first]),
            ":",
            color="black",
            lw=2,
            label="Nesterov lower bound (class worst case)",
        )
        ax.set_ylim(top=1e4 * start)  # diverged runs and vacuous bounds run off the top
        ax.set_title(sub[0]["problem"], fontsize=8)
        ax.set_xlabel("step k")
        ax.set_ylabel("f - f*", fontsize=8)
    for ax in list(axes.flat)[len(families) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=4,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.04 * nrows),
    )
    fig.suptitle(
        "Rate curves: observed (solid; best so far, D-Adaptation methods: weighted "
        "average iterate), the theorem's bound (dashed; o: C2 at the final K), "
        "Nesterov's lower bound (dotted)",
        fontsize=10,
    )
    return _save(fig, out, "rate_curves")


# -- 2. learning rates ---------------------------------------------------------------------


def learning_rate_data(problems: list[Any], iters: int) -> Rows:
    from paramscale.theory import optimizers
    from paramscale.theory import scaling as rules

    from paramscale import theory

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
    plt = _plt()
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    fig, axes = plt.subplots(1, len(problems), figsize=(5.5 * len(problems), 3.8), squeeze=False)
    for ax, prob in zip(axes.flat, problems, strict=True):
        for method in dict.fromkeys(r["method"] for r in rows):
            m = [r for r in rows if r["problem"] == prob and r["method"] == method]
            ax.loglog(
                [r["k"] for r in m],
                _finite([r["lr"] for r in m]),
                color=METHOD_COLOURS.get(method, "grey"),
                label=method,
            )
        ax.set_title(prob, fontsize=8)
        ax.set_xlabel("step k")
        ax.set_ylabel("estimated step lam_k / median(alpha_k)^2")
    axes.flat[0].legend(fontsize=7, frameon=False)
    fig.suptitle("Learning rates estimated by the learning-rate-free methods")
    return _save(fig, out, "learning_rates")


# -- 3. tightness --------------------------------------------------------------------------


def tightness_plot(rows: Rows, out: Path) -> list[Path]:
    plt = _plt()
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
    return _save(fig, out, "tightness")


# -- 4. invariance and early-converging coordinate ------------------------------------------


def invariance_data(iters: int) -> Rows:
    from paramscale.theory import optimizers
    from paramscale.theory import scaling as rules

    from paramscale import synthetic, theory

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
    # one coordinate's gradient becomes exactly 0 (its alpha -> sqrt(eps) under Adam)
    from paramscale.synthetic.transforms import stopping_coordinate

    early = stopping_coordinate(p, j=0)
    for label, kw in (
        ("PS-DA-SGD", {}),
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
    plt = _plt()
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
    colours = {"PS-DA-SGD": METHOD_COLOURS["ps_dadapt_sgd[adam]"], "naive conversion": "black"}
    for s in dict.fromkeys(r["series"] for r in rows if r["panel"] == "early"):
        m = [r for r in rows if r["series"] == s]
        a2.loglog([r["k"] for r in m], _finite([r["value"] for r in m]), color=colours[s], label=s)
    a2.set_title("one coordinate converges early: the others' step", fontsize=9)
    a2.set_xlabel("step k")
    a2.set_ylabel("median step of the other coordinates")
    a2.legend(fontsize=8, frameon=False)
    return _save(fig, out, "invariance")


# -- 5. rule grid --------------------------------------------------------------------------


def rule_grid_data(problems: list[Any], iters: int) -> Rows:
    from paramscale.theory import optimizers
    from paramscale.theory import scaling as rules

    from paramscale import theory

    by_name = {
        "identity": rules.identity,
        "adagrad": rules.adagrad,
        "rmsprop": rules.rmsprop,
        "adam": rules.adam,
        "amsgrad": rules.amsgrad,
        "lars": rules.lars,
        "lamb": rules.lamb,
    }
    steps: dict[str, Callable[[Any, Any], Any]] = {
        "polyak (PS-SPS)": lambda sol, r: optimizers.ps_sps(
            sol.f, scaling=r, f_star_tol=1e-9 * max(1.0, abs(sol.f)) + 10 * sol.gap
        ),
        "dadapt (PS-DA-SGD)": lambda sol, r: optimizers.ps_dadapt_sgd(scaling=r),
        "dadapt, shrink": lambda sol, r: optimizers.ps_dadapt_sgd(scaling=r, transfer="shrink"),
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
    plt = _plt()
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
                "div" if not np.isfinite(z[i, j]) else f"{z[i, j]:.0e}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shown[i, j] > -3 else "black",
            )
    ax.set_xticks(range(len(rules)), rules)
    ax.set_yticks(range(len(steps)), steps)
    fig.colorbar(im, label="log10 median (min f - f*) / (f(x_0) - f*)")
    ax.set_title("Rule-comparison grid (median over the problems; lower is better)", fontsize=9)
    return _save(fig, out, "rule_grid")


# -- all of them ---------------------------------------------------------------------------


def make_all(out: Path, iters: int = 300, quick: bool = False, progress=print) -> list[Path]:
    from paramscale import synthetic
    out.mkdir(parents=True, exist_ok=True)
    fams = ["lad", "hinge", "max_affine", "huber", "logistic", "l1_ball"]
    problems = [synthetic.FAMILIES[f](scale=2.0, seed=0) for f in fams]
    problems.append(synthetic.nesterov_worst())
    if quick:
        problems = problems[:2] + problems[-1:]
        iters = min(iters, 60)
    written: list[Path] = []
    jobs = [
        ("rate_curves", lambda: rate_curve_data(problems, iters), rate_curve_plot),
        (
            "learning_rates",
            lambda: learning_rate_data([problems[0], problems[-1]], iters),
            learning_rate_plot,
        ),
        (
            "tightness",
            lambda: [
                r for r in rate_curve_data(problems[:1], iters) if r["method"] != "sgd(C2 step)"
            ],
            tightness_plot,
        ),
        ("invariance", lambda: invariance_data(iters), invariance_plot),
        ("rule_grid", lambda: rule_grid_data(problems[:-1], min(iters, 200)), rule_grid_plot),
    ]
    for name, data, plot in jobs:
        progress(f"  {name}")
        path = out / f"{name}.csv"
        write_csv(data(), path)
        written.append(path)
        written += plot(read_csv(path), out)  # the figure is drawn from the CSV
    return written
