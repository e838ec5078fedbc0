"""Convex Lipschitz problems with certified exact solutions (docs/spec.md section 5)."""

from paramscale.synthetic.constructors import (
    breast_cancer_hinge,
    diabetes_lad,
    from_params,
    hinge,
    huber,
    l1_ball,
    lad,
    logistic,
    max_affine,
    nesterov_worst,
)
from paramscale.synthetic.data import from_data
from paramscale.synthetic.problem import Problem
from paramscale.synthetic.solve import Solution, SolveError
from paramscale.synthetic.suite import FAMILIES, suite

__all__ = [
    "Problem",
    "Solution",
    "SolveError",
    "suite",
    "FAMILIES",
    "lad",
    "hinge",
    "max_affine",
    "huber",
    "logistic",
    "l1_ball",
    "nesterov_worst",
    "diabetes_lad",
    "breast_cancer_hinge",
    "from_params",
    "from_data",
]


def __getattr__(name: str):  # synthetic.strategies imports hypothesis: load it on demand
    if name == "strategies":
        import paramscale.synthetic.strategies as strategies

        return strategies
    raise AttributeError(name)
