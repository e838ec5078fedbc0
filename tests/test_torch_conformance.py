"""torch_impl against PyTorch's own optimizer tests: ``TestOptimRenewed`` of pytorch's
test/test_optim.py, ported to pytest for PSDASGD, PSSPS and ParameterScaled on the CPU,
and the user expectations of a torch.optim optimizer around them (mixed dtypes in one
group, copies, weights-only checkpoints, hooks, per-group options, meta-device models,
maximize and weight decay, defaults that train).

torch's own machinery (``OptimizerInfo`` in torch.testing._internal.common_optimizers,
``instantiate_device_type_tests``) runs only inside torch's test harness (its TestCase,
``expecttest``), so the tests are ported instead: each names the torch test it follows,
and says where it deviates. Each runs over ``INPUTS``, our counterpart of an
OptimizerInfo's ``optim_inputs_func``. PS-SPS reads the loss, so every step passes a
closure (torch's ``step_requires_closure``).

Not ported, with the reason (docs/torch.md, "What torch's tests cover"):
- test_complex, test_complex_2d: complex parameters are refused (TypeError: test_errors);
- test_rosenbrock_sparse: sparse gradients are refused (TypeError: test_errors);
- capturable, differentiable, test_fused_does_not_step_if_foundinf, test_cpu_load_state_dict:
  not supported (a step synchronises with the host once; there is no grad_scale/found_inf);
- test_defaults_changed_to_foreach: the foreach path is the default on every device here
  (test_the_default_path_is_foreach);
- test_second_order_optims_return_consistent_types: LBFGS's;
- test_optim_infos_do_not_specify_global_cliquey_kwargs, test_errors: about torch's
  tables; our errors are tests/test_errors.py;
- test_mixed_device_dtype across two GPUs, test_fused_cpu_matches_cuda,
  test_peak_memory_foreach and the large-tensor tests: CUDA-only, and covered on one GPU
  by tests/test_torch_fused_triton.py.

The CUDA cases that are ported (test_state_dict_with_cuda_params, and the fused,
mixed-dtype and weights-only tests parametrised over ``DEVICES``) are marked ``cuda`` and
skipped without a GPU.
"""

import copy
import functools
import io
import math
import pickle
import re
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from torch.nn import Parameter
from torch.optim.lr_scheduler import ExponentialLR, ReduceLROnPlateau, StepLR
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from paramscale import torch_impl as T
from paramscale.theory.stepsize import constant
from tests.devices import DEVICES

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-v1.pt"


def _pssps(params, **kw):
    with warnings.catch_warnings():  # eta_max is given; the warning is tested elsewhere
        warnings.simplefilter("ignore", RuntimeWarning)
        return T.PSSPS(params, **kw)


INPUTS = {  # name -> constructor(params, **options): the optim inputs
    "psdasgd": T.PSDASGD,
    "psdasgd-identity": functools.partial(T.PSDASGD, scaling="identity", momentum=0.0),
    "psdasgd-amsgrad-first-moment": functools.partial(
        T.PSDASGD, scaling="amsgrad", first_moment=0.9
    ),
    "psdasgd-weight-decay": functools.partial(T.PSDASGD, weight_decay=0.1),
    "psdasgd-maximize": functools.partial(T.PSDASGD, maximize=True),
    "pssps": functools.partial(_pssps, eta_max=0.1),
    "pssps-identity": functools.partial(_pssps, scaling="identity", eta_max=1.0),
    "constant-adam": functools.partial(T.ParameterScaled, step=constant(0.01), scaling="adam"),
}
SCHEDULERS = [
    [lambda opt: StepLR(opt, gamma=0.9, step_size=10)],
    [lambda opt: ExponentialLR(opt, gamma=0.95), lambda opt: ReduceLROnPlateau(opt)],
]


def maximizes(name: str) -> bool:
    return "maximize" in name


def regression(dtype=torch.float32, contiguous=True, seed=0, device="cpu"):
    """torch's test problem: loss = ||W x + b||^2 (W 10x5, b 10)."""
    gen = torch.Generator().manual_seed(seed)
    if contiguous:
        weight = torch.randn((10, 5), generator=gen, dtype=dtype).to(device)
        bias = torch.randn(10, generator=gen, dtype=dtype).to(device)
    else:
        weight = torch.randn((10, 5, 2), generator=gen, dtype=dtype).to(device)[..., 0]
        bias = torch.randn((10, 2), generator=gen, dtype=dtype).to(device)[..., 0]
    x = torch.randn(5, generator=gen, dtype=dtype).to(device)
    return Parameter(weight), Parameter(bias), x


def closure_for(opt, weight, bias, x):
    def closure():
        opt.zero_grad()
        loss = (weight.mv(x) + bias).pow(2).sum()
        loss.backward()
        return loss

    return closure


def step_schedulers(schedulers, loss):
    for scheduler in schedulers:
        scheduler.step(loss) if isinstance(scheduler, ReduceLROnPlateau) else scheduler.step()


def assert_direction(name, final, initial):
    assert final > initial if maximizes(name) else final < initial


# -- the update goes the right way ---------------------------------------------------------
@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("with_lrsched", [False, True])
def test_forloop_goes_right_direction(name, contiguous, with_lrsched):
    """torch's test of that name: 20 steps of the per-tensor path (torch's forloop) lower
    ||W x + b||^2 (raise it with maximize), with and without LR schedulers."""
    for make_schedulers in SCHEDULERS if with_lrsched else [[]]:
        weight, bias, x = regression(contiguous=contiguous)
        opt = INPUTS[name]([weight, bias], foreach=False)
        schedulers = [make(opt) for make in make_schedulers]
        closure = closure_for(opt, weight, bias, x)
        initial = closure().item()
        for _ in range(20):
            loss = opt.step(closure)
            step_schedulers(schedulers, loss)
        assert_direction(name, closure().item(), initial)


@pytest.mark.parametrize("name", [n for n in INPUTS if not maximizes(n)])
def test_param_group_with_lrscheduler_goes_right_direction(name):
    """torch's test of that name: two groups (the second with its own lr), schedulers."""
    for make_schedulers in SCHEDULERS:
        weight, bias, x = regression()
        opt = INPUTS[name]([{"params": [weight]}, {"params": [bias], "lr": 0.5}])
        schedulers = [make(opt) for make in make_schedulers]
        closure = closure_for(opt, weight, bias, x)
        initial = closure().item()
        for _ in range(20):
            step_schedulers(schedulers, opt.step(closure))
        assert closure().item() < initial


@pytest.mark.parametrize("name", list(INPUTS))
def test_tensor_lr(name):
    """torch's test accepts a ValueError saying "lr as a Tensor is not supported"; here the
    step size is a float64 host scalar, so that is the answer, at construction and when a
    scheduler or a user sets one later."""
    weight, bias, _ = regression()
    with pytest.raises(ValueError, match="lr as a Tensor is not supported"):
        INPUTS[name]([weight, bias], lr=torch.tensor(0.01))
    opt = INPUTS[name]([weight, bias])
    opt.param_groups[0]["lr"] = torch.tensor(0.01)
    with pytest.raises(ValueError, match="lr as a Tensor is not supported"):
        opt.step(closure_for(opt, weight, bias, torch.randn(5)))


# -- the paths agree -------------------------------------------------------------------------
def _model(dtype, seed=1):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 1), torch.nn.Sigmoid()
    ).to(dtype=dtype)


def assert_paths_agree(name, dtype, flag, atol, rtol, iterations=7, device="cpu"):
    """torch's ``_test_derived_optimizers`` / ``_compare_between``: the same model stepped
    by the per-tensor path and by ``flag`` (foreach, fused), with a 0-dim parameter last,
    no gradients at iteration 2 (a no-op step), the second linear layer frozen at 3 and 4;
    parameters and every state tensor compared after each step."""
    x = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=dtype, device=device).reshape(3, 2)
    runs = []
    for value in (False, True):
        model = _model(dtype).to(device)
        scalar = torch.ones((), dtype=dtype, device=device, requires_grad=True)
        params = [*model.parameters(), scalar]
        opt = INPUTS[name](params, **({"foreach": False} if not value else {flag: True}))
        runs.append((model, scalar, params, opt))
    for i in range(iterations):
        for model, scalar, _, opt in runs:
            opt.zero_grad()
            model[2].requires_grad_(i not in (3, 4))

            def closure(model=model, scalar=scalar, i=i):
                if i == 2:
                    return torch.tensor(1.0, dtype=dtype, device=device)  # a no-op step
                loss = model(x).sum() + scalar * scalar
                loss.backward()
                return loss

            opt.step(closure)
        (_, _, ref, ref_opt), (_, _, got, got_opt) = runs
        for p, q in zip(ref, got, strict=True):
            torch.testing.assert_close(q, p, atol=atol, rtol=rtol)
            for key, value in ref_opt.state[p].items():
                if isinstance(value, torch.Tensor) and key in got_opt.state[q]:
                    torch.testing.assert_close(got_opt.state[q][key], value, atol=atol, rtol=rtol)
        assert_globals_agree(ref_opt.stats(), got_opt.stats(), atol, rtol, f"iteration {i}")


def assert_globals_agree(ref, got, atol, rtol, where=""):
    """The whole-model state of two paths: the same keys, counters (the decisions taken:
    steps, d's growths, skips) equal, estimates to the tolerance."""
    assert ref.keys() == got.keys(), where
    for key, value in ref.items():
        if isinstance(value, int):
            assert got[key] == value, f"{key} at {where}: {got[key]} != {value}"
        else:
            torch.testing.assert_close(got[key], value, atol=atol, rtol=rtol, msg=f"{key} {where}")


@pytest.mark.parametrize("name", list(INPUTS))
def test_foreach_matches_forloop(name):
    """torch's test of that name (float64)."""
    assert_paths_agree(name, torch.float64, "foreach", atol=1e-12, rtol=1e-10)


FUSED_CASES = [  # (name, dtype): float64 for every option, low precision for both methods
    *((name, torch.float64) for name in ("psdasgd", "psdasgd-weight-decay", "psdasgd-maximize")),
    *((name, dtype) for name in ("psdasgd", "pssps") for dtype in (torch.float16, torch.bfloat16)),
    ("pssps", torch.float64),
]
# (atol, rtol): float64 to round-off; low precision to its parameters' resolution (torch's
# default tolerances of the dtype: their state, kept in float32, is compared with them too)
FUSED_TOL = {
    torch.float64: (1e-12, 1e-10),
    torch.float16: (1e-5, 1e-3),
    torch.bfloat16: (1e-5, 1.6e-2),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, dtype", FUSED_CASES)
def test_fused_matches_forloop(name, dtype, device):
    """torch's test of that name, on the fused path (compiled kernels on the CPU, Triton on
    CUDA), in float64 and, for both methods, float16 and bfloat16 (float32:
    tests/test_torch_fused.py); the whole state is compared: every state tensor both paths
    keep (the fused path keeps no alpha) and the whole-model estimates and counters."""
    assert_paths_agree(name, dtype, "fused", *FUSED_TOL[dtype], device=device)


DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("flag", ["foreach", "fused"])
@pytest.mark.parametrize("name", ["psdasgd", "pssps", "constant-adam"])
def test_mixed_dtypes_in_one_group(name, flag, device):
    """torch's test_mixed_device_dtype on one device: float64, float32, float16 and
    bfloat16 parameters in one group (and an int64 tensor that is not a parameter), stepped
    by the per-tensor path and by ``flag``: equal to the dtype's tolerance. The state of a
    low-precision parameter (its master ``z``, moments) stays float32."""
    if flag == "fused" and name == "constant-adam":
        pytest.skip("fused=True runs the D-Adaptation and Polyak steps")
    gen = torch.Generator().manual_seed(0)
    base = [torch.rand(2, 3, generator=gen, dtype=torch.float64).to(device, dt) for dt in DTYPES]
    grads = [torch.rand(2, 3, generator=gen, dtype=torch.float64).to(p.dtype) for p in base]
    runs = []
    for value in (False, True):
        params = [p.clone().requires_grad_() for p in base]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt = INPUTS[name](params, **({"foreach": False} if not value else {flag: True}))
        for _ in range(7 if flag == "foreach" else 2):
            opt.step(loss=1.0)
        runs.append((params, opt))
    (ref, ref_opt), (got, got_opt) = runs
    for p, q in zip(ref, got, strict=True):
        assert q.dtype == p.dtype
        rtol, atol = torch.testing._comparison.get_tolerances(p.dtype, rtol=None, atol=None)
        torch.testing.assert_close(q, p, rtol=5 * rtol, atol=5 * atol)
        for key in ("z", "s", "scaling.v"):
            if key in ref_opt.state[p] and key in got_opt.state[q]:
                expected = torch.float64 if p.dtype == torch.float64 else torch.float32
                assert got_opt.state[q][key].dtype == expected, (key, p.dtype)


def test_fused_error_on_params_on_meta():
    """torch's test of that name: an optimizer made over a meta-device model with
    fused=True; a step there raises RuntimeError; after ``to_empty`` the steps run."""
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sigmoid())
    opt = T.PSDASGD(model.parameters(), fused=True)
    with torch.device("meta"):
        for p in model.parameters():
            p.grad = torch.rand_like(p)
    with pytest.raises(RuntimeError, match="meta"):
        opt.step()
    opt.zero_grad(set_to_none=True)
    model.to_empty(device="cpu")
    for p in model.parameters():
        torch.nn.init.normal_(p)
        p.grad = torch.rand_like(p)
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


# -- param groups ----------------------------------------------------------------------------
def optim_input(name):
    """An input of ``INPUTS`` as torch's OptimizerInfo gives it: (class, keyword arguments)."""
    make = INPUTS[name]
    if make is _pssps or getattr(make, "func", None) is _pssps:
        cls = T.PSSPS
    else:
        cls = make.func if isinstance(make, functools.partial) else make
    return cls, dict(getattr(make, "keywords", {}))


# torch's _get_optim_inputs_including_global_cliquey_kwargs: each input as it is, and with
# each implementation flag (fused with the inputs whose kernels this file compiles anyway)
CLIQUEY = [
    (name, flags)
    for name in INPUTS
    if optim_input(name)[0] in (T.PSDASGD, T.PSSPS)
    for flags in ({}, {"foreach": False}, {"foreach": True}, {"fused": True})
    if "fused" not in flags or name in ("psdasgd", "pssps")
]


@pytest.mark.parametrize("name, flags", CLIQUEY)
def test_param_groups_weight_decay(name, flags):
    """torch's test of that name as upstream writes it: the optimizer is built from two
    groups that each carry every keyword argument of the input, implementation flags
    (foreach, fused) and the step rule's options (eta_max) included, the bias' group with
    weight_decay 0; the constructor gets nothing else. PS-SPS reads the loss, so its steps
    pass the closure (torch's step_requires_closure)."""
    cls, kwargs = optim_input(name)
    weight_kwargs = {**kwargs, **flags}
    bias_kwargs = copy.deepcopy(weight_kwargs)
    bias_kwargs["weight_decay"] = 0.0
    weight = Parameter(torch.randn((10, 5)))
    bias = Parameter(torch.randn(10))
    input = torch.randn(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # PSSPS: eta_max read from the groups
        optimizer = cls(
            [dict(params=[weight], **weight_kwargs), dict(params=[bias], **bias_kwargs)]
        )
    assert optimizer.step_rule == INPUTS[name]([Parameter(torch.ones(1))], **flags).step_rule

    def closure():
        optimizer.zero_grad()
        loss = (weight.mv(input) + bias).pow(2).sum()
        loss.backward()
        return loss

    loss = (weight.mv(input) + bias).pow(2).sum()
    initial_value = loss.item()
    for _ in range(20):
        if cls is T.PSSPS:
            loss = optimizer.step(closure)
        else:
            loss = closure()
            optimizer.step()
    if weight_kwargs.get("maximize", False):
        assert loss.item() > initial_value
    else:
        assert loss.item() < initial_value


def test_groups_that_agree_on_a_flag_take_its_path():
    """fused=True in every group is the fused path (the optimizer's flag); fused=True in one
    group and foreach=True in the other is a conflict, refused naming both groups."""
    weight, bias, _ = regression()
    opt = T.PSDASGD([{"params": [weight], "fused": True}, {"params": [bias], "fused": True}])
    assert opt.fused and opt.foreach is None
    with pytest.raises(
        ValueError,
        match=r"Invalid foreach in param groups \(group 0: None "
        r"\(the constructor's\); group 1: True\)",
    ):
        T.PSDASGD([{"params": [weight], "fused": True}, {"params": [bias], "foreach": True}])
    with pytest.raises(ValueError, match="Invalid foreach: True with fused=True"):
        T.PSDASGD(
            [
                {"params": [weight], "fused": True, "foreach": True},
                {"params": [bias], "fused": True, "foreach": True},
            ]
        )


@pytest.mark.parametrize("name", list(INPUTS))
def test_param_groups_lr(name):
    """torch's test of that name: a group whose lr is 1e-28 leaves its parameter as it
    was while the other group trains."""
    weight, bias, x = regression()
    irrelevant = Parameter(torch.randn(2))
    before = irrelevant.detach().clone()
    opt = INPUTS[name]([{"params": [weight, bias], "lr": 1.0}, {"params": [irrelevant]}], lr=1e-28)
    closure = closure_for(opt, weight, bias, x)
    initial = closure().item()

    def with_irrelevant():
        loss = closure()
        irrelevant.grad = torch.rand_like(irrelevant)
        return loss

    for _ in range(20):
        opt.step(with_irrelevant)
    assert_direction(name, closure().item(), initial)
    assert torch.equal(irrelevant, before)


@pytest.mark.parametrize("path", [{"foreach": False}, {"foreach": True}])
def test_every_group_key_is_honoured_per_group(path):
    """With a step rule that couples nothing across groups (a constant step), one
    optimizer with two groups of different ``scaling``, ``momentum``, ``first_moment``,
    ``weight_decay``, ``maximize`` and ``lr`` is two optimizers, one per group."""
    options = [
        {"scaling": "adam", "momentum": 0.9, "first_moment": 0.9, "weight_decay": 0.1,
         "maximize": False, "lr": 1.0},
        {"scaling": "rmsprop", "momentum": 0.0, "first_moment": 0.0, "weight_decay": 0.0,
         "maximize": True, "lr": 0.5},
    ]  # fmt: skip
    gen = torch.Generator().manual_seed(5)
    starts = [torch.randn(4, 3, generator=gen, dtype=torch.float64) for _ in options]
    grads = [
        [torch.randn(4, 3, generator=gen, dtype=torch.float64) for _ in options] for _ in range(6)
    ]
    joint = [Parameter(x.clone()) for x in starts]
    alone = [Parameter(x.clone()) for x in starts]
    step = constant(0.01)
    opt = T.ParameterScaled(
        [{"params": [p], **o} for p, o in zip(joint, options, strict=True)], step, **path
    )
    singles = [
        T.ParameterScaled([p], step, **o, **path) for p, o in zip(alone, options, strict=True)
    ]
    for gs in grads:
        for p, q, g in zip(joint, alone, gs, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        for single in singles:
            single.step()
    for p, q in zip(joint, alone, strict=True):
        assert torch.equal(p, q)
    assert not torch.equal(joint[0], starts[0]) and not torch.equal(joint[1], starts[1])


@pytest.mark.parametrize("name", list(INPUTS))
def test_step_is_noop_when_params_have_no_grad(name):
    params = [torch.randn(2, 3) for _ in range(2)]
    before = [p.clone() for p in params]
    opt = INPUTS[name](params)
    opt.step(lambda: torch.tensor([1.0]))
    assert all(torch.equal(p, q) for p, q in zip(params, before, strict=True))


@pytest.mark.parametrize("name", [n for n in INPUTS if "weight-decay" not in n])
def test_step_is_noop_for_zero_grads(name):
    param = torch.randn((5, 1), requires_grad=True)
    before = param.detach().clone()
    opt = INPUTS[name]([param])
    param.grad = torch.zeros_like(param)
    opt.step(lambda: torch.tensor([1.0]))
    assert torch.equal(param, before)


@pytest.mark.parametrize(
    "group, message",
    [
        ({"weight_dcay": 0.1}, "Invalid param group key: 'weight_dcay' in group 1"),
        ({"eta_max": 1.0}, "Invalid param group key: 'eta_max' in group 1"),  # PS-SPS's
        (
            {"d0": 1.0},
            r"Invalid d0 in param groups \(group 0: 1e-06 \(the constructor's\); "
            r"group 1: 1.0\): d0 is the whole model's option",
        ),
        ({"fused": True}, r"Invalid fused in param groups \(group 0: False \(the constructor"),
    ],
)
def test_a_group_key_that_would_be_ignored_is_refused(group, message):
    """An unknown key, and a whole-model option that one group sets to another value than
    the other's (the constructor's), are refused, naming the groups, at construction and by
    ``add_param_group``."""
    weight, bias, _ = regression()
    with pytest.raises(ValueError, match=message):
        T.PSDASGD([{"params": [weight]}, {"params": [bias], **group}])
    opt = T.PSDASGD([weight])
    with pytest.raises(ValueError, match=message.replace("group 1", "group 1")):
        opt.add_param_group({"params": [bias], **group})
    assert len(opt.param_groups) == 1  # the refused group is taken out again


def test_scheduler_keys_and_named_parameters_are_accepted():
    """Keys torch's LR schedulers write (initial_lr, max_lr, ...) and ``param_names``."""
    weight, bias, _ = regression()
    opt = T.PSDASGD([("w", weight), ("b", bias)])
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    T.PSDASGD([{"params": [weight], "initial_lr": 1.0, "max_lr": 2.0, "swa_lr": 0.1}])


def test_maximize_with_pssps_is_refused():
    weight, _, _ = regression()
    message = "Invalid maximize: True in group 0 with a step rule that reads the loss"
    with pytest.raises(ValueError, match=message):
        _pssps([weight], eta_max=0.1, maximize=True)


@pytest.mark.parametrize("path", [{"foreach": False}, {"foreach": True}, {"fused": True}])
def test_maximize_is_the_step_on_the_negated_gradient(path):
    """maximize=True with gradients g is, bit for bit, maximize=False with -g."""
    runs = []
    for maximize, sign in ((True, 1.0), (False, -1.0)):
        gen = torch.Generator().manual_seed(3)
        params = [Parameter(torch.randn(4, 3, generator=gen, dtype=torch.float64))]
        opt = T.PSDASGD(params, maximize=maximize, **path)
        for _ in range(5):
            params[0].grad = sign * torch.randn(4, 3, generator=gen, dtype=torch.float64)
            opt.step()
        runs.append(params[0].detach())
    assert torch.equal(*runs)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("path", [{"foreach": False}, {"foreach": True}, {"fused": True}])
def test_weight_decay_is_decoupled(path, momentum):
    """Decoupled weight decay, as AdamW: with gradients that do not depend on x, the step
    sizes are those of the run without decay (no statistic sees it), and the iterate
    follows z' = (1 - effective_lr * wd) z + (the step of the run without decay),
    x' = beta x + (1 - beta) z'. Checked in float64 against that recurrence."""
    wd = 0.3

    def run(weight_decay):
        gen = torch.Generator().manual_seed(4)
        p = Parameter(torch.randn(4, 3, generator=gen, dtype=torch.float64))
        opt = T.PSDASGD([p], momentum=momentum, weight_decay=weight_decay, **path)
        zs, lrs = [], []
        for _ in range(6):
            p.grad = torch.randn(4, 3, generator=gen, dtype=torch.float64)
            opt.step()
            zs.append(opt.state[p].get("z", p).detach().clone())
            lrs.append(opt.param_groups[0]["effective_lr"])
        return p.detach(), zs, lrs

    x_plain, z_plain, lr_plain = run(0.0)
    x_decayed, z_decayed, lr_decayed = run(wd)
    assert lr_decayed == lr_plain
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    z, z_prev = x.clone(), x.clone()
    for k in range(6):
        z = (1 - lr_plain[k] * wd) * z + (z_plain[k] - z_prev)
        z_prev = z_plain[k]
        x = momentum * x + (1 - momentum) * z if momentum else z
        torch.testing.assert_close(z_decayed[k], z, rtol=1e-12, atol=1e-16)
    torch.testing.assert_close(x_decayed, x, rtol=1e-12, atol=1e-16)
    assert not torch.equal(x_decayed, x_plain)


# -- state dicts, copies, checkpoints --------------------------------------------------------
def _params_like(params):
    with torch.no_grad():
        return [Parameter(p.clone()) for p in params]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("path", [{"foreach": True}, {"fused": True}])
def test_state_dict_with_cuda_params(path):
    """torch's test of that name: a checkpoint of a CPU run loaded into an optimizer over
    the same parameters on CUDA (foreach or Triton) is not changed by loading, and the two
    runs then agree."""
    weight, bias, x = regression()
    opt = T.PSDASGD([weight, bias], foreach=True)
    closure = closure_for(opt, weight, bias, x)
    for _ in range(3):
        opt.step(closure)
    with torch.no_grad():
        params_cuda = [Parameter(p.detach().to("cuda")) for p in (weight, bias)]
    opt_cuda = T.PSDASGD(params_cuda, **path)
    saved = copy.deepcopy(opt.state_dict())
    opt_cuda.load_state_dict(copy.deepcopy(saved))
    assert_same(saved, opt.state_dict())
    closure_cuda = closure_for(opt_cuda, *params_cuda, x.to("cuda"))
    for _ in range(5):
        opt.step(closure)
        opt_cuda.step(closure_cuda)
    for p, q in zip((weight, bias), params_cuda, strict=True):
        torch.testing.assert_close(q.cpu(), p, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize("named", [False, True])
def test_state_dict_deterministic(name, named):
    """torch's test of that name: a state dict loaded into a fresh optimizer over clones
    of the parameters continues bit for bit, and the two state dicts then agree."""
    weight, bias, x = regression()
    params = [weight, bias]
    opt = INPUTS[name]([("w", weight), ("b", bias)] if named else params)
    closure = closure_for(opt, weight, bias, x)
    for _ in range(10):
        opt.step(closure)
    clones = _params_like(params)
    opt_c = INPUTS[name](clones)
    opt_c.load_state_dict(copy.deepcopy(opt.state_dict()))
    closure_c = closure_for(opt_c, *clones, x)
    for _ in range(10):
        opt.step(closure)
        opt_c.step(closure_c)
        assert all(torch.equal(p, q) for p, q in zip(params, clones, strict=True))
    strip = _without_param_names
    assert_same(strip(opt.state_dict()), strip(opt_c.state_dict()))


def assert_same(a, b, where="state_dict"):
    """Equal, recursively: tensors bit for bit (and dtype), everything else by ``==``."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where  # NaN equals NaN here


def _without_param_names(state_dict):
    state_dict = copy.deepcopy(state_dict)
    for group in state_dict["param_groups"]:
        group.pop("param_names", None)
    return state_dict


@pytest.mark.parametrize("name", list(INPUTS))
def test_can_load_older_state_dict(name):
    """torch's test of that name: a state dict without the group keys added since
    (weight_decay, maximize, effective_lr) loads, and the optimizer steps on. Deviation:
    the loss is the square of torch's (a sum of outputs), so that f* = 0 bounds it."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 2, 1, stride=2), torch.nn.BatchNorm2d(2))
    x = torch.rand(1, 4, 16, 16)
    opt = INPUTS[name](model.parameters())

    def closure():
        opt.zero_grad()
        loss = model(x).square().sum()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    old = copy.deepcopy(opt.state_dict())
    for group in old["param_groups"]:
        for key in ("weight_decay", "maximize", "effective_lr"):
            group.pop(key)
    opt.load_state_dict(old)
    opt.step(closure)
    assert opt.param_groups[0]["weight_decay"] == 0.0 and opt.param_groups[0]["maximize"] is False


@pytest.mark.parametrize("named_from, named_to", [(False, True), (True, False), (True, True)])
def test_can_load_from_to_named_state_dict(named_from, named_to):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Linear(2, 1))
    x = torch.rand(3, 4)

    def params(named):
        return model.named_parameters() if named else model.parameters()

    opt = T.PSDASGD(params(named_from))
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
    opt2 = T.PSDASGD(params(named_to))
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    opt2.step()
    names = ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert opt2.state_dict()["param_groups"][0]["param_names"] == names


@pytest.mark.parametrize("name", list(INPUTS))
def test_save_load_equality_with_weights_only(name):
    """torch's test of that name: ``torch.load(weights_only=True)`` reads the state dict
    (the scaling rule is saved as its name and hyperparameters) and it equals the saved."""
    weight, bias, x = regression()
    opt = INPUTS[name]([weight, bias])
    closure = closure_for(opt, weight, bias, x)
    for _ in range(3):
        opt.step(closure)
    sd = opt.state_dict()
    assert sd["param_groups"][0]["scaling"]["rule"] == opt.param_groups[0]["scaling"].name
    with tempfile.TemporaryFile() as f:
        torch.save(sd, f)
        f.seek(0)
        loaded = torch.load(f, weights_only=True)
    assert_same(loaded, sd)


def resume_mismatch(name, path, device="cpu", tamper=None):
    """Where a run saved at step 4 (through torch.save, read with weights_only=True into a
    fresh optimizer over clones of the parameters) and continued for 4 steps departs from
    the uninterrupted run in the same process: None when the parameters and ``stats()``
    agree bit for bit. ``tamper(state_dict)`` edits the checkpoint in between (a planted
    error of the save/load round trip)."""
    weight, bias, x = regression(device=device)
    opt = INPUTS[name]([weight, bias], **path)
    closure = closure_for(opt, weight, bias, x)
    for _ in range(4):
        opt.step(closure)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    if tamper is not None:
        tamper(saved)
    clones = _params_like([weight, bias])
    opt_c = INPUTS[name](clones, **path)
    opt_c.load_state_dict(saved)
    closure_c = closure_for(opt_c, *clones, x)
    for _ in range(4):
        opt.step(closure)
        opt_c.step(closure_c)
    for what, a, b in (("weight", weight, clones[0]), ("bias", bias, clones[1])):
        if not torch.equal(a, b):
            return f"{what} differs by {(a - b).abs().max().item():.3g}"
    if opt.stats() != opt_c.stats():
        return f"stats differ: {opt.stats()} != {opt_c.stats()}"
    return None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", [{"foreach": False}, {"foreach": True}, {"fused": True}])
@pytest.mark.parametrize("name", ["psdasgd", "pssps"])
def test_a_weights_only_checkpoint_continues_bit_for_bit(name, path, device):
    """Bit-exact resume, a property of one machine: saved and loaded with
    weights_only=True, the run continues bit for bit against the uninterrupted run of the
    same process, on each path (the fused one: compiled on the CPU, Triton on CUDA)."""
    assert resume_mismatch(name, path, device) is None


@pytest.mark.parametrize("buffer", ["s", "z", "scaling.v"])
def test_the_resume_check_catches_a_dropped_state_buffer(buffer):
    """A resume that drops one state buffer (the loader making it afresh, as zeros) is
    caught by ``resume_mismatch``: the planted error of the test above."""

    def drop(state_dict):
        for st in state_dict["state"].values():
            if buffer in st:
                st[buffer] = torch.zeros_like(st[buffer])

    assert resume_mismatch("psdasgd", {"foreach": True}, tamper=drop) is not None


def _fixture_run():
    """The run ``tests/fixtures/make_checkpoint.py`` saved: float64 digits-free least
    squares, PSDASGD at its defaults, 3 steps, then 2 more."""
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(20, generator=gen, dtype=torch.float64)
    x = Parameter(torch.zeros(6, dtype=torch.float64))
    return A, b, x


# The fixture's continuation was computed on another CPU. Float64 forward and backward
# passes (BLAS, vectorised kernels) round differently across CPUs and kernel families:
# measured 4e-16 relative after the two steps (AMD EPYC with ATEN_CPU_CAPABILITY default,
# avx2 and avx512, against the Intel Xeon that wrote it). 1e-12 leaves four orders of
# margin for round-off; a change to the method's arithmetic moves x by O(1) relative.
FIXTURE_RTOL = 1e-12


def _named(state_dict):
    """A format-1 state dict as today's reads it back: the rule state named, not numbered
    (``scaling.0`` is the step count ``scaling.k``, ``scaling.1`` the second moment
    ``scaling.v``, ``scaling.2`` the third slot ``scaling.m``), and the global state's
    entries at their stored values."""
    state = dict(state_dict["state"])
    for key, st in state.items():
        if key != "global":
            names = {f"scaling.{i}": f"scaling.{n}" for i, n in enumerate("kvm")}
            state[key] = {names.get(k, k): v for k, v in st.items()}
    return {**state_dict, "state": state}


def test_the_checkpoint_of_release_1_loads_and_continues():
    """A checkpoint written by format 1 (tests/fixtures/checkpoint-v1.pt, made by
    tests/fixtures/make_checkpoint.py) loads with weights_only=True into today's PSDASGD;
    its state and options read back exactly as saved (stored values, not computed ones);
    and the two steps after it agree with the parameters that run saved to
    ``FIXTURE_RTOL`` (round-off across CPUs): a change to the checkpoint format or to the
    method's arithmetic fails here."""
    saved = torch.load(FIXTURE, weights_only=True)
    assert saved["format"] == 1
    A, b, x = _fixture_run()
    with torch.no_grad():
        x.copy_(saved["x_at_3"])
    opt = T.PSDASGD([x])
    opt.load_state_dict(saved["optimizer"])
    assert_same(opt.state_dict(), _named(saved["optimizer"]))
    for _ in range(2):
        opt.zero_grad()
        (A @ x - b).square().mean().backward()
        opt.step()
    torch.testing.assert_close(x.detach(), saved["x_at_5"], rtol=FIXTURE_RTOL, atol=0)


@pytest.mark.parametrize("name", list(INPUTS))
def test_deepcopy_and_pickle_keep_everything_to_step_on(name):
    """torch's test_deepcopy_copies_all_public_attrs, and more: a deepcopy and a pickled
    copy step on exactly as the original (the step rule and the options are kept)."""
    weight, bias, x = regression()
    opt = INPUTS[name]([weight, bias])
    closure = closure_for(opt, weight, bias, x)
    for _ in range(3):
        opt.step(closure)

    def public(obj):
        return {k for k in obj.__dict__ if not k.startswith("_")}

    for copied in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert public(copied) == public(opt)
        params = copied.param_groups[0]["params"]
        closure_c = closure_for(copied, *params, x)
        reference = copy.deepcopy(opt)
        ref_params = reference.param_groups[0]["params"]
        closure_r = closure_for(reference, *ref_params, x)
        for _ in range(3):
            copied.step(closure_c)
            reference.step(closure_r)
        assert all(torch.equal(p, q) for p, q in zip(params, ref_params, strict=True))


# -- hooks -----------------------------------------------------------------------------------
def test_state_dict_pre_and_post_hooks():
    """torch's test_state_dict_pre_hook, _post_hook and _pre_post_hook."""
    param = torch.rand(2, 3, requires_grad=True)
    opt = T.PSDASGD([param])

    def pre(optimizer):
        optimizer.state["test"] = 1

    def post(optimizer, state_dict):
        state_dict["ran_pre_hook"] = "test" in state_dict["state"]
        state_dict["state"].pop("test", None)
        return state_dict

    opt.register_state_dict_pre_hook(pre)
    assert opt.state_dict()["state"]["test"] == 1
    opt.register_state_dict_post_hook(post)
    sd = opt.state_dict()
    assert sd["ran_pre_hook"] and "test" not in sd["state"]


def test_load_state_dict_pre_hooks_run_before_the_checks_and_in_order():
    """torch's test_load_state_dict_pre_hook_and_prepend, _post_hook and _pre_post_hook;
    and a pre-hook that repairs a checkpoint (here: shapes saved transposed) runs before
    this optimizer's shape check, as torch runs pre-hooks before its own validation."""
    param = torch.rand(2, 3, requires_grad=True)
    opt = T.PSDASGD([param])
    param.grad = torch.rand_like(param)
    opt.step()
    state_dict = opt.state_dict()

    def lr_002(optimizer, sd):
        sd["param_groups"][0]["lr"] = 0.002

    def lr_003(optimizer, sd):
        sd = copy.deepcopy(sd)
        sd["param_groups"][0]["lr"] = 0.003
        return sd

    def post(optimizer):
        optimizer.state["ran_post_hook"] = True

    opt.register_load_state_dict_pre_hook(lr_002)
    opt.load_state_dict(state_dict)
    assert opt.param_groups[0]["lr"] == 0.002
    opt.register_load_state_dict_pre_hook(lr_003, prepend=True)
    opt.load_state_dict(state_dict)
    assert opt.param_groups[0]["lr"] == 0.002  # prepended: the other hook runs after it
    opt.register_load_state_dict_post_hook(post)
    opt.load_state_dict(opt.state_dict())
    assert opt.state["ran_post_hook"]

    broken = copy.deepcopy(state_dict)
    for key, value in broken["state"][0].items():
        if isinstance(value, torch.Tensor) and value.shape == (2, 3):
            broken["state"][0][key] = value.t().contiguous()

    def repair(optimizer, sd):
        for key, value in sd["state"][0].items():
            if isinstance(value, torch.Tensor) and value.shape == (3, 2):
                sd["state"][0][key] = value.t().contiguous()

    fresh = T.PSDASGD([param])
    with pytest.raises(ValueError, match="has shape"):
        fresh.load_state_dict(copy.deepcopy(broken))
    fresh.register_load_state_dict_pre_hook(repair)
    fresh.load_state_dict(broken)


def test_step_hooks_fire_in_order():
    """torch's test_step_pre_hook, test_step_post_hook and test_step_all_hooks."""
    data = []
    params = [torch.tensor([1.0, 1.0], requires_grad=True)]
    opt, sgd = T.PSDASGD(params), torch.optim.SGD(params)
    handles = [
        register_optimizer_step_pre_hook(lambda *a: data.append(0)),
        register_optimizer_step_post_hook(lambda *a: data.append(5)),
    ]
    for o in (opt, sgd):
        handles.append(o.register_step_pre_hook(lambda *a: data.append(1)))
        handles.append(o.register_step_post_hook(lambda *a: data.append(2)))
    try:
        opt.step()
        sgd.step()
        opt.step()
    finally:
        for handle in handles:
            handle.remove()
    assert data == [0, 1, 2, 5] * 3
    opt.step()
    assert data == [0, 1, 2, 5] * 3


@pytest.mark.parametrize("name", list(INPUTS))
def test_optimizer_can_be_printed_and_has_state_after_a_step(name):
    """torch's test_optimizer_can_be_printed and test_non_empty_state."""
    model = torch.nn.Linear(5, 5)
    opt = INPUTS[name](model.parameters())
    assert type(opt).__name__ in repr(opt)
    opt.step(lambda: model(torch.rand(2, 5)).sum().backward() or torch.tensor(1.0))
    assert all(len(state) > 0 for state in opt.state.values())


def test_the_default_path_is_foreach():
    """The counterpart of torch's test_defaults_changed_to_foreach: the default step runs
    the multi-tensor path (on every device)."""
    from unittest import mock

    from paramscale.torch_impl import multi_tensor

    p = Parameter(torch.randn(3))
    p.grad = torch.randn(3)
    opt = T.PSDASGD([p])
    with mock.patch.object(
        multi_tensor, "_multi_tensor_rule", wraps=multi_tensor._multi_tensor_rule
    ) as spied:
        opt.step()
    assert spied.called


# -- defaults that train -------------------------------------------------------------------
RULES = ("identity", "adagrad", "rmsprop", "adam", "amsgrad", "lars", "lamb")


def least_squares(dtype):
    """A linear model on a fixed regression problem (64 x 8), mean squared error."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(64, 8, generator=gen)
    y = X @ torch.randn(8, generator=gen) + 0.1
    model = torch.nn.Linear(8, 1)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 8, generator=gen))
        model.bias.zero_()

    def loss(model):
        return (model(X.to(dtype)).squeeze(-1).float() - y).square().mean()

    return model.to(dtype), loss


def logistic(dtype):
    """pytorch-optimizer's "can it train" problem: two Gaussian blobs in 2-D, a 2-2-1 ReLU
    network, binary cross-entropy with logits."""
    gen = torch.Generator().manual_seed(42)
    shift = torch.tensor([2.0, 2.0])
    X = torch.cat(
        [torch.randn(100, 2, generator=gen) + shift, torch.randn(100, 2, generator=gen) - shift]
    )
    y = torch.cat([torch.ones(100), torch.zeros(100)])
    torch.manual_seed(42)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))

    def loss(model):
        logits = model(X.to(dtype)).squeeze(-1).float()
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y)

    return model.to(dtype), loss


def train_check(problem, make, dtype, steps):
    """(first loss, last loss) of ``steps`` steps of ``make`` on ``problem``."""
    model, loss_of = problem(dtype)
    opt = make(model.parameters())

    def closure():
        opt.zero_grad()
        loss = loss_of(model)
        loss.backward()
        return loss

    first = closure().item()
    for _ in range(steps):
        loss = opt.step(closure)
    return first, float(loss)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("method", ["PSDASGD", "PSSPS"])
@pytest.mark.parametrize(
    "problem, steps, factor", [(least_squares, 100, 2.0), (logistic, 200, 1.5)]
)
def test_defaults_train_a_small_problem(problem, steps, factor, method, rule, dtype):
    """pytorch-optimizer's test_f32_optimizers / bf16 check: each shipped scaling rule at
    the defaults of PSDASGD, and of PSSPS with f* = 0 and the cap eta_max = 0.1 that its
    docs ask for (uncapped, it warns: docs/findings.md), lowers the loss by ``factor``
    (pytorch-optimizer's 1.5 on its problem) in float32 and in bfloat16."""

    def make(params):
        if method == "PSDASGD":
            return T.PSDASGD(params, scaling=rule)
        return _pssps(params, scaling=rule, eta_max=0.1)

    first, last = train_check(problem, make, dtype, steps)
    assert math.isfinite(last) and last < first / factor, (first, last)


def overflow_refusal(path):
    """What went wrong with a PS-SPS step built to overflow float32 (identity scaling, f* =
    0, f = 1e12, four gradient entries of 1e-15, whose squares float32 holds exactly
    enough: ``(f - f*) / ||g'||^2 = 2.5e41``, past float32's 3.4e38 on any CPU): None when
    it is refused with a FloatingPointError naming ``effective_lr`` and nothing changed
    (parameter, state, step count)."""
    x = Parameter(torch.ones(4))
    with pytest.warns(RuntimeWarning, match="eta_max=inf leaves the Polyak step unbounded"):
        opt = T.PSSPS([x], scaling="identity", **path)
    x.grad = torch.full_like(x, 0.5)
    opt.step(loss=1.0)  # a first ordinary step: state exists
    before = copy.deepcopy(opt.state_dict()), x.detach().clone()
    x.grad = torch.full_like(x, 1e-15)
    try:
        opt.step(loss=1e12)
    except FloatingPointError as exc:
        if not re.search("effective_lr = .* overflows torch.float32", str(exc)):
            return f"the error does not name effective_lr: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other failure is the finding
        return f"{type(exc).__name__}: {exc}"
    else:
        return "the step was not refused"
    if not torch.equal(x.detach(), before[1]):
        return "the parameter changed"
    try:
        assert_same(opt.state_dict(), before[0])
    except AssertionError as exc:
        return f"the state changed at {exc}"
    return None


@pytest.mark.parametrize("path", [{"foreach": False}, {"foreach": True}])
def test_an_unbounded_pssps_step_that_overflows_is_refused_by_name(path):
    """Uncapped (eta_max = inf, the constructor's warning), a Polyak step past float32's
    range is refused with a FloatingPointError naming effective_lr, nothing changed, not
    the kernels' "cannot be converted to type float without overflow"."""
    assert overflow_refusal(path) is None


def test_the_overflow_check_catches_an_unrefused_overflow(monkeypatch):
    """The planted error of the test above: with the host's overflow check switched off,
    ``overflow_refusal`` reports what happened instead."""
    from paramscale.torch_impl import host

    monkeypatch.setattr(host, "overflow", lambda *args: "")
    assert overflow_refusal({"foreach": True}) is not None
