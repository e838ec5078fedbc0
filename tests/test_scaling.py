"""Scaling rules (docs/spec.md section 2) against formulas written out independently here, plus
monotonicity (A1's hypothesis) and the array-API promise (one rule, NumPy and torch)."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from paramscale.theory import scaling as S

FLOATS = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def grad_histories(k=12, n=5):
    return arrays(np.float64, (k, n), elements=FLOATS)


def alphas(rule, gs, xs=None):
    xs = np.ones_like(gs) if xs is None else xs
    state, out = rule.init(xs[0]), []
    for g, x in zip(gs, xs, strict=True):
        a, state = rule.update(state, g, x)
        out.append(a)
    return np.array(out)


@given(grad_histories())
def test_divisors_match_table_1(gs):
    b2, eps = 0.99, 1e-8
    k = np.arange(1, len(gs) + 1)[:, None]
    cum = np.cumsum(gs**2, axis=0)
    v = np.zeros_like(gs)  # v_k = sum_i (1-b2) b2^(k-i) g_i^2, written as a sum, not a recursion
    for t in range(len(gs)):
        w = (1 - b2) * b2 ** (t - np.arange(t + 1))
        v[t] = w @ gs[: t + 1] ** 2
    vhat = v / (1 - b2**k)
    expected = {
        "identity": np.ones_like(gs),
        "adagrad": np.sqrt(cum) + eps,
        "rmsprop": np.sqrt(v) + eps,
        "adam": np.sqrt(vhat) + eps,
        "amsgrad": np.sqrt(np.maximum.accumulate(vhat, axis=0)) + eps,
        "amsgrad_torch": np.sqrt(np.maximum.accumulate(v, axis=0)) / np.sqrt(1 - b2**k) + eps,
    }
    rules = {
        "identity": S.identity(),
        "adagrad": S.adagrad(eps),
        "rmsprop": S.rmsprop(b2, eps),
        "adam": S.adam(b2, eps),
        "amsgrad": S.amsgrad(b2, eps),
        "amsgrad_torch": S.amsgrad(b2, eps, form="torch"),
    }
    for name, rule in rules.items():
        np.testing.assert_allclose(alphas(rule, gs) ** 2, expected[name], rtol=1e-12, err_msg=name)


@given(grad_histories(k=6, n=6), arrays(np.float64, (6, 6), elements=FLOATS))
def test_lars_lamb_blocks(gs, xs):
    blocks = (2, 4)
    a = alphas(S.lars(blocks=blocks), gs, xs) ** 2
    m = v = 0
    lamb_a = alphas(S.lamb(0.9, 0.999, 1e-8, blocks=blocks), gs, xs) ** 2
    for t, (g, x) in enumerate(zip(gs, xs, strict=True)):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        denom = np.sqrt(v / (1 - 0.999 ** (t + 1))) + 1e-8
        r = m / (1 - 0.9 ** (t + 1)) / denom
        for sl in (slice(0, 2), slice(2, 6)):
            gn, xn, rn = (np.linalg.norm(z[sl]) for z in (g, x, r))
            lars_ratio = gn / xn if gn > 0 and xn > 0 else 1.0
            lamb_ratio = rn / xn if rn > 0 and xn > 0 else 1.0
            np.testing.assert_allclose(a[t, sl], lars_ratio, rtol=1e-12)
            np.testing.assert_allclose(lamb_a[t, sl], denom[sl] * lamb_ratio, rtol=1e-12)


@given(grad_histories(k=30, n=4), st.sampled_from([0.9, 0.999]))
def test_monotone_rules_are_monotone_and_bounded(gs, b2):
    """Claim A1 on arbitrary gradient sequences: alpha_{k+1} >= alpha_k and
    alpha_k**2 <= G_inf + eps (the bias-corrected vhat is a weighted mean of g_i**2)."""
    g_inf = np.max(np.abs(gs))
    for rule in (S.amsgrad(b2), S.adagrad()):
        a = alphas(rule, gs)
        assert np.all(np.diff(a, axis=0) >= 0), rule.name
    a = alphas(S.amsgrad(b2), gs)
    assert np.all(a**2 <= g_inf + 1e-8 + 1e-12 * g_inf)


def test_torch_form_amsgrad_is_not_monotone():
    """docs/baselines.md section 8: torch's max-before-bias-correction can decrease."""
    gs = np.array([[1.0], [0.0], [0.0], [0.0]])
    a = alphas(S.amsgrad(0.999, form="torch"), gs)
    assert np.any(np.diff(a[:, 0]) < 0)
    assert np.all(np.diff(alphas(S.amsgrad(0.999), gs)[:, 0]) >= 0)


@pytest.mark.parametrize(
    "rule",
    [S.identity(), S.adagrad(), S.rmsprop(), S.adam(), S.amsgrad(), S.lars(), S.lamb()],
    ids=lambda r: r.name,
)
def test_same_rule_object_runs_on_torch(rule):
    """Rules are written against the array API: the same object on torch tensors gives the
    NumPy alphas (float64, to round-off)."""
    rng = np.random.default_rng(0)
    gs, xs = rng.standard_normal((8, 5)), rng.standard_normal((8, 5))
    ref = alphas(rule, gs, xs)
    state, out = rule.init(torch.tensor(xs[0])), []
    for g, x in zip(gs, xs, strict=True):
        a, state = rule.update(state, torch.tensor(g), torch.tensor(x))
        out.append(a.numpy())
    np.testing.assert_allclose(np.array(out), ref, rtol=1e-14)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: S.adam(beta2=1.0), "Invalid beta2: 1.0"),
        (lambda: S.adam(eps=0.0), "Invalid eps: 0.0"),
        (lambda: S.rmsprop(beta2=-0.1), "Invalid beta2: -0.1"),
        (lambda: S.amsgrad(form="max"), "Invalid form: 'max'"),
        (lambda: S.adagrad(eps=float("nan")), "Invalid eps: nan"),
        (lambda: S.lars(blocks=(0, 3)), "Invalid blocks: (0, 3)"),
        (lambda: S.by_name("adamw"), "Invalid scaling: 'adamw'"),
        (lambda: S.uniformly_scaled(S.adam(), -1.0), "Invalid t: -1.0"),
    ],
)
def test_invalid_hyperparameters_name_parameter_and_value(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_block_sizes_must_cover_the_vector():
    with pytest.raises(ValueError, match=r"Invalid blocks: \(2, 2\) sum to 4 \(expected 5\)"):
        S.lars(blocks=(2, 2)).init(np.zeros(5))
