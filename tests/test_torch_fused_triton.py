"""``fused=True`` on CUDA (torch_impl.fused_triton: one Triton launch per sweep) computes
what theory and the foreach path compute.

The tests run on CUDA when there is a GPU; on a machine without one, CI runs this file
under ``TRITON_INTERPRET=1`` (``test_triton_interpreter.py``),
where the same kernels run on CPU tensors in Triton's interpreter. Without either, skipped.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paramscale import torch_impl as T
from paramscale.theory import optimizers as O
from paramscale.theory import scaling as S
from paramscale.torch_impl import fused_triton as FT
from paramscale.torch_impl import triton_kernels as TK
from tests.oracle import max_rel_dev
from tests.test_torch_fused import (
    ELEMENTWISE,
    MAKERS,
    STALE_PLANS,
    assert_checkpoint_of_another_dtype_cast,
    assert_late_parameter_agrees,
    assert_nonfinite_step_refused,
    assert_plan_follows_moves,
    assert_replaced_state_checked,
    assert_resume_bit_identical,
    assert_stale_plan_caught,
    cases,
)
from tests.test_torch_optimizer import (
    assert_late_layer_adam_equals_torch,
    batches,
    digits_mlp,
    flat,
    train,
)
from tests.test_torch_vs_theory import VARIANTS, _compare, _rule_pair

if FT.triton is None:
    DEVICE = None
elif FT.interpreting():
    DEVICE = "cpu"
else:
    DEVICE = "cuda" if torch.cuda.is_available() else None


def _patch_the_language_once_per_launch() -> None:
    """Triton's interpreter patches ``triton.language`` at each launch (undone after it)
    and again at every call of a ``@triton.jit`` helper inside the kernel, for the language
    modules the helper's module sees: where the launch (or an earlier helper) patched those
    already, a no-op (the builtins are replaced) that still runs ``inspect.getmembers`` over
    them, ~40% of this file's time. Within a launch each set of modules is patched once;
    the kernels' code and what it computes are untouched. Left as it is where the
    interpreter lacks these names."""
    import inspect

    import triton.language as tl
    from triton.runtime import interpreter as TI

    if not all(hasattr(TI, n) for n in ("_patch_lang", "_LangPatchScope", "GridExecutor")):
        return
    patch, launch, launches = TI._patch_lang, TI.GridExecutor.__call__, []

    def patch_once(fn):
        seen = frozenset(
            id(v) for v in fn.__globals__.values() if inspect.ismodule(v) and v in (tl, tl.core)
        )
        if launches and seen <= launches[-1]:
            return TI._LangPatchScope()  # nothing set, nothing to restore
        scope = patch(fn)
        if launches:
            launches[-1] |= seen
        return scope

    def call(self, *args, **kwargs):
        launches.append(set())
        try:
            return launch(self, *args, **kwargs)
        finally:
            launches.pop()

    TI._patch_lang, TI.GridExecutor.__call__ = patch_once, call


# Triton's interpreter runs the kernels element by element in NumPy, ~100x slower than the
# compiled CPU path: there the MLP runs take 8 steps and the drawn cases 3 draws (the
# kernels' code and every branch the tests reach are the same); on CUDA the full counts
INTERPRETED = DEVICE == "cpu"
if INTERPRETED:
    _patch_the_language_once_per_launch()
STEPS = 8 if INTERPRETED else 20
DRAWS = 3 if INTERPRETED else 6

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE is None, reason="no CUDA device (nor TRITON_INTERPRET=1)"),
]

MAKERS = {
    **MAKERS,
    "psdasgd-identity": lambda ps, fused: T.PSDASGD(
        ps, scaling="identity", fused=fused, foreach=not fused
    ),
    "pssps-amsgrad-torch": lambda ps, fused: T.PSSPS(
        ps, 0.0, scaling=S.amsgrad(form="torch"), fused=fused, foreach=not fused
    ),
}


def _run(make, steps=STEPS, fused=True, dtype=torch.float64):
    model, X, y = digits_mlp(dtype, device=DEVICE)
    opt = make(model.parameters(), fused)
    train(model, opt, X, y, batches(steps), closure_loss=True)
    return flat(model), opt


# under the interpreter one maker per kernel family (D-Adaptation, Polyak, constant step
# with a first moment, param groups, identity scaling); on CUDA every maker
ON_MLP = list(MAKERS) if not INTERPRETED else [
    "psdasgd-adam", "pssps-rmsprop", "constant-adagrad-b1", "groups", "psdasgd-identity",
]  # fmt: skip


@pytest.mark.parametrize("name", ON_MLP)
def test_triton_equals_foreach_on_mlp(name):
    """Every rule, step rule, first moment, averaging and param groups, against the foreach
    path on the same device: the bound and its reason are test_torch_fused's."""
    ours, opt = _run(MAKERS[name])
    ref, _ = _run(MAKERS[name], fused=False)
    assert max_rel_dev(ours, ref) <= 1e-7
    assert "alpha" not in opt.state[opt.param_groups[0]["params"][0]]  # it ran fused


@pytest.mark.parametrize(
    "name",
    ["psdasgd-adam"] if INTERPRETED else ["psdasgd-adam", "pssps-rmsprop", "constant-adagrad-b1"],
)
def test_programs_that_loop_over_several_blocks_give_the_same_step(name, monkeypatch):
    """Launches of at most 3 programs, each looping over a share of the MLP's blocks (a
    model larger than ``FT.PROGRAMS`` blocks runs so): the foreach path's step, and the
    one-block-per-program step up to the order of the float64 sums."""
    one_each, _ = _run(MAKERS[name])
    monkeypatch.setattr(FT, "PROGRAMS", 3)
    looped, opt = _run(MAKERS[name])
    ref, _ = _run(MAKERS[name], fused=False)
    plan = next(iter(opt._plans.values()))
    assert all(len(kind.blocks[0]) > 3 for kind in plan.layout.kinds)  # several per program
    assert max_rel_dev(looped, ref) <= 1e-7
    # the float64 partials are summed in another order (round-off ~1e-16 a step), which the
    # steps of a data-dependent step size amplify: 2.9e-12 in 20 steps on an Intel Xeon
    assert max_rel_dev(looped, one_each) <= 1e-10


def test_a_planted_error_in_the_kernels_is_caught(monkeypatch):
    """The kernels' eps 1e-5 instead of 1e-8: the comparison above sees it. (Not a change
    of beta2: in 20 steps that scales every v alike, which PS-DA-SGD is invariant to.)"""
    planted = FT.consts

    def wrong(rule, *args):
        c = planted(rule, *args)
        return c._replace(eps=1e-5)

    monkeypatch.setattr(FT, "consts", wrong)
    ours, _ = _run(MAKERS["psdasgd-adam"], steps=20)  # eps shows once v has fallen
    ref, _ = _run(MAKERS["psdasgd-adam"], steps=20, fused=False)
    assert max_rel_dev(ours, ref) > 1e-5


@pytest.mark.parametrize("variant", list(VARIANTS))
@settings(max_examples=DRAWS, deadline=None)
@given(case=cases(), momentum=st.sampled_from([0.0, 0.9]))
def test_triton_psdasgd_equals_theory(variant, case, momentum):
    p, x0, name = case
    tr, rr = _rule_pair(name, p.n)
    kw = {"momentum": momentum, **VARIANTS[variant]}
    dev = _compare(
        O.ps_dadapt_sgd(scaling=tr, **kw),
        lambda q: T.PSDASGD(q, scaling=rr, fused=True, **kw),
        p,
        x0,
        foreach=None,
        device=DEVICE,
        steps=15,
    )
    assert dev.within(1e-10), dev


@settings(max_examples=2, deadline=None)
@given(case=cases())
def test_triton_anchored_transfer_equals_theory(case):
    """The anchor (vector state, reductions outside the kernel) through the Triton path."""
    p, x0, name = case
    tr, rr = _rule_pair(name, p.n)
    dev = _compare(
        O.ps_dadapt_sgd(scaling=tr, transfer="anchor_active"),
        lambda q: T.PSDASGD(q, scaling=rr, fused=True, transfer="anchor_active"),
        p,
        x0,
        foreach=None,
        device=DEVICE,
        steps=15,
    )
    assert dev.within(1e-10), dev


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
def test_triton_low_precision_follows_foreach(dtype, tol):
    """float32 and bfloat16 parameters (bfloat16: float32 state and master copy z, the
    parameter its rounding): 10 steps, both paths. The bound is float32 round-off (fused
    multiply-adds) amplified by training; bfloat16 parameters are compared after rounding."""
    make = MAKERS["psdasgd-amsgrad-shrink"]
    ours, opt = _run(make, steps=10, dtype=dtype)
    ref, _ = _run(make, steps=10, fused=False, dtype=dtype)
    assert max_rel_dev(ours, ref) <= tol
    if dtype == torch.bfloat16:
        z = opt.state[opt.param_groups[0]["params"][0]]["z"]
        assert z.dtype == torch.float32


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_triton_nonfinite_gradient_raises_or_skips_leaving_everything(bad):
    assert_nonfinite_step_refused(bad, DEVICE)


def test_triton_resume_is_bit_identical():
    assert_resume_bit_identical(MAKERS["psdasgd-amsgrad-shrink"], torch.float32, DEVICE, 2 * STEPS)


def test_triton_checkpoint_of_another_dtype_is_cast():
    assert_checkpoint_of_another_dtype_cast(DEVICE)


def test_triton_state_of_another_dtype_or_shape_is_refused():
    assert_replaced_state_checked(DEVICE)


def test_triton_parameter_with_its_first_gradient_late():
    """As test_torch_fused's: a layer without gradients for 5 steps has its own step count
    (its own launch: a kind of its own) and no alpha_{k-1} in rho at its first step."""
    assert_late_parameter_agrees([{"fused": True}, {"foreach": True}], DEVICE, 10)


def test_triton_late_layer_adam_equals_torch():
    assert_late_layer_adam_equals_torch({"fused": True}, DEVICE)


def test_triton_layouts():
    """A channels-last weight (dense, not contiguous) with a contiguous gradient (copied to
    the weight's layout) runs as the foreach path does; a strided slice is refused by name."""
    torch.manual_seed(0)
    w0 = torch.randn(3, 4, 5, 5, dtype=torch.float64, device=DEVICE)
    grads = [torch.randn(3, 4, 5, 5, dtype=torch.float64, device=DEVICE) for _ in range(5)]
    out = []
    for fused in (True, False):
        w = torch.nn.Parameter(w0.clone().to(memory_format=torch.channels_last))
        assert not w.is_contiguous()
        opt = T.PSDASGD([w], momentum=0.9, fused=fused)
        for g in grads:
            w.grad = g.clone()
            opt.step()
        out.append(flat(torch.nn.ParameterList([w])))
    assert max_rel_dev(out[0], out[1]) <= 1e-12
    sliced = torch.nn.Parameter(torch.zeros(6, 6, device=DEVICE)[:, ::2])
    sliced.grad = torch.ones_like(sliced)
    opt = T.PSDASGD([sliced], fused=True)
    with pytest.raises(ValueError, match=r"Invalid parameter: shape \(6, 3\) with strides"):
        opt.step()


def test_triton_plan_follows_moved_tensors_and_replaced_state():
    """As test_torch_fused's: a moved tensor or a replaced state dict rebuilds the plan."""
    assert_plan_follows_moves(DEVICE)


@pytest.mark.parametrize("move, blind", STALE_PLANS)
def test_a_stale_plan_is_caught(monkeypatch, move, blind):
    assert_stale_plan_caught(monkeypatch, DEVICE, move, blind)


def test_rule_codes_cover_the_fused_rules():
    for name in ELEMENTWISE:
        assert TK.rule_code(_rule_pair(name, 3)[1]) is not None, name
    assert TK.rule_code(S.lars()) is None


@pytest.mark.parametrize("name", ["lowest-loss-polyak", "ps-dog", "ps-dowg"])
def test_triton_runs_any_step_rule_as_numpy_does(name):
    """tests/test_step_rules.py's comparison on the Triton path: a rule of that test file,
    PS-DoG and PS-DoWG equal their NumPy runs (their reductions outside the kernels'
    set computed eagerly on the device)."""
    from tests.test_step_rules import RULES, numpy_and_torch

    ours, got = numpy_and_torch(RULES[name](), {"fused": True}, device=DEVICE)
    assert max_rel_dev(got, ours) <= 1e-9
