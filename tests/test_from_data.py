"""``synthetic.from_data``: a user's own (A, b) as a certified problem in one call; bad
inputs refused by name."""

import numpy as np
import pytest

from paramscale import synthetic, theory
from paramscale.theory import optimizers


def _data(m=40, n=5, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)) * np.exp(rng.standard_normal(n))
    return A, A @ rng.standard_normal(n) + rng.laplace(size=m)


def _labels(A, seed=1):
    rng = np.random.default_rng(seed)
    y = np.sign(A @ rng.standard_normal(A.shape[1]) + 2 * rng.standard_normal(len(A)))
    y[y == 0] = 1.0
    return y


@pytest.mark.parametrize("kind", synthetic.data.KINDS)
def test_every_kind_is_certified_and_its_lipschitz_constant_bounds_the_subgradients(kind):
    A, b = _data()
    if kind in ("hinge", "logistic"):
        b = _labels(A)
    if kind == "max_affine":
        A = A - A.mean(0)  # 0 is the mean of the rows: bounded below
    p = synthetic.from_data(kind, A, b, x0=np.ones(A.shape[1]))
    sol = p.solve()
    assert sol.status == "optimal" and sol.gap <= 1e-7 * max(1.0, abs(sol.f))
    assert np.array_equal(p.x0, np.ones(A.shape[1]))
    traj = theory.run(optimizers.sps(sol.f, f_star_tol=1e-6), p, iters=200)
    assert traj.f.min() - sol.f < 0.1 * (traj.f[0] - sol.f)  # the certified f* is reached
    assert np.all(traj.f >= sol.f - 1e-7)  # and is a lower bound
    rng = np.random.default_rng(2)
    for x in rng.standard_normal((50, A.shape[1])) * 10:
        assert np.linalg.norm(p.grad(x)) <= p.lipschitz * (1 + 1e-12)


def test_lad_on_real_data_matches_an_independent_lp():
    """diabetes as the user would pass it: the exact f* against HiGHS on the LP form."""
    from scipy.optimize import linprog
    from sklearn.datasets import load_diabetes

    X, t = load_diabetes(return_X_y=True)
    A = np.hstack([X, np.ones((len(t), 1))])
    p = synthetic.from_data("lad", A, t, name="diabetes")
    m, n = A.shape
    c = np.concatenate([np.zeros(n), np.full(m, 1 / m)])
    A_ub = np.block([[A, -np.eye(m)], [-A, -np.eye(m)]])
    lp = linprog(c, A_ub=A_ub, b_ub=np.concatenate([t, -t]),
                 bounds=[(None, None)] * n + [(0, None)] * m, method="highs")  # fmt: skip
    assert p.solve().f == pytest.approx(lp.fun, rel=1e-8)
    assert p.name.startswith("lad(") and "diabetes" in p.name


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (("ridge", *_data()), {}, ValueError, "Invalid kind: 'ridge'"),
        (("lad", _data()[0][0], _data()[1]), {}, ValueError, "Invalid A: shape (5,)"),
        (("lad", _data()[0], _data()[1][:-1]), {}, ValueError, "Invalid b: shape (39,)"),
        (("lad", np.full((4, 2), np.nan), np.ones(4)), {}, ValueError, "8 NaN/Inf entries"),
        (("lad", _data()[0], np.full(40, np.inf)), {}, ValueError, "Invalid b: 40 NaN/Inf"),
        (("lad", np.ones((4, 2), bool), np.ones(4)), {}, TypeError, "Invalid A: dtype bool"),
        (("lad", np.ones((4, 2)), np.array(list("abcd"))), {}, TypeError, "Invalid b: dtype"),
        (("hinge", _data()[0], np.arange(40.0) % 2), {}, ValueError, "labels [0.0]"),
        (("lad", *_data()), {"l1": 0.1}, ValueError, "only hinge takes l1"),
        (("huber", *_data()), {"delta": -1.0}, ValueError, "Invalid delta: -1.0"),
        (("lad", *_data()), {"x0": np.ones(3)}, ValueError, "Invalid x0: shape (3,)"),
        (("max_affine", np.eye(3), np.zeros(3)), {}, ValueError, "unbounded below"),
    ],
)
def test_bad_input_is_refused_by_name(args, kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):  # fmt: skip
        synthetic.from_data(*args, **kwargs)


def test_separable_logistic_data_is_refused():
    A, _ = _data()
    with pytest.raises(ValueError, match="linearly separable"):
        synthetic.from_data("logistic", A, np.sign(A @ np.ones(A.shape[1])))


def test_a_users_problem_is_not_rebuilt_from_its_params():
    p = synthetic.from_data("lad", *_data(), solve=False)
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        synthetic.from_params(p.family, p.params)
