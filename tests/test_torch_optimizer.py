"""torch_impl as a drop-in torch.optim.Optimizer: equality with dadaptation on a real MLP,
checkpoint/resume, param groups, LR schedulers, foreach vs per-tensor, dtypes, bad input."""

import copy
import io
import math
import warnings
from unittest import mock

import dadaptation
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from paramscale import theory
from paramscale import torch_impl as T
from paramscale.theory import optimizers as O
from paramscale.theory import stepsize
from paramscale.theory.stepsize import constant
from paramscale.torch_impl import sweeps
from tests.devices import DEVICES
from tests.oracle import max_rel_dev, oracle_trajectory

_DIGITS = load_digits()


def digits_mlp(dtype=torch.float64, device="cpu", seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)
    ).to(dtype=dtype, device=device)
    X = torch.tensor(_DIGITS.data / 16.0, dtype=dtype, device=device)
    y = torch.tensor(_DIGITS.target, device=device)
    return model, X, y


def batches(n_steps, size=128, seed=0):
    rng = np.random.default_rng(seed)
    return [
        torch.tensor(rng.choice(len(_DIGITS.target), size, replace=False)) for _ in range(n_steps)
    ]


def train(model, opt, X, y, idx_list, start=0, closure_loss=False):
    losses = []
    for idx in idx_list[start:]:

        def closure(idx=idx):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            return loss

        if closure_loss:
            losses.append(float(opt.step(closure).detach()))
        else:
            closure()
            opt.step()
    return losses


def flat(model):
    return torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()]).numpy()


@pytest.mark.parametrize("momentum, lr", [(0.0, 0.1), (0.9, 0.3)])
def test_psdasgd_identity_equals_dadaptation_on_mlp(momentum, lr):
    """docs/spec.md 3.2 identity: PSDASGD(scaling="identity") is D-Adapt SGD, on a neural network
    (MLP on scikit-learn's digits, minibatches of 128) for 100 steps. lr = 1 is not used:
    there D-Adapt SGD itself diverges on this MLP by step 40 (loss 2.3 -> 50) and round-off
    is amplified from 1e-16 to 1e-6 in both implementations alike."""
    idx = batches(100)
    m1, X, y = digits_mlp()
    m2 = copy.deepcopy(m1)
    ours = T.PSDASGD(m1.parameters(), lr=lr, scaling="identity", momentum=momentum)
    ref = dadaptation.DAdaptSGD(m2.parameters(), lr=lr, momentum=momentum)
    x_start = flat(m1)
    for step_idx in range(100):
        train(m1, ours, X, y, idx[step_idx : step_idx + 1])
        train(m2, ref, X, y, idx[step_idx : step_idx + 1])
        a, b = flat(m1), flat(m2)
        assert np.max(np.abs(a - b)) <= 1e-10 * np.max(np.abs(b)), f"step {step_idx}"
    assert ours.stats()["d"] == pytest.approx(ref.param_groups[0]["d"], rel=1e-10)
    assert ours.stats()["d"] > 100 * 1e-6  # d adapted: the comparison is not of d0 steps
    assert np.max(np.abs(flat(m1) - x_start)) > 1e-5  # the parameters moved


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: T.PSDASGD(ps),
        lambda ps: T.PSDASGD(ps, scaling="amsgrad", momentum=0.0),
        lambda ps: T.PSSPS(ps, f_star=0.0, c=0.5),
        lambda ps: T.PSDASGD(ps, scaling="lamb", transfer="shrink"),
    ],
    ids=["psdasgd-adam", "psdasgd-amsgrad", "pssps-adam", "psdasgd-lamb"],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_resume_is_bit_identical(make, dtype):
    """Save at step 50 (through torch.save), load into a fresh model and optimizer,
    continue: bit-identical to the uninterrupted run."""
    idx = batches(100)
    model, X, y = digits_mlp(dtype)
    snapshot = copy.deepcopy(model.state_dict())
    opt = make(model.parameters())
    train(model, opt, X, y, idx, closure_loss=True)
    uninterrupted = flat(model)

    model2, _, _ = digits_mlp(dtype)
    model2.load_state_dict(snapshot)
    opt2 = make(model2.parameters())
    train(model2, opt2, X, y, idx[:50], closure_loss=True)
    buf = io.BytesIO()
    torch.save({"model": model2.state_dict(), "opt": opt2.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model3, _, _ = digits_mlp(dtype, seed=123)  # different init: everything comes from ckpt
    model3.load_state_dict(ckpt["model"])
    opt3 = make(model3.parameters())
    opt3.load_state_dict(ckpt["opt"])
    train(model3, opt3, X, y, idx, start=50, closure_loss=True)
    np.testing.assert_array_equal(flat(model3), uninterrupted)
    if dtype == torch.bfloat16:  # master copies and moments stay float32 across the reload
        st = opt3.state[next(model3.parameters())]
        assert st["z"].dtype == torch.float32 and st["scaling.v"].dtype == torch.float32
    saved = opt3.state_dict()["state"]["global"]  # the last step finished, float64 floats
    assert all(
        type(v) is float
        for k, v in saved.items()
        if k not in ("k", "d_growths", "skipped", "skip_run")
    )


def test_a_checkpoint_with_tensor_estimates_resumes():
    """Checkpoints written before the estimates moved to the host hold them as float64 0-dim
    tensors: they load as floats, and the run continues bit-identically."""
    model, X, y = digits_mlp()
    opt = T.PSDASGD(model.parameters())
    idx = batches(30)
    train(model, opt, X, y, idx[:15])
    saved = copy.deepcopy(opt.state_dict())
    as_tensors = copy.deepcopy(saved)
    glob = as_tensors["state"]["global"]
    as_tensors["state"]["global"] = {  # and without the counters, which they did not keep
        key: torch.tensor(v, dtype=torch.float64) if isinstance(v, float) else v
        for key, v in glob.items()
        if key not in ("d_growths", "skipped", "skip_run")
    }
    runs = []
    for sd in (saved, as_tensors):
        m = copy.deepcopy(model)
        o = T.PSDASGD(m.parameters())
        o.load_state_dict(sd)
        counters = ("k", "d_growths", "skipped", "skip_run")
        estimates = {k: v for k, v in o.state["global"].items() if k not in counters}
        assert all(type(v) is float for v in estimates.values())
        train(m, o, X, y, idx, start=15)
        runs.append(flat(m))
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("scaling", ["identity", "adagrad", "rmsprop", "adam", "amsgrad"])
@pytest.mark.parametrize("opt_name", ["psdasgd", "pssps"])
def test_foreach_equals_per_tensor(scaling, opt_name):
    """The multi-tensor path and the per-tensor path (theory's rule objects on torch
    tensors) compute the same thing. Their operation order differs by an ulp at step 1;
    non-convex training amplifies that geometrically (measured by step 40, PS-SPS with
    RMSProp: 7e-11 on the 2-core dev VM, 1.1e-9 on the H100 host's CPU, whose vector
    reductions round differently); a formula difference would show at 1e-3 or more. The
    bound is test_torch_fused's."""
    idx = batches(40)
    runs = []
    for foreach in (True, False):
        model, X, y = digits_mlp()
        if opt_name == "psdasgd":
            opt = T.PSDASGD(model.parameters(), scaling=scaling, foreach=foreach)
        else:
            opt = T.PSSPS(model.parameters(), 0.0, scaling=scaling, foreach=foreach)
        train(model, opt, X, y, idx, closure_loss=True)
        runs.append(flat(model))
    assert max_rel_dev(runs[0], runs[1]) <= 1e-7


def test_param_groups_share_one_global_estimate():
    """Splitting the parameters into groups with the same settings gives exactly the
    single-group trajectory: d, s-norms and ||g_0|| are global (user-needs A4)."""
    idx = batches(30)
    m1, X, y = digits_mlp()
    m2 = copy.deepcopy(m1)
    o1 = T.PSDASGD(m1.parameters())
    params = list(m2.parameters())
    o2 = T.PSDASGD([{"params": params[:2]}, {"params": params[2:]}])
    train(m1, o1, X, y, idx)
    train(m2, o2, X, y, idx)
    assert max_rel_dev(flat(m2), flat(m1)) <= 1e-13


def test_lr_scheduler_is_the_schedule():
    """A torch LR scheduler on ``lr`` is the schedule of theory's dadapt (docs/spec.md 3.2)."""
    from paramscale import synthetic

    p = synthetic.lad(40, 7, 1.0, seed=3)
    x0 = np.random.default_rng(0).standard_normal(p.n)
    K = 60

    def cosine(k):
        return 0.5 * (1 + math.cos(math.pi * k / K))

    ours = theory.run(O.ps_dadapt_sgd(schedule=cosine), p, x0=x0, iters=K).x
    sched = {}

    def make(ps):
        opt = T.PSDASGD(ps)
        sched["s"] = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
        return opt

    got = oracle_trajectory(make, p, x0, K, before_step=lambda o, k: k and sched["s"].step())
    assert max_rel_dev(got, ours) <= 1e-10


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_tracks_float32(device):
    """bf16 parameters: float32 state and master copy, float64 scalars; the trajectory stays
    close to the float32 run. Measured 3e-3 (bf16 resolution is 2**-8 = 4e-3 per entry);
    bound 0.05. A configuration that trains stably is used (the default PS-DA-SGD diverges
    on this MLP; see the README's findings)."""
    idx = batches(30)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        model, X, y = digits_mlp(torch.float32, device)
        model.to(dtype)
        opt = T.PSDASGD(model.parameters(), scaling="amsgrad", transfer="shrink")
        train(model, opt, X.to(dtype), y, idx)
        out[dtype] = flat(model)
        if dtype == torch.bfloat16:
            st = opt.state[next(model.parameters())]
            assert {st[k].dtype for k in ("z", "s", "scaling.v")} == {torch.float32}
            assert type(opt.state["global"]["d"]) is float  # float64, on the host
    assert max_rel_dev(out[torch.bfloat16], out[torch.float32]) <= 0.05


def test_closure_and_loss_keyword_give_the_same_step():
    idx = batches(5)
    m1, X, y = digits_mlp()
    m2 = copy.deepcopy(m1)
    o1, o2 = T.PSSPS(m1.parameters(), 0.0), T.PSSPS(m2.parameters(), 0.0)
    losses = train(m1, o1, X, y, idx, closure_loss=True)
    for i in idx:
        o2.zero_grad()
        loss = torch.nn.functional.cross_entropy(m2(X[i]), y[i])
        loss.backward()
        o2.step(loss=loss)
    np.testing.assert_array_equal(flat(m1), flat(m2))
    assert all(np.isfinite(losses))


# -- bad input -----------------------------------------------------------------------------


def _params():
    return [torch.nn.Parameter(torch.ones(3, dtype=torch.float64))]


@pytest.mark.parametrize(
    "make, exc, message",
    [
        (lambda: T.PSDASGD(_params(), lr=-1.0), ValueError, r"Invalid lr: -1.0"),
        (lambda: T.PSDASGD(_params(), momentum=1.0), ValueError, r"Invalid momentum: 1.0"),
        (lambda: T.PSDASGD(_params(), d0=0.0), ValueError, r"Invalid d0: 0.0"),
        (lambda: T.PSDASGD(_params(), growth_rate=0.9), ValueError, r"Invalid growth_rate: 0.9"),
        (lambda: T.PSDASGD(_params(), scaling="adamw"), ValueError, r"Invalid scaling: 'adamw'"),
        (lambda: T.PSSPS(_params(), c=-1.0), ValueError, r"Invalid c: -1.0"),
        (lambda: T.ParameterScaled(_params(), step=0.1), TypeError, r"Invalid step: 0.1"),
        (
            lambda: T.ParameterScaled(_params(), constant(0.1, schedule=lambda k: 1.0)),
            ValueError,
            "schedule",
        ),
        (
            lambda: T.PSDASGD([torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))]),
            TypeError,
            "complex",
        ),
    ],
)
def test_invalid_arguments(make, exc, message):
    with pytest.raises(exc, match=message):
        make()


@pytest.mark.parametrize("path", [{}, {"fused": True}], ids=["foreach", "fused"])
@pytest.mark.parametrize(
    "key, bad", [("lr", math.nan), ("lr", -0.1), ("lr", math.inf), ("momentum", 1.0)]
)
def test_a_group_value_made_invalid_mid_run_is_refused_at_the_step(key, bad, path):
    """A scheduler or a user may change a group's numbers after it was checked: the step
    checks them again, refuses by name and changes nothing (an lr of NaN unchecked would turn
    every parameter into NaN, silently)."""
    idx = batches(3)
    model, X, y = digits_mlp()
    opt = T.PSDASGD(model.parameters(), **path)
    train(model, opt, X, y, idx[:2])
    good, opt.param_groups[0][key] = opt.param_groups[0][key], bad
    before, state_before = flat(model), _state_copy(opt)
    with pytest.raises(ValueError, match=rf"Invalid {key} of group 0: {bad!r}"):
        train(model, opt, X, y, idx, start=2)
    np.testing.assert_array_equal(flat(model), before)
    _assert_same_state(opt.state_dict()["state"], state_before["state"])
    opt.param_groups[0][key] = good
    train(model, opt, X, y, idx, start=2)
    assert np.isfinite(flat(model)).all() and not np.array_equal(flat(model), before)


def test_a_checkpoint_of_another_model_is_refused():
    """Same number of parameters, other shapes: torch's loader takes it silently (and the
    step failed later); here ValueError names the parameter and the state, and nothing is
    loaded."""
    a, b = (torch.nn.Parameter(torch.ones(n, dtype=torch.float64)) for n in (4, 3))
    opt = T.PSDASGD([a, b])
    a.grad, b.grad = torch.ones(4, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    opt.step()
    c, d = (torch.nn.Parameter(torch.ones(n, dtype=torch.float64)) for n in (3, 4))
    other = T.PSDASGD([c, d])
    message = r"state 'scaling.v' of parameter 0 of group 0 has shape \(4,\) \(expected \(3,\)"
    with pytest.raises(ValueError, match=message):
        other.load_state_dict(opt.state_dict())
    assert not other.state


def test_a_refused_param_group_is_not_added():
    """add_param_group checks after torch's append: a refused group is taken out again (left
    in, the next step would run with lr = -1)."""
    opt = T.PSDASGD(_params())
    for bad in ({"lr": -1.0}, {"momentum": 2.0}, {"scaling": "adamw"}):
        with pytest.raises(ValueError, match="Invalid"):
            opt.add_param_group({"params": _params(), **bad})
        assert len(opt.param_groups) == 1


def test_parameters_on_two_devices_are_refused():
    """One d for the whole model: its reductions need every parameter on one device, so a
    second device is refused by name when the optimizer is built or a group is added
    (before, the first step failed in torch.stack). The meta device stands in for a
    second GPU: nothing is computed on it."""
    other = torch.nn.Parameter(torch.ones(3, dtype=torch.float64, device="meta"))
    message = r"Invalid parameter device: meta for parameter 1 of group 0 \(expected cpu"
    with pytest.raises(ValueError, match=message):
        T.PSDASGD([*_params(), other])
    opt = T.PSSPS(_params())
    with pytest.raises(ValueError, match="Invalid parameter device: meta for parameter 0 of "):
        opt.add_param_group({"params": [other]})
    assert len(opt.param_groups) == 1


def _state_copy(opt):
    return copy.deepcopy(opt.state_dict())


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], dict):
            _assert_same_state(a[key], b[key])
        else:
            assert a[key] == b[key], key


def assert_skipped_once(opt, state_before):
    """The skipped step is counted, and nothing else changed."""
    after = opt.state_dict()["state"]
    assert (after["global"]["skipped"], after["global"]["skip_run"]) == (1, 1)
    after["global"].update(skipped=0, skip_run=0)
    _assert_same_state(after, state_before["state"])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize(
    "make", [lambda ps: T.PSDASGD(ps), lambda ps: T.PSSPS(ps, 0.0)], ids=["psdasgd", "pssps"]
)
def test_nonfinite_gradient_raises_or_skips_leaving_everything(make, bad):
    idx = batches(3)
    model, X, y = digits_mlp()
    opt = make(model.parameters())
    train(model, opt, X, y, idx, closure_loss=True)
    before, state_before = flat(model), _state_copy(opt)
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(X[idx[0]]), y[idx[0]])
    loss.backward()
    next(model.parameters()).grad[0, 0] = bad
    with pytest.raises(FloatingPointError, match="Non-finite gradient or loss at step 3"):
        opt.step(loss=loss)
    np.testing.assert_array_equal(flat(model), before)
    _assert_same_state(opt.state_dict()["state"], state_before["state"])
    opt.skip_nonfinite = True
    assert opt.step(loss=loss) is loss
    np.testing.assert_array_equal(flat(model), before)
    assert_skipped_once(opt, state_before)


def test_a_run_of_skipped_steps_is_warned_about_once():
    """skip_nonfinite=True is for an occasional bad batch: 10 skipped steps in a row say the
    model itself is non-finite, and one RuntimeWarning says so; a good step resets the run,
    and the total stays in stats()."""
    model, X, y = digits_mlp()
    opt = T.PSDASGD(model.parameters(), skip_nonfinite=True)
    train(model, opt, X, y, batches(2))

    def bad_step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X[:8]), y[:8]).backward()
        next(model.parameters()).grad[0, 0] = math.nan
        opt.step()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(9):
            bad_step()
    with pytest.warns(RuntimeWarning, match="10 steps in a row skipped"):
        bad_step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(5):  # the same run: not warned again
            bad_step()
    assert (opt.stats()["skipped"], opt.stats()["skip_run"]) == (15, 15)
    train(model, opt, X, y, batches(1))
    assert (opt.stats()["skipped"], opt.stats()["skip_run"]) == (15, 0)


def test_state_check_detects_a_change():
    """The unchanged-state check above is not vacuous."""
    idx = batches(4)
    model, X, y = digits_mlp()
    opt = T.PSDASGD(model.parameters())
    train(model, opt, X, y, idx[:3])
    before = _state_copy(opt)
    train(model, opt, X, y, idx[3:])
    with pytest.raises(AssertionError):
        _assert_same_state(opt.state_dict()["state"], before["state"])


def assert_late_layer_adam_equals_torch(path, device="cpu", steps=12, late=5):
    """ParameterScaled(constant, adam, first_moment) is torch.optim.Adam, also for a layer
    whose first gradient comes at step ``late``: both bias corrections (first and second
    moment) count the layer's own steps, as torch's per-parameter ``step`` does."""
    runs = []
    for make in (
        lambda ps: torch.optim.Adam(ps, lr=0.01),
        lambda ps: T.ParameterScaled(ps, constant(0.01), "adam", first_moment=0.9, **path),
    ):
        model, X, y = digits_mlp(device=device)
        opt = make(model.parameters())
        for k, idx in enumerate(batches(steps)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            if k < late:
                model[2].weight.grad = model[2].bias.grad = None
            opt.step()
        runs.append(flat(model))
    assert max_rel_dev(runs[1], runs[0]) <= 1e-12


@pytest.mark.parametrize("path", [{"foreach": True}, {"foreach": False}])
def test_late_layer_adam_equals_torch(path):
    assert_late_layer_adam_equals_torch(path)


@pytest.mark.parametrize("path", [{"foreach": True}, {"foreach": False}, {"fused": True}])
@pytest.mark.parametrize("key", ["momentum", "first_moment"])
def test_switching_on_state_making_hyperparameters_later_is_refused(path, key):
    """z (momentum) and m (first_moment) are made at a parameter's first step: turning either
    on afterwards raises, naming it, with parameters and state unchanged (not ignored, and
    not a failure mid-step)."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    opt = T.PSDASGD([w], momentum=0.0, **path)
    for _ in range(2):
        w.grad = torch.randn_like(w)
        opt.step()
    opt.param_groups[0][key] = 0.9
    before, state_before = w.detach().clone(), _state_copy(opt)
    with pytest.raises(ValueError, match=rf"Invalid {key}: 0.9 in group 0, whose parameters"):
        opt.step()
    assert torch.equal(w.detach(), before)
    _assert_same_state(opt.state_dict()["state"], state_before["state"])
    opt.param_groups[0][key] = 0.0  # back as it was: the run goes on
    opt.step()
    assert not torch.equal(w.detach(), before)


def test_sparse_gradient_is_refused():
    emb = torch.nn.Embedding(10, 3, sparse=True).double()
    opt = T.PSDASGD(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(TypeError, match="Sparse gradient for parameter 0 of group 0"):
        opt.step()


def test_pssps_needs_the_loss_and_a_lower_bound():
    p = _params()
    opt = T.PSSPS(p, f_star=1.0)
    p[0].grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="PSSPS needs the loss at step 0"):
        opt.step()
    with pytest.raises(ValueError, match=r"f = 0.5 < f_star = 1.0"):
        opt.step(loss=0.5)
    assert torch.equal(p[0].detach(), torch.ones(3, dtype=torch.float64))
    assert "global" not in opt.state or opt.state["global"]["k"] == 0


def _failing_after(opt, n_ok):
    """``opt._fetch`` that succeeds ``n_ok`` times, then raises (a collective timing out)."""
    real, calls = opt._fetch, []

    def fetch(*args, **kwargs):
        calls.append(args)
        if len(calls) > n_ok:
            raise RuntimeError("sync failed")
        return real(*args, **kwargs)

    return mock.patch.object(opt, "_fetch", side_effect=fetch)


PATHS = {"foreach": {}, "per-tensor": {"foreach": False}, "fused": {"fused": True}}
SYNC_FAILURES = [
    (make, where, path)
    for make in ("PSDASGD", "PSSPS")
    for where in ("step", "stats")
    for path in PATHS
    # PS-SPS has no pending sums, so stats() does not sync
    if not (where == "stats" and make == "PSSPS")
]


@pytest.mark.parametrize("make, where, path", SYNC_FAILURES)
def test_a_failed_host_sync_changes_nothing(make, where, path):
    """A host sync fails once (as a collective that times out would): the step or
    ``stats()`` raises, and the run goes on as if the failed call had not been made, bit for
    bit. A step's one sync finishes the last step's D-Adaptation sums (which must not be
    lost) and reads sweep 1's reductions, after sweep 1 has computed the rule state at step
    k (which must not be stored yet)."""
    idx = batches(8)
    runs = []
    for fail in (False, True):
        model, X, y = digits_mlp()
        opt = getattr(T, make)(model.parameters(), **PATHS[path])
        train(model, opt, X, y, idx[:4], closure_loss=True)
        if fail:
            broken = _failing_after(opt, 0)
            with broken, pytest.raises(RuntimeError, match="sync failed"):
                if where == "stats":
                    opt.stats()
                else:
                    train(model, opt, X, y, idx[4:5], closure_loss=True)
        train(model, opt, X, y, idx, start=4, closure_loss=True)
        runs.append((flat(model), opt.stats()))
    np.testing.assert_array_equal(runs[1][0], runs[0][0])
    assert runs[1][1] == runs[0][1]


def _scaled_run(make, idx, scaled, inf_at=-1):
    """float32 training, through ``torch.amp.GradScaler`` if ``scaled`` (an inf planted in
    a gradient at step ``inf_at``); the parameters, the optimizer's stats and the number of
    steps the scaler skipped."""
    model, X, y = digits_mlp(torch.float32)
    opt = make(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16) if scaled else None
    skipped = 0
    for k, i in enumerate(idx):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X[i]), y[i])
        if scaler is None:
            loss.backward()
            opt.step(loss=loss.detach())
            continue
        scaler.scale(loss).backward()
        if k == inf_at:
            model[0].weight.grad[0, 0] = math.inf
        scale = scaler.get_scale()
        scaler.step(opt, loss=loss.detach())  # PS-SPS needs it; PS-DA-SGD ignores it
        scaler.update()
        skipped += scaler.get_scale() < scale
    return flat(model), opt.stats(), skipped


@pytest.mark.parametrize(
    "make",
    [lambda ps: T.PSDASGD(ps, lr=0.01), lambda ps: T.PSSPS(ps, lr=0.1)],
    ids=["psdasgd", "pssps"],
)
def test_grad_scaler_works_and_its_skipped_steps_change_nothing(make):
    """With ``torch.amp.GradScaler`` (scale 2**16, a power of two, so unscaling is exact)
    the run is the plain one bit for bit. An inf in a gradient at step 3 makes the scaler
    skip that step without calling ``step()``; the run then equals a plain one without
    that batch: d, k and the state saw nothing of it."""
    idx = batches(12)
    plain, plain_stats, _ = _scaled_run(make, idx, False)
    scaled, scaled_stats, skipped = _scaled_run(make, idx, True)
    assert skipped == 0 and np.array_equal(scaled, plain) and scaled_stats == plain_stats
    with_inf, stats, skipped = _scaled_run(make, idx, True, inf_at=3)
    assert skipped == 1 and stats["k"] == len(idx) - 1
    without, without_stats, _ = _scaled_run(make, idx[:3] + idx[4:], False)
    np.testing.assert_array_equal(with_inf, without)
    assert stats == without_stats


def test_a_compiled_step_equals_the_eager_one():
    """``torch.compile(opt.step)`` (a smoke test: dynamo breaks the graph at the host sync
    and at the foreach reductions it cannot trace, and runs the rest compiled) gives the
    eager trajectory (bit for bit here; the bound leaves room for code generated for
    another instruction set, which may round differently). The first steps, and the first
    of the steady state (``sweeps.KERNEL_FROM``: the rule sweep computes the step's
    reductions from there on)."""
    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 2).double()
        opt = T.PSDASGD(model.parameters())
        step = torch.compile(opt.step) if compiled else opt.step
        X = torch.randn(32, 8, dtype=torch.float64)
        for _ in range(sweeps.KERNEL_FROM + 1):
            opt.zero_grad()
            model(X).square().mean().backward()
            step()
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]).numpy())
    assert max_rel_dev(runs[1], runs[0]) <= 1e-12


def _alternating_run(steps):
    """PS-DA-SGD on gradients that flip sign every step: <g', s> < 0, so dhat < 0 and d
    never grows (dadaptation#42's symptom)."""
    w = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    opt = T.PSDASGD([w])
    for k in range(steps):
        w.grad = torch.full_like(w, (-1.0) ** k)
        opt.step()
    return opt


def test_a_d_that_never_grows_is_warned_about_once():
    with pytest.warns(RuntimeWarning, match=r"d has not grown in 100 steps") as seen:
        opt = _alternating_run(150)
        opt.stats()
    stuck = [w for w in seen if "has not grown" in str(w.message)]
    assert len(stuck) == 1 and stuck[0].filename == __file__  # the user's line, not torch's
    assert opt.stats()["d_growths"] == 0 and opt.stats()["dhat"] < 0
    with warnings.catch_warnings():  # 99 steps are not enough to say
        warnings.filterwarnings("error", message=".*has not grown")
        _alternating_run(99).stats()


def test_a_d_that_grows_is_not_warned_about():
    model, X, y = digits_mlp()
    opt = T.PSDASGD(model.parameters(), lr=0.3)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*has not grown")
        train(model, opt, X, y, batches(110))
        assert opt.stats()["d_growths"] > 0


@pytest.mark.parametrize("tie_broken_upward", [False, True])
def test_a_tie_of_dhat_and_d_is_not_counted_as_growth(tie_broken_upward, monkeypatch):
    """A float16 parameter whose first steps are below its resolution keeps its gradient
    bitwise, so at step 1 dhat equals d in exact arithmetic: round-off breaks the tie one
    way or the other, by path and CPU (issue: the fused and for-loop paths disagreed on
    the counter). A rise within ``GROWTH_RTOL`` is not counted; step 2's dhat = 2 d is.
    ``tie_broken_upward`` plants the rounding that raises d by 1e-12 relative."""
    if tie_broken_upward:
        settle = stepsize.dadapt.settle

        def nudged(self, sc, sums):
            settled, info = settle(self, sc, sums)
            if settled.numerator > 0 and settled.dhat <= sc.d:  # the tie, broken upward
                nudge = sc.d * (1 + 1e-12)
                grew = settled.d_growths + int(self.grew(sc.d, nudge))
                settled = settled._replace(d=nudge, dhat=nudge, d_growths=grew)
            return settled, info

        monkeypatch.setattr(stepsize.dadapt, "settle", nudged)
    w = torch.nn.Parameter(torch.ones(4, dtype=torch.float16))
    opt = T.PSDASGD([w])
    counts = []
    for _ in range(3):
        w.grad = torch.full_like(w, 0.5)
        opt.step()
        counts.append(opt.stats()["d_growths"])
    assert torch.equal(w, torch.ones_like(w))  # below float16's resolution: g unchanged
    assert counts == [0, 0, 1]


def test_effective_lr_is_the_step_each_group_took():
    """A group's ``effective_lr`` is lam_k times the lr it stepped with: with identity
    scaling and no momentum a coordinate moves by exactly -effective_lr * g; a scheduler
    that changes lr after the step does not change it until the next step."""
    a, b = (torch.nn.Parameter(torch.ones(3, dtype=torch.float64)) for _ in range(2))
    groups = [{"params": [a]}, {"params": [b], "lr": 0.25}]
    opt = T.PSDASGD(groups, scaling="identity", momentum=0.0)
    for k in range(3):
        before = [a.detach().clone(), b.detach().clone()]
        grads = [torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) * (k + 1)] * 2
        a.grad, b.grad = (g.clone() for g in grads)
        opt.step()
        for p, x, g, group in zip((a, b), before, grads, opt.param_groups, strict=True):
            torch.testing.assert_close(p.detach(), x - group["effective_lr"] * g)
    lam = opt.stats()["lr"]
    assert lam > 0 and [g["effective_lr"] for g in opt.param_groups] == [lam, 0.25 * lam]
    opt.param_groups[1]["lr"] = 0.5  # as a scheduler would, after the step
    assert opt.param_groups[1]["effective_lr"] == 0.25 * lam


def test_stats_reports_the_estimates():
    model, X, y = digits_mlp()
    opt = T.PSDASGD(model.parameters())
    train(model, opt, X, y, batches(20))
    stats = opt.stats()
    assert stats["k"] == 20 and stats["d"] > 0 and stats["lr"] > 0 and stats["g0_norm"] > 0


@pytest.mark.parametrize("path", [{"foreach": True}, {"foreach": False}, {"fused": True}])
def test_a_step_size_that_blows_up_is_refused_by_name_and_changes_nothing(path):
    """d = d0 * max(alpha_0) overflows (d0 = 1e308, alpha_0 = sqrt(|g| + eps) = 10): the
    step is refused naming d and the step, with what to try; with skip_nonfinite=True it is
    skipped; either way the parameters and the state are as they were."""
    for skip in (False, True):
        w = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
        opt = T.PSDASGD([w], d0=1e308, skip_nonfinite=skip, **path)
        w.grad = torch.full((4,), 100.0, dtype=torch.float64)
        if skip:
            opt.step()
        else:
            message = r"Non-finite step size at step 0: lr = inf, d = inf"
            with pytest.raises(FloatingPointError, match=message):
                opt.step()
        assert torch.equal(w.detach(), torch.ones(4, dtype=torch.float64))
        st = opt.state[w]
        assert st["scaling.k"] == 0 and not torch.any(st["s"]) and "alpha" not in st
        assert opt.state["global"]["k"] == 0 and opt.state["global"]["d"] == 0.0


def test_a_non_finite_parameter_is_named_with_the_step_that_blew_it_up():
    model, X, y = digits_mlp(torch.float64)
    opt = T.PSDASGD(model.parameters())
    train(model, opt, X, y, batches(3))
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")  # as a diverged step would leave it
    loss = torch.nn.functional.cross_entropy(model(X[:32]), y[:32])
    opt.zero_grad()
    loss.backward()
    with pytest.raises(FloatingPointError, match=r"parameter 0 of group 0 itself holds non-finite"):
        opt.step()


def test_an_unbounded_pssps_step_is_warned_about():
    w = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.warns(RuntimeWarning, match="eta_max=inf leaves the Polyak step unbounded"):
        T.PSSPS(w)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        T.PSSPS(w, eta_max=0.01)
    assert not caught  # a cap: no warning
