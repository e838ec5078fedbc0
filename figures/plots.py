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

The figures are ``figures.rates`` (1-3) and ``figures.rules`` (4, 5); what they share,
``figures.style`` and ``figures.tidy``; this module draws them all (``make_all``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from paramscale.figures.rates import (
    learning_rate_data,
    learning_rate_plot,
    rate_curve_data,
    rate_curve_plot,
    tightness_plot,
)
from paramscale.figures.rules import (
    invariance_data,
    invariance_plot,
    rule_grid_data,
    rule_grid_plot,
)
from paramscale.figures.tidy import read_csv, write_csv


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
