"""Bad input: clear errors naming parameter and value; no state corrupted by a failed step."""

import copy
import math

import numpy as np
import pytest

from paramscale import synthetic, theory
from paramscale.theory import optimizers as O
from paramscale.theory import scaling as S


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: O.sgd(lr=-0.1), r"Invalid lr: -0.1"),
        (lambda: O.sgd(momentum=1.0), r"Invalid momentum: 1.0"),
        (lambda: O.adam(betas=(1.2, 0.999)), r"Invalid beta1: 1.2"),
        (lambda: O.adam(betas=(0.9,)), r"Invalid betas: \(0.9,\)"),
        (lambda: O.sps(0.0, c=0.0), r"Invalid c: 0.0"),
        (lambda: O.sps(float("nan")), r"Invalid f_star: nan"),
        (lambda: O.sps(0.0, eta_max=-1.0), r"Invalid eta_max: -1.0"),
        (lambda: O.dadapt_sgd(d0=0.0), r"Invalid d0: 0.0"),
        (lambda: O.dadapt_sgd(growth_rate=0.5), r"Invalid growth_rate: 0.5"),
        (lambda: O.ps_dadapt_sgd(dhat="half"), r"Invalid dhat: 'half'"),
        (lambda: O.ps_dadapt_sgd(transfer="median"), r"Invalid transfer: 'median'"),
        (lambda: O.ps_dadapt_sgd(normaliser="g0"), r"Invalid normaliser: 'g0'"),
        (lambda: O.ps_dadapt_sgd(scaling="adamw"), r"Invalid scaling: 'adamw'"),
        # a NumPy float32 would carry its precision into the arithmetic; True is not a rate
        (lambda: S.adam(beta2=np.float32(0.99)), r"Invalid beta2: .* of type float32"),
        (lambda: O.sgd(lr=True), r"Invalid lr: True of type bool"),
        (
            lambda: O.parameter_scaled(O.constant(0.1), S.adam(), momentum=-0.5),
            r"Invalid momentum: -0.5",
        ),
    ],
)
def test_invalid_hyperparameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_rule_object_of_wrong_type():
    with pytest.raises(TypeError, match="Invalid scaling"):
        O.ps_sps(0.0, scaling=object())


OPTIMIZERS = [
    O.sgd(0.1),
    O.adam(0.1),
    O.sps(0.0),
    O.ps_sps(0.0),
    O.dadapt_sgd(),
    O.ps_dadapt_sgd(),
    O.amsgrad(0.1),
    O.adagrad(),
    O.rmsprop(),
]
PROBLEM = synthetic.lad(20, 4, 1.0, seed=0)


def _advance(opt, steps=5):
    x = PROBLEM.x0 + 1.0
    state = opt.init(x)
    for _ in range(steps):
        x, state, _ = opt.step(state, x, PROBLEM.f(x), PROBLEM.grad(x))
    return x, state


def _snapshot(state):
    return copy.deepcopy(state)


def _equal(a, b):
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    if isinstance(a, tuple):
        return type(a) is type(b) and all(_equal(u, v) for u, v in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[key], b[key]) for key in a)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: o.name)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_gradient_raises_and_leaves_state(opt, bad):
    x, state = _advance(opt)
    before = _snapshot(state)
    g = PROBLEM.grad(x)
    g[1] = bad
    with pytest.raises(FloatingPointError, match="Non-finite gradient at step 5"):
        opt.step(state, x, PROBLEM.f(x), g)
    assert _equal(state, before)
    # and the optimizer continues exactly as if the bad call never happened
    x1, _, _ = opt.step(state, x, PROBLEM.f(x), PROBLEM.grad(x))
    x2, _, _ = opt.step(before, x, PROBLEM.f(x), PROBLEM.grad(x))
    np.testing.assert_array_equal(x1, x2)


def test_state_comparison_detects_a_change():
    """The state-unchanged check above is not vacuous: a good step changes the state."""
    x, state = _advance(O.ps_dadapt_sgd())
    _, after, _ = O.ps_dadapt_sgd().step(state, x, PROBLEM.f(x), PROBLEM.grad(x))
    assert not _equal(state, after)


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: o.name)
def test_wrong_shape_and_dtype(opt):
    x, state = _advance(opt, 1)
    with pytest.raises(
        ValueError, match=r"Invalid grad at step 1: shape \(3,\) \(expected \(4,\)\)"
    ):
        opt.step(state, x, 1.0, np.ones(3))
    with pytest.raises(TypeError, match="dtype int64"):
        opt.step(state, x, 1.0, np.ones(4, dtype=np.int64))


def test_loss_below_f_star_names_both_values():
    opt = O.ps_sps(f_star=5.0)
    state = opt.init(np.zeros(2))
    with pytest.raises(ValueError, match=r"f = 4.5 < f_star = 5.0"):
        opt.step(state, np.zeros(2), 4.5, np.ones(2))
    tolerant = O.sps(f_star=5.0, f_star_tol=1e-6)  # within tolerance: treated as f = f*
    x, _, info = tolerant.step(tolerant.init(np.zeros(2)), np.zeros(2), 5.0 - 1e-9, np.ones(2))
    assert info["lr"] == 0.0 and np.all(x == 0)


def test_polyak_needs_the_loss():
    opt = O.ps_sps(0.0)
    with pytest.raises(ValueError, match="needs the loss at step 0"):
        opt.step(opt.init(np.zeros(2)), np.zeros(2), None, np.ones(2))


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: o.name)
def test_zero_gradient_is_a_no_op(opt):
    x = np.array([1.0, -2.0, 3.0])
    x1, state, info = opt.step(opt.init(x), x, 0.5, np.zeros(3))
    np.testing.assert_array_equal(x1, x)
    assert np.isfinite(info["lr"])


def test_sps_at_optimum_does_not_move():
    opt = O.ps_sps(f_star=2.0)
    x = np.array([1.0, 1.0])
    x1, _, info = opt.step(opt.init(x), x, 2.0, np.array([0.3, -0.1]))
    assert info["lr"] == 0.0 and np.array_equal(x1, x)


def test_dadapt_zero_first_gradient_then_continues():
    """D-Adapt SGD divides by ||g_0|| = 0 (ZeroDivisionError, docs/baselines.md 4); here the first
    nonzero gradient defines ||g_0|| and the run continues as if it were the first."""
    opt = O.dadapt_sgd()
    x = np.array([1.0, 2.0])
    x, state, info = opt.step(opt.init(x), x, 1.0, np.zeros(2))
    assert info["lr"] == 0.0
    g = np.array([0.5, -1.0])
    x2, _, info = opt.step(state, x, 1.0, g)
    np.testing.assert_allclose(x2, x - 1e-6 * g / np.linalg.norm(g), rtol=1e-15)


def test_nonfinite_loss_is_refused():
    opt = O.sps(0.0)
    with pytest.raises(FloatingPointError, match="Non-finite loss at step 0"):
        opt.step(opt.init(np.zeros(2)), np.zeros(2), float("nan"), np.ones(2))


def test_run_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"Invalid x0: shape \(3,\) \(expected \(4,\)\)"):
        theory.run(O.sgd(), PROBLEM, x0=np.zeros(3))
    with pytest.raises(ValueError, match=r"Invalid x0: 1 NaN/Inf entries"):  # not "gradient"
        theory.run(O.sgd(), PROBLEM, x0=np.r_[np.zeros(PROBLEM.n - 1), np.nan])
    with pytest.raises(ValueError, match="Invalid iters: -1"):
        theory.run(O.sgd(), PROBLEM, iters=-1)
