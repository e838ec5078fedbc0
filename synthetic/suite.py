"""The default problem suite: every family, well and badly scaled, plus two real data sets."""

from __future__ import annotations

from paramscale.synthetic import constructors as build
from paramscale.synthetic.problem import Problem

FAMILIES = {
    "lad": build.lad,
    "hinge": build.hinge,
    "hinge_l1": lambda **kw: build.hinge(l1=0.01, **kw),
    "max_affine": build.max_affine,
    "huber": build.huber,
    "logistic": build.logistic,
    "l1_ball": build.l1_ball,
}


def suite(
    seeds: tuple[int, ...] = (0,),
    badly_scaled: float = 2.0,
    real_data: bool = True,
    nesterov: bool = True,
) -> list[Problem]:
    """Each family at ``scale=0`` and ``scale=badly_scaled`` (0 or less: well scaled only)
    for every seed, Nesterov's worst-case function, and the two scikit-learn problems."""
    scales = (0.0, badly_scaled) if badly_scaled > 0 else (0.0,)
    problems = [
        make(scale=s, seed=seed) for make in FAMILIES.values() for s in scales for seed in seeds
    ]
    if nesterov:
        problems.append(build.nesterov_worst())
    if real_data:
        problems += [build.diabetes_lad(), build.breast_cancer_hinge()]
    return problems
