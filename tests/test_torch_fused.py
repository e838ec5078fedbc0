"""``fused=True`` (torch_impl.fused: compiled sweeps) computes what theory and the foreach
path compute: hypothesis equality with theory, equality with the foreach path on a real
MLP, resume, switching paths mid-run, parameters that start late, non-contiguous and
empty parameters, refused steps, and bad input.

The kernels are compiled by inductor (a C++ compiler is needed); each rule type, dtype and
option set compiles once per process, which is most of this file's run time.
"""

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import paramscale.synthetic.strategies as sst
from paramscale import synthetic
from paramscale import torch_impl as T
from paramscale.theory import optimizers as O
from paramscale.theory.stepsize import constant
from tests.oracle import max_rel_dev
from tests.test_torch_optimizer import (
    _assert_same_state,
    _state_copy,
    assert_late_layer_adam_equals_torch,
    assert_skipped_once,
    batches,
    digits_mlp,
    flat,
    train,
)
from tests.test_torch_vs_theory import FLOAT32_RTOL, NONNEG, PL, VARIANTS, _compare, _rule_pair

ELEMENTWISE = ["identity", "adagrad", "rmsprop", "adam", "amsgrad", "amsgrad_torch"]


@st.composite
def cases(draw, families=PL):
    p = draw(sst.problems(families=families, max_n=7, max_m=24))
    return p, draw(sst.starting_points(p)), draw(st.sampled_from(ELEMENTWISE))


@st.composite
def starts(draw, families=PL):
    p = draw(sst.problems(families=families, max_n=7, max_m=24))
    return p, draw(sst.starting_points(p))


# Each rule and momentum compiles kernels of its own (~4 s each on 2 cores), so the rules
# are not drawn here: each element-wise rule runs on the fused path in a fixed case below,
# both momenta and both transfers in PS-DA-SGD's (the rule math is the foreach path's,
# equal to theory on every rule and drawn problem in test_torch_vs_theory). Hypothesis
# draws the problem, the start and what compiles nothing new (growth cap, c).
PSDASGD_CASES = [("default", "adam", 0.9), ("default", "amsgrad_torch", 0.0),
                 ("literal", "rmsprop", 0.9)]  # fmt: skip


@pytest.mark.parametrize("variant, name, momentum", PSDASGD_CASES)
@settings(max_examples=3)
@given(case=starts(), growth=st.sampled_from([np.inf, 1.05]))
def test_fused_psdasgd_equals_theory(variant, name, momentum, case, growth):
    p, x0 = case
    tr, rr = _rule_pair(name, p.n)
    kw = {"momentum": momentum, "growth_rate": growth, **VARIANTS[variant]}
    dev = _compare(
        O.ps_dadapt_sgd(scaling=tr, **kw),
        lambda q: T.PSDASGD(q, scaling=rr, fused=True, **kw),
        p,
        x0,
        foreach=None,
    )
    assert dev.within(1e-10), dev


@pytest.mark.parametrize("transfer", ["anchor", "anchor_active"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "foreach"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_anchored_transfers_equal_theory(transfer, fused, momentum):
    """The anchor (a vector state the engines keep, moved when d grows) on the fused and
    foreach paths, Adam scaling on LAD (per tensor: test_torch_vs_theory, every transfer
    on drawn problems; the anchor's logic does not depend on the scaling rule)."""
    p = synthetic.lad(24, 7, 1.0, seed=3)
    tr, rr = _rule_pair("adam", p.n)
    kw = {"momentum": momentum, "transfer": transfer}
    dev = _compare(
        O.ps_dadapt_sgd(scaling=tr, **kw),
        lambda q: T.PSDASGD(q, scaling=rr, fused=fused, **kw),
        p,
        p.x0,
        foreach=None if fused else True,
    )
    assert dev.within(1e-10), dev


@pytest.mark.parametrize("name", ["identity", "adagrad"])
@settings(max_examples=3)
@given(case=starts(NONNEG), c=st.sampled_from([0.5, 0.8]))
def test_fused_pssps_equals_theory(name, case, c):
    p, x0 = case  # f* = 0 is a lower bound on these families (see test_torch_vs_theory)
    tr, rr = _rule_pair(name, p.n)
    dev = _compare(
        O.ps_sps(0.0, c=c, scaling=tr),
        lambda q: T.PSSPS(q, 0.0, c=c, scaling=rr, fused=True),
        p,
        x0,
        loss=True,
        foreach=None,
    )
    assert dev.within(1e-10), dev


@pytest.mark.parametrize("name, b1", [("amsgrad", 0.9), ("identity", 0.0)])
@settings(max_examples=3)
@given(case=starts())
def test_fused_constant_step_with_first_moment_equals_theory(name, b1, case):
    p, x0 = case
    tr, rr = _rule_pair(name, p.n)
    dev = _compare(
        O.parameter_scaled(constant(0.05), tr, first_moment=b1),
        lambda q: T.ParameterScaled(q, constant(0.05), rr, first_moment=b1, fused=True),
        p,
        x0,
        foreach=None,
    )
    assert dev.within(1e-10), dev


@pytest.mark.parametrize("name, momentum", [("amsgrad", 0.9), ("rmsprop", 0.0)])
@settings(max_examples=3)
@given(case=starts(("logistic", "huber")))
def test_fused_float32_within_tolerance(name, momentum, case):
    # same bound and reasoning as test_torch_vs_theory.FLOAT32_RTOL
    p, x0 = case
    x0 = x0.astype(np.float32).astype(np.float64)
    tr, rr = _rule_pair(name, p.n)
    dev = _compare(
        O.ps_dadapt_sgd(scaling=tr, momentum=momentum),
        lambda q: T.PSDASGD(q, scaling=rr, momentum=momentum, fused=True),
        p,
        x0,
        foreach=None,
        dtype=torch.float32,
        steps=20,
    )
    assert dev.within(FLOAT32_RTOL), dev


def _run(make, steps=40, fused=True, dtype=torch.float64):
    model, X, y = digits_mlp(dtype)
    opt = make(model.parameters(), fused)
    train(model, opt, X.to(dtype), y, batches(steps), closure_loss=True)
    return flat(model), opt


MAKERS = {
    "psdasgd-adam": lambda ps, fused: T.PSDASGD(ps, fused=fused, foreach=not fused),
    "psdasgd-literal": lambda ps, fused: T.PSDASGD(
        ps, transfer="max", normaliser="max_alpha", fused=fused, foreach=not fused
    ),
    "psdasgd-amsgrad-shrink": lambda ps, fused: T.PSDASGD(
        ps, scaling="amsgrad", transfer="shrink", fused=fused, foreach=not fused
    ),
    "pssps-rmsprop": lambda ps, fused: T.PSSPS(
        ps, 0.0, scaling="rmsprop", fused=fused, foreach=not fused
    ),
    "constant-adagrad-b1": lambda ps, fused: T.ParameterScaled(
        ps, constant(0.01), "adagrad", first_moment=0.9, fused=fused, foreach=not fused
    ),
    "groups": lambda ps, fused: T.PSDASGD(
        _two_groups(ps), transfer="shrink", fused=fused, foreach=not fused
    ),
}


def _two_groups(params):
    """Weights with AMSGrad, biases with RMSProp at half the lr and no momentum: each group
    its own kernels, one global d."""
    ps = list(params)
    return [
        {"params": ps[0::2], "scaling": "amsgrad"},
        {"params": ps[1::2], "scaling": "rmsprop", "lr": 0.5, "momentum": 0.0},
    ]


@pytest.mark.parametrize("name", list(MAKERS))
def test_fused_equals_foreach_on_mlp(name):
    """Same run, both paths, 40 steps of a 64-32-10 MLP. The paths differ in operation
    order (fused multiply-adds, float64 partial sums) by an ulp per step, which non-convex
    training amplifies (measured 6e-9 on the literal PS-DA-SGD, whose d blows up here:
    docs/findings.md); a formula difference shows at 1e-3 or more."""
    ours, _ = _run(MAKERS[name])
    ref, _ = _run(MAKERS[name], fused=False)
    assert max_rel_dev(ours, ref) <= 1e-7


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_resume_is_bit_identical(dtype):
    assert_resume_bit_identical(MAKERS["psdasgd-amsgrad-shrink"], dtype, "cpu", 30)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "foreach"])
def test_an_anchored_run_resumes_bit_identical(fused):
    """The anchor and the flag that moves it are in the checkpoint (d grows in 30 steps)."""

    def make(params, _):
        return T.PSDASGD(params, transfer="anchor_active", fused=fused, foreach=not fused)

    assert_resume_bit_identical(make, torch.float64, "cpu", 30)


def assert_resume_bit_identical(make, dtype, device, steps):
    """``steps`` steps in one go equal half of them, a checkpoint through torch.save, a new
    model and optimizer loading it, and the other half: bit for bit."""
    idx = batches(steps)
    model, X, y = digits_mlp(dtype, device=device)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    opt = make(model.parameters(), True)
    train(model, opt, X, y, idx)
    uninterrupted = flat(model)

    model.load_state_dict(start)
    opt = make(model.parameters(), True)
    train(model, opt, X, y, idx[: steps // 2])
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model2, _, _ = digits_mlp(dtype, device=device, seed=7)
    model2.load_state_dict(ckpt["model"])
    opt2 = make(model2.parameters(), True)
    opt2.load_state_dict(ckpt["opt"])
    train(model2, opt2, X, y, idx, start=steps // 2)
    np.testing.assert_array_equal(flat(model2), uninterrupted)


def test_fused_checkpoint_of_another_dtype_is_cast():
    assert_checkpoint_of_another_dtype_cast("cpu")


def assert_checkpoint_of_another_dtype_cast(device):
    """A float64 checkpoint loaded into a float32 model: the state is cast to float32 (the
    fused kernels read memory as the state dtype: on CUDA, float64 state read as float32
    gave NaN and 4e8 in the parameters) and the fused step continues as the foreach path
    does from the same checkpoint."""
    idx = batches(6)
    model, X, y = digits_mlp(torch.float64, device=device)
    opt = MAKERS["psdasgd-adam"](model.parameters(), True)
    train(model, opt, X, y, idx[:3])
    ckpt = {"model": model.state_dict(), "opt": opt.state_dict()}
    runs = []
    for fused in (True, False):
        model32, _, _ = digits_mlp(torch.float32, device=device)
        model32.load_state_dict(ckpt["model"])
        opt32 = MAKERS["psdasgd-adam"](model32.parameters(), fused)
        opt32.load_state_dict(ckpt["opt"])
        for state in map(opt32.state.__getitem__, model32.parameters()):
            assert {t.dtype for t in state.values() if torch.is_tensor(t)} == {torch.float32}
        train(model32, opt32, X.float(), y, idx, start=3)
        runs.append(flat(model32))
    assert max_rel_dev(runs[0], runs[1]) <= 1e-5


def test_fused_state_of_another_dtype_or_shape_is_refused():
    assert_replaced_state_checked("cpu")


def assert_replaced_state_checked(device):
    """A state tensor replaced by hand with one of another dtype or shape, or a model cast
    to float64 after its state was made, is refused by name before the kernels would
    misread the state (or read past its end), and nothing changes."""
    idx = batches(3)
    model, X, y = digits_mlp(torch.float32, device=device)
    opt = MAKERS["psdasgd-adam"](model.parameters(), True)
    train(model, opt, X, y, idx[:2])
    state = opt.state[model[2].bias]
    for key, bad in (("s", state["s"].double()), ("scaling.v", state["scaling.v"][:-1])):
        good, state[key] = state[key], bad
        before = flat(model)
        with pytest.raises(ValueError, match=f"Invalid state '{key}' of parameter 3 of group 0"):
            train(model, opt, X, y, idx, start=2)
        np.testing.assert_array_equal(flat(model), before)
        state[key] = good
    train(model, opt, X, y, idx, start=2)
    before = flat(model)
    model.double()  # the parameters now float64, their float32 state read as float64
    with pytest.raises(ValueError, match="cast or moved, after its first step"):
        train(model, opt, X.double(), y, idx, start=2)
    np.testing.assert_array_equal(flat(model), before)


def test_switching_paths_mid_run():
    """20 fused steps then 20 foreach steps equal 40 foreach steps: the foreach path
    rebuilds alpha_{k-1} (which the fused path never stores) from the rule state."""
    make = MAKERS["psdasgd-amsgrad-shrink"]
    idx = batches(40)
    model, X, y = digits_mlp()
    opt = make(model.parameters(), True)
    train(model, opt, X, y, idx[:20])
    assert "alpha" not in opt.state[next(model.parameters())]
    opt.fused, opt.foreach = False, True
    train(model, opt, X, y, idx, start=20)
    ref, _ = _run(make, fused=False)
    assert max_rel_dev(flat(model), ref) <= 1e-7


def test_parameter_with_its_first_gradient_late():
    """The second layer gets no gradient for 5 steps. At step 5 it has no alpha_{k-1}, so
    it must not enter rho_k: with a fresh Adam state, alpha_{k-1} would be sqrt(eps) = 1e-4
    and rho ~ 1e3. Its bias correction counts its own steps, as theory's rule objects (the
    per-tensor path) and torch.optim.Adam do: the three paths agree (a path counting the
    global k would not)."""
    paths = [{"fused": True}, {"foreach": True}, {"foreach": False}]
    assert_late_parameter_agrees(paths, "cpu", 12)


def test_fused_late_layer_adam_equals_torch():
    """torch.optim.Adam, with a layer whose first gradient comes late (the first moment's
    bias correction counts the layer's own steps)."""
    assert_late_layer_adam_equals_torch({"fused": True})


def assert_late_parameter_agrees(paths, device, steps):
    runs = []
    for path in paths:
        model, X, y = digits_mlp(device=device)
        opt = T.PSDASGD(model.parameters(), transfer="shrink", **path)
        for k, idx in enumerate(batches(steps)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            if k < 5:
                model[2].weight.grad = model[2].bias.grad = None
            opt.step()
            if k == 5:
                assert opt.stats()["rho"] < 10
        assert opt.state[model[2].weight]["scaling.k"] == steps - 5
        assert opt.state[model[0].weight]["scaling.k"] == steps
        runs.append(flat(model))
    for run in runs[1:]:
        assert max_rel_dev(run, runs[0]) <= 1e-12


def test_non_contiguous_and_empty_parameters():
    torch.manual_seed(0)
    base = [torch.randn(4, 6, dtype=torch.float64).t(), torch.randn(5, dtype=torch.float64)]
    grads = [torch.randn(6, 4, dtype=torch.float64) for _ in range(6)]
    out = []
    for fused in (True, False):
        ps = [torch.nn.Parameter(b.clone().t().contiguous().t()) for b in base[:1]]
        ps += [torch.nn.Parameter(base[1].clone()), torch.nn.Parameter(torch.zeros(0))]
        assert not ps[0].is_contiguous()
        opt = T.PSDASGD(ps, momentum=0.9, transfer="shrink", fused=fused)
        for g in grads:
            ps[0].grad, ps[1].grad, ps[2].grad = g, g.reshape(-1)[:5].clone(), torch.zeros(0)
            opt.step()
        out.append(torch.cat([ps[0].detach().reshape(-1), ps[1].detach()]).numpy())
    assert max_rel_dev(out[0], out[1]) <= 1e-12


@pytest.mark.parametrize("oblivious", [True, False], ids=["as-built", "planted-specialised"])
def test_a_kernel_traced_on_one_element_serves_every_size(monkeypatch, oblivious):
    """A kernel first traced on a 1-element tensor (a 0-dim parameter, an output layer's
    bias) serves a larger one without compiling again: torch's dynamic shapes specialise
    sizes 0 and 1 unless traced size-obliviously (``compiled._size_oblivious``). Planted: with
    that left out, the second size recompiles (dynamo's ``error_on_recompile`` raises).
    One kernel each: the first step builds ``move_sweep`` only."""
    import contextlib

    from paramscale.torch_impl import compiled as C

    monkeypatch.setattr(C, "COMPILED", {})  # fresh code objects: traced here
    if not oblivious:
        monkeypatch.setattr(C, "_size_oblivious", contextlib.nullcontext)

    def first_step(n, fused=True):
        p = torch.nn.Parameter(torch.ones(n, dtype=torch.float64))
        p.grad = torch.full_like(p, 0.5)
        T.PSSPS([p], 0.0, eta_max=1.0, scaling="identity", fused=fused).step(loss=1.0)
        return p.detach()

    with torch._dynamo.config.patch(error_on_recompile=True):
        assert torch.equal(first_step(1), first_step(1, fused=False))
        if oblivious:
            assert torch.equal(first_step(3), first_step(3, fused=False))
        else:
            with pytest.raises(torch._dynamo.exc.RecompileError):
                first_step(3)


def test_plan_follows_moved_tensors_and_replaced_state():
    """The group's cached plan (torch_impl.plan) is rebuilt when a parameter's storage is
    swapped (``p.data = ...``; a stale plan would keep updating the old storage), a state
    tensor or a state dict is replaced: the run equals the foreach path doing the same."""
    assert_plan_follows_moves("cpu")


STALE_PLANS = [("data", "addresses"), ("state", "held"), ("dict", "states")]


@pytest.mark.parametrize("move, blind", STALE_PLANS)
def test_a_stale_plan_is_caught(monkeypatch, move, blind):
    assert_stale_plan_caught(monkeypatch, "cpu", move, blind)


def _run_with_moves(device, fused: bool, moves=("data", "state", "dict")) -> np.ndarray:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 4, dtype=torch.float64, device=device))
    b = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64, device=device))
    opt = T.PSDASGD([w, b], momentum=0.9, fused=fused, foreach=not fused)
    kept = []  # old storage kept alive: a stale plan (planted below) writes to live memory
    for i in range(9):
        if i == 3 and "data" in moves:
            kept.append(w.data)
            w.data = w.data.clone()  # a .data swap (module.half() does one): a new address
        if i == 5 and "state" in moves:
            opt.state[w]["z"] = w.detach().clone()  # a state tensor replaced (z = x)
        if i == 7 and "dict" in moves:
            opt.state[b] = dict(opt.state[b])  # a new state dict holding the same tensors
        w.grad = torch.randn_like(w)
        b.grad = torch.randn_like(b)
        opt.step()
    counts = [opt.state[p]["scaling.k"] for p in (w, b)]  # the state as the user sees it
    return np.concatenate([flat(torch.nn.ParameterList([w, b])), counts])


def assert_plan_follows_moves(device):
    fused, foreach = (_run_with_moves(device, f) for f in (True, False))
    assert max_rel_dev(fused, foreach) <= 1e-12


def assert_stale_plan_caught(monkeypatch, device, move, blind):
    """The check above fails when the plan check ignores the tensors' addresses, the state
    tensors or the state dicts (planted errors)."""
    from paramscale.torch_impl import plan as P

    check = P.current

    def blind_check(plan, ps, sts):
        if plan is None:
            return False
        if blind == "addresses":
            plan = plan._replace(addresses=[t.data_ptr() for t in plan.tensors])
        if blind == "held":
            plan = plan._replace(held=[o[k] for o, k in zip(plan.owners, plan.slots, strict=True)])
        return check(plan, ps, plan.states if blind == "states" else sts)

    monkeypatch.setattr(P, "current", blind_check)
    fused, foreach = (_run_with_moves(device, f, (move,)) for f in (True, False))
    assert not max_rel_dev(fused, foreach) <= 1e-12


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_fused_nonfinite_gradient_raises_or_skips_leaving_everything(bad):
    assert_nonfinite_step_refused(bad, "cpu")


def assert_nonfinite_step_refused(bad, device):
    """A NaN/Inf entry in one gradient at step 3: FloatingPointError, then (skip_nonfinite)
    a skipped step; parameters and state unchanged, bit for bit, both times."""
    idx = batches(3)
    model, X, y = digits_mlp(device=device)
    opt = T.PSDASGD(model.parameters(), fused=True)
    train(model, opt, X, y, idx)
    before, state_before = flat(model), _state_copy(opt)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(X[idx[0]]), y[idx[0]]).backward()
    model[2].bias.grad[3] = bad
    with pytest.raises(FloatingPointError, match="Non-finite gradient or loss at step 3"):
        opt.step()
    np.testing.assert_array_equal(flat(model), before)
    _assert_same_state(opt.state_dict()["state"], state_before["state"])
    opt.skip_nonfinite = True
    opt.step()
    np.testing.assert_array_equal(flat(model), before)
    assert_skipped_once(opt, state_before)


def _params(device="cpu"):
    return [torch.nn.Parameter(torch.ones(3, dtype=torch.float64, device=device))]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: T.PSDASGD(_params(), fused=True, foreach=True), r"Invalid foreach: True"),
        (lambda: T.PSDASGD(_params(), scaling="lars", fused=True), r"Invalid scaling: lars"),
    ],
)
def test_fused_invalid_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_kernel_that_cannot_be_built_says_what_to_do(monkeypatch):
    """No C++ compiler: the error says so and names the way out; nothing was changed."""
    import torch._inductor.config as inductor_config

    from paramscale.torch_impl import compiled as C

    monkeypatch.setattr(C, "COMPILED", {})
    torch._dynamo.reset()
    model, X, y = digits_mlp()
    before = flat(model)
    opt = T.PSDASGD(model.parameters(), fused=True)
    torch.nn.functional.cross_entropy(model(X), y).backward()
    # the config's own patch, not monkeypatch: pytest >= 9.2 undoes a module attribute
    # it did not find in the module's __dict__ by deleting it, which hides it for good
    broken = {"cpp.cxx": ("no-such-compiler-here",), "fx_graph_cache": False}
    with inductor_config.patch(broken):
        with pytest.raises(RuntimeError, match="fused=True: torch.compile could not build"):
            opt.step()
    np.testing.assert_array_equal(flat(model), before)
    assert all(st["scaling.k"] == 0 for key, st in opt.state.items() if key != "global")
