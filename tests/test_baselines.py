"""Every baseline equals its authors' code step for step (float64, relative 1e-10 over
200 steps, two tensors so per-tensor and layer-wise logic is exercised), plus the
first-step anchors of docs/baselines.md section 14 as independent checks."""

import dadaptation
import dog
import mechanic_pytorch
import numpy as np
import parameterfree
import prodigyopt
import pytest
import schedulefree
import torch

from paramscale import synthetic, theory
from paramscale.theory import optimizers as O
from tests.oracle import max_rel_dev, oracle_trajectory

STEPS = 200
PROBLEMS = [synthetic.lad(40, 7, 1.0, seed=3), synthetic.hinge(50, 7, 2.0, seed=5)]


def _train(opt):
    opt.train()
    return opt


def _mechanized_sgd(params):
    return mechanic_pytorch.mechanize(torch.optim.SGD)(params, lr=0.01)


CASES = {
    "dog": (lambda: O.dog(), lambda p: dog.DoG(p)),
    "ldog": (lambda: O.ldog(blocks=(4, 3)), lambda p: dog.LDoG(p)),
    "cocob": (lambda: O.cocob(), lambda p: parameterfree.COCOB(p)),
    "dadapt_adam": (lambda: O.dadapt_adam(), lambda p: dadaptation.DAdaptAdam(p)),
    "dadapt_adam_bc": (
        lambda: O.dadapt_adam(use_bias_correction=True, growth_rate=1.05),
        lambda p: dadaptation.DAdaptAdam(p, use_bias_correction=True, growth_rate=1.05),
    ),
    "prodigy": (lambda: O.prodigy(), lambda p: prodigyopt.Prodigy(p)),
    "prodigy_safeguard_bc": (
        lambda: O.prodigy(safeguard_warmup=True, use_bias_correction=True),
        lambda p: prodigyopt.Prodigy(p, safeguard_warmup=True, use_bias_correction=True),
    ),
    "prodigy_coef_growth": (
        lambda: O.prodigy(d_coef=2.0, growth_rate=1.05),
        lambda p: prodigyopt.Prodigy(p, d_coef=2.0, growth_rate=1.05),
    ),
    "schedule_free_sgd": (
        lambda: O.schedule_free_sgd(lr=0.05),
        lambda p: _train(schedulefree.SGDScheduleFreeReference(p, lr=0.05)),
    ),
    "schedule_free_adam": (
        lambda: O.schedule_free_adam(lr=0.01, warmup_steps=10),
        lambda p: _train(schedulefree.AdamWScheduleFreeReference(p, lr=0.01, warmup_steps=10)),
    ),
    "mechanic_sgd": (lambda: O.mechanic(O.sgd(lr=0.01)), _mechanized_sgd),
    "eg_stepsize_no_adaptation": (
        lambda: O.eg_stepsize(lr=0.05, mu=0.9, gamma_p=0.0, gamma_s=0.0),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    ),
}


@pytest.fixture
def float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # Mechanic builds its state in the default dtype
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.family)
@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_official_code(case, problem, float64_default):
    make_ours, make_oracle = CASES[case]
    x0 = np.random.default_rng(1).standard_normal(problem.n)
    ours = theory.run(make_ours(), problem, x0=x0, iters=STEPS).x
    ref = oracle_trajectory(make_oracle, problem, x0, STEPS)
    assert np.max(np.abs(ref[-1] - ref[0])) > 1e-4  # the oracle moved: the test can fail
    assert max_rel_dev(ours, ref) <= 1e-10


def test_first_step_anchors():
    """x_1 - x_0 from the closed forms of docs/baselines.md section 14."""
    p = PROBLEMS[0]
    x0 = np.linspace(-1.0, 1.0, p.n)
    g = p.grad(x0)
    b1, b2 = 0.9, 0.999
    anchors = {
        "dog": (O.dog(), -1e-6 * (1 + np.linalg.norm(x0)) * g / np.sqrt(g @ g + 1e-8)),
        "dadapt_adam": (
            O.dadapt_adam(),
            -1e-6 * (1 - b1) * g / (np.sqrt(1 - b2) * np.abs(g) + 1e-8),
        ),
        "prodigy": (O.prodigy(), -1e-6 * (1 - b1) * g / (np.sqrt(1 - b2) * np.abs(g) + 1e-8)),
        "cocob": (
            O.cocob(),
            -g
            / np.maximum(
                np.abs(g) + np.maximum(np.abs(g), 1e-8), 100 * np.maximum(np.abs(g), 1e-8)
            ),
        ),
        "schedule_free_sgd": (O.schedule_free_sgd(lr=0.1), -0.1 * g),
        "mechanic_sgd": (
            O.mechanic(O.sgd(lr=0.01)),
            -0.01 * g * (1e-6 * sum((0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999)) / 6),
        ),
    }
    for name, (opt, expected) in anchors.items():
        x1 = theory.run(opt, p, x0=x0, iters=1).x[1]
        np.testing.assert_allclose(x1 - x0, expected, rtol=1e-6, err_msg=name)


def test_ldog_is_per_layer():
    """LDoG's first step has length r_eps per layer, DoG's one r_eps overall."""
    p = PROBLEMS[0]
    x0 = np.zeros(p.n)
    x1 = theory.run(O.ldog(blocks=(4, 3)), p, x0=x0, iters=1).x[1]
    np.testing.assert_allclose([np.linalg.norm(x1[:4]), np.linalg.norm(x1[4:])], 1e-6, rtol=1e-6)
    x1 = theory.run(O.dog(), p, x0=x0, iters=1).x[1]
    assert np.linalg.norm(x1) == pytest.approx(1e-6, rel=1e-6)


@pytest.mark.parametrize(
    "opt", [O.dadapt_adam(), O.prodigy(), O.cocob(), O.dog()], ids=lambda o: o.name
)
def test_zero_first_gradient_does_not_move(opt):
    """Edge case of docs/baselines.md 14, mirrored: no move (and for D-Adapt Adam / Prodigy, k
    is not advanced, as in the official code)."""
    x = np.array([1.0, -2.0, 0.5])
    x1, state, _ = opt.step(opt.init(x), x, 1.0, np.zeros(3))
    np.testing.assert_array_equal(x1, x)
    if opt.name in ("dadapt_adam", "prodigy"):
        assert state.k == 0


def test_eg_gains_stay_positive_and_adapt():
    p = PROBLEMS[0]
    traj = theory.run(O.eg_stepsize(), p, iters=150)
    assert np.all(traj.info["min_gain"] > 0) and np.all(traj.lr > 0)
    assert np.std(traj.lr) > 0  # the global scale moves when gamma_s > 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: O.cocob(eps=0.0), "Invalid eps: 0.0"),
        (lambda: O.dog(reps_rel=0), "Invalid reps_rel"),
        (lambda: O.prodigy(betas=(0.0, 0.999)), "Invalid beta1: 0"),
        (lambda: O.ldog(blocks=(3, 3)).init(np.zeros(7)), r"Invalid blocks: \(3, 3\)"),
        (lambda: O.dadapt_adam(d0=-1.0), "Invalid d0: -1.0"),
    ],
)
def test_invalid_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("opt", [O.dadapt_adam(lr=0.0), O.prodigy(lr=0.0)], ids=lambda o: o.name)
def test_lr_zero_returns_without_moving(opt):
    """lr -> 0 (e.g. by a schedule): the official D-Adapt Adam and Prodigy return early with
    no move; mirrored."""
    p = PROBLEMS[0]
    traj = theory.run(opt, p, iters=5)
    assert np.all(traj.x == traj.x[0])


def test_dadapt_sgd_schedule_reaching_zero_is_not_an_error():
    """The official DAdaptSGD raises UnboundLocalError when the schedule reaches lr = 0
    (docs/baselines.md 4); here the step is 0 and d is kept: fixed, not mirrored."""
    p = PROBLEMS[0]
    traj = theory.run(O.dadapt_sgd(schedule=lambda k: max(0.0, 1 - k / 10)), p, iters=20)
    assert np.all(traj.lr[10:] == 0) and np.all(traj.x[11:] == traj.x[11])
    assert np.all(np.diff(traj.info["d"][10:]) == 0)


def test_weight_decay_is_refused_clearly():
    """Weight decay is not implemented for the baselines (the paper runs without it): asking
    for it fails at construction instead of being ignored."""
    with pytest.raises(TypeError, match="weight_decay"):
        O.prodigy(weight_decay=0.1)
