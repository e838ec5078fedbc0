"""The EG step-size adaptation in torch (torch_impl.EGStepSize) against its NumPy
reference (theory.eg.eg_stepsize), step for step in float64, and against
torch.optim with its adaptation switched off."""

import numpy as np
import pytest
import torch

from paramscale import synthetic, theory
from paramscale import torch_impl as T
from paramscale.theory import optimizers as O
from tests.oracle import max_rel_dev, oracle_trajectory

PROBLEMS = {
    "lad": lambda: synthetic.lad(m=40, n=8, scale=1.0, seed=0),
    "logistic": lambda: synthetic.logistic(m=40, n=6, scale=2.0, seed=1),
}
STEPS = 150


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize(
    "hyper",
    [
        {
            "base": "adam",
            "lr": 1e-2,
            "mu": 0.0,
            "gamma_p": 0.05,
            "gamma_s": 0.05,
            "exponent": "raw",
        },
        {"base": "sgd", "lr": 0.02, "mu": 0.9, "gamma_p": 0.01, "gamma_s": 0.01, "exponent": "raw"},
        {"base": "adam", "lr": 1e-2, "mu": 0.0, "gamma_s": 0.1, "exponent": "cosine"},
        {"base": "adam", "lr": 1e-2, "mu": 0.0, "gamma_s": 0.1, "exponent": "normalised"},
        {"base": "sgd", "lr": 0.02, "mu": 0.9, "gamma_s": 0.01, "exponent": "normalised"},
    ],
    ids=["adam-raw", "sgd-raw", "adam-cosine", "adam-normalised", "sgd-normalised"],
)
def test_torch_equals_the_numpy_reference(problem, hyper):
    p = PROBLEMS[problem]()
    ref = theory.run(O.eg_stepsize(**hyper), p, iters=STEPS)
    ours = oracle_trajectory(lambda ps: T.EGStepSize(ps, **hyper), p, p.x0, STEPS)
    assert max_rel_dev(ours, ref.x) <= 1e-10
    assert np.ptp(ref.lr) > 0  # the adaptation did move the scale


def test_without_adaptation_it_is_torch_adam_and_sgd():
    p = PROBLEMS["logistic"]()
    off = {"gamma_p": 0.0, "gamma_s": 0.0}
    adam = oracle_trajectory(lambda ps: torch.optim.Adam(ps, lr=1e-2), p, p.x0, STEPS)
    ours = oracle_trajectory(lambda ps: T.EGStepSize(ps, lr=1e-2, **off), p, p.x0, STEPS)
    assert max_rel_dev(ours, adam) <= 1e-12
    ref = theory.run(O.eg_stepsize(lr=1e-2, mu=0.0, base="adam", **off), p, iters=STEPS)
    assert max_rel_dev(ref.x, adam) <= 1e-12
    sgd = oracle_trajectory(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9), p, p.x0, 50)
    ours = oracle_trajectory(lambda ps: T.EGStepSize(ps, lr=0.05, base="sgd", **off), p, p.x0, 50)
    # torch's buf = mu buf + g, p -= lr buf against the scale applied per step: the same
    # step, rounded differently, and momentum 0.9 carries each rounding for ~10 steps.
    # Measured: 8.7e-13 with AVX-512 kernels, 1.1e-12 with ATen's scalar ones
    # (ATEN_CPU_CAPABILITY=default); a formula difference (nesterov, dampening) is 1.
    assert max_rel_dev(ours, sgd) <= 1e-11


def test_an_overflowing_scale_is_refused_and_changes_nothing():
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = T.EGStepSize([w], lr=1.0, gamma_s=1e4)
    w.grad = torch.ones(3, dtype=torch.float64)
    opt.step()  # h_0 = lr * u: the next <h, g> is large
    before = (w.detach().clone(), {k: v.clone() for k, v in opt.state[w].items()},
              dict(opt.state["global"]))  # fmt: skip
    w.grad = torch.full((3,), 1e3, dtype=torch.float64)
    with pytest.raises(FloatingPointError, match="overflowed at step 1"):
        opt.step()
    assert torch.equal(w, before[0]) and opt.state["global"] == before[2]
    for key, value in before[1].items():
        assert torch.equal(opt.state[w][key], value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": -1.0}, "Invalid lr: -1.0"),
        ({"base": "lion"}, "Invalid base: 'lion'"),
        ({"mu": 0.9}, "Invalid mu: 0.9 with base='adam'"),
        ({"gamma_s": -0.1}, "Invalid gamma_s: -0.1"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        T.EGStepSize([torch.nn.Parameter(torch.zeros(2))], **kwargs)


class Scaled:
    """``problem`` with its loss multiplied by ``c`` (gradients too)."""

    def __init__(self, problem, c):
        self.problem, self.c = problem, c
        self.n, self.m, self.x0, self.name = problem.n, problem.m, problem.x0, problem.name

    def f(self, x, idx=None):
        return self.c * self.problem.f(x, idx)

    def grad(self, x, idx=None):
        return self.c * self.problem.grad(x, idx)


@pytest.mark.parametrize("exponent", ["raw", "cosine", "normalised"])
def test_the_scale_free_exponents_do_not_depend_on_the_loss_scale(exponent):
    """Over Adam's direction (itself invariant, but for eps) the cosine and normalised
    exponents move the scale and the gains alike for f and 10 f; the raw ones, whose
    exponents grow as the square of the gradient, do not (at 1e3 f they overflow)."""
    p = PROBLEMS["lad"]()
    make = O.eg_stepsize(lr=1e-2, mu=0.0, base="adam", exponent=exponent, eps=1e-14)
    a = theory.run(make, p, iters=STEPS).lr
    b = theory.run(make, Scaled(p, 10.0), iters=STEPS).lr
    if exponent == "raw":
        assert max_rel_dev(a, b) > 1e-2
    else:
        assert max_rel_dev(a, b) <= 1e-8
        assert np.ptp(np.log(a)) > 0.05  # and the scale moved
