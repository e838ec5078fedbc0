"""Hypothesis strategies for problems, starting points and scaling rules (public API)."""

from __future__ import annotations

from hypothesis import strategies as st

from paramscale.synthetic import constructors as build
from paramscale.synthetic.problem import Problem
from paramscale.theory import scaling

ALL = ("lad", "hinge", "hinge_l1", "max_affine", "huber", "logistic", "l1_ball", "nesterov_worst")


@st.composite
def problems(
    draw: st.DrawFn,
    families: tuple[str, ...] = ALL,
    max_n: int = 8,
    max_m: int = 40,
    max_scale: float = 2.0,
) -> Problem:
    """A small problem of one of ``families`` with drawn sizes, seed and scaling."""
    family = draw(st.sampled_from(families))
    n = draw(st.integers(2, max_n))
    m = draw(st.integers(2 * n, max(max_m, 2 * n + 1)))
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from((0.0, 0.5 * max_scale, max_scale)))
    if family == "hinge_l1":
        return build.hinge(m, n, scale, l1=0.01, seed=seed)
    if family == "max_affine":
        return build.max_affine(m, n, scale, seed=seed)
    if family == "l1_ball":
        return build.l1_ball(n, 1.0, scale, seed=seed)
    if family == "nesterov_worst":
        return build.nesterov_worst(n)
    return getattr(build, family)(m, n, scale, seed=seed)


def starting_points(problem: Problem, radius: float = 3.0) -> st.SearchStrategy:
    """A starting point near ``problem.x0`` (finite floats, up to ``radius`` per coordinate).
    Offsets below 1e-6 in magnitude are flushed to 0: squares of such numbers underflow in
    some norm implementations and not in others, and LARS's trust ratio jumps at ||x|| = 0,
    so they would test round-off conventions, not methods."""
    import numpy as np

    coords = st.floats(-radius, radius, allow_nan=False, allow_infinity=False).map(
        lambda v: 0.0 if abs(v) < 1e-6 else v
    )
    return st.lists(coords, min_size=problem.n, max_size=problem.n).map(
        lambda v: problem.x0 + np.asarray(v, dtype=np.float64)
    )


def scaling_rules(monotone_only: bool = False) -> st.SearchStrategy:
    """A scaling rule of docs/spec.md section 2 with drawn hyperparameters."""
    beta2 = st.sampled_from((0.9, 0.99, 0.999))
    eps = st.sampled_from((1e-8, 1e-6))
    monotone = [
        st.builds(scaling.identity),
        st.builds(scaling.adagrad, eps),
        st.builds(scaling.amsgrad, beta2, eps),
    ]
    others = [
        st.builds(scaling.rmsprop, beta2, eps),
        st.builds(scaling.adam, beta2, eps),
        st.builds(scaling.lars),
        st.builds(scaling.lamb, st.just(0.9), beta2, eps),
    ]
    return st.one_of(monotone if monotone_only else monotone + others)
