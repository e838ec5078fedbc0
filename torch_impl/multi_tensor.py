"""The two sweeps of a step on lists of tensors: ``_multi_tensor_*`` (``torch._foreach_*``
kernels, the element-wise built-in rules of ``foreach_rules``) and ``_single_tensor_*``
(theory's rule objects on each tensor through the array API: LARS, LAMB, a user's rule).
They share the chunking and sweep 2; they differ in how sweep 1 advances the rule.

- Sweep 1 (``_*_rule``) writes nothing: it computes alpha_k and the rule state at step k
  as new tensors (staged), and the partial reductions the step size needs (``Want``), so
  that the step's one host synchronisation can refuse the step with nothing changed.
- Sweep 2 (``sweep_move``), after the staged state is stored: s = rho s + lam g'
  (D-Adaptation), the first moment, z -= lam mhat / alpha**2 and x = beta x + (1 - beta) z,
  leaving D-Adaptation's sums <g', s_{k-1}> and ||s_k||^2 on the device for the next sync.

On the CPU the foreach kernels run on chunks of ``CPU_CHUNK`` elements: their temporaries
for a whole list cost a page fault per fresh page (measured: 4x slower at 10M parameters).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from paramscale.theory.scaling import Moments
from paramscale.theory.transfer import HOST_STATISTICS, STATISTICS, TRANSFERS, MetricChange
from paramscale.torch_impl.foreach_rules import FOREACH, correction, update

F64 = torch.float64
Tensors = list[torch.Tensor]
Batch = tuple[dict[str, Any], Tensors, Tensors, list[dict[str, Any]]]  # group, ps, gs, states
Add = Callable[[str, torch.Tensor], None]
TORCH_REDUCTION = {"max": "amax", "min": "amin", "sum": "sum"}  # amin: no argmin, 2x faster
CPU_CHUNK = 1 << 16  # elements per foreach chunk on the CPU: temporaries stay cache-sized


class Want(NamedTuple):
    """What sweep 1 reduces at this step: ``stats``, the ``StepStats`` fields the rule's
    scalar step reads (``theory.stepsize``: ``rule.needs``); ``transfer``, the transfer's
    statistics (empty at step 0 or for a rule without a transfer); ``kernel``, the fields
    it reads at every step (``rule.steady_needs``: a compiled kernel's variant);
    ``keeps_sum``, whether there is D-Adaptation's s (<g', s> is reduced); ``first_g0``,
    whether this step may set the naive normaliser's g_0 (kept per tensor)."""

    stats: frozenset[str]
    transfer: tuple[str, ...]
    kernel: frozenset[str] = frozenset()
    keeps_sum: bool = False
    first_g0: bool = False


def chunks(ps: Tensors, gs: Tensors, states: list[dict], budget: float):
    """(params, grads, states) cut into chunks of about ``budget`` elements, and wherever
    the parameters' device or dtype changes: a foreach kernel (and ``apply``'s choice of
    how to write x) sees one device and dtype, as torch's
    ``_group_tensors_by_device_and_dtype`` arranges (parameters of one group keep their
    order, so a group of alternating dtypes costs a chunk per tensor)."""
    out, start, size = [], 0, 0
    for i, p in enumerate(ps):
        size += p.numel()
        last = i == len(ps) - 1
        if last or size >= budget or (p.device, p.dtype) != (ps[i + 1].device, ps[i + 1].dtype):
            out.append((ps[start : i + 1], gs[start : i + 1], states[start : i + 1]))
            start, size = i + 1, 0
    return out


def _multi_tensor_chunks(group, ps: Tensors, gs: Tensors, states: list[dict]):
    """A chunk per dtype on CUDA (one launch per op), chunks of ``CPU_CHUNK`` on the CPU."""
    return chunks(ps, gs, states, math.inf if ps[0].is_cuda else CPU_CHUNK)


def _single_tensor_chunks(group, ps: Tensors, gs: Tensors, states: list[dict]):
    return chunks(ps, gs, states, 1)


def _multi_tensor_advance(rule: Any, ps: Tensors, gs: Tensors, states: list[dict]):
    return update(rule, states, gs)


def _single_tensor_advance(
    rule: Any, ps: Tensors, gs: Tensors, states: list[dict]
) -> tuple[Tensors, list[dict]]:
    """theory's rule object on each tensor (array API): alpha_k and the new rule states
    (the rule objects never mutate theirs)."""
    alphas, new = [], []
    for p, g, st in zip(ps, gs, states, strict=True):
        x = p.detach().to(g.dtype)
        template = rule.init(empty_like(x)) if "scaling" not in st else None
        alpha, new_state = rule.update(rule_state(st, template), g, x)
        alphas.append(alpha)
        new.append(rule_slots(new_state))
    return alphas, new


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """``x`` with no elements (its first dimension cut to 0; a 0-dim ``x`` as shape (0,)):
    what a rule's ``init`` needs to say the structure of its state."""
    return x[:0] if x.dim() else x.reshape(1)[:0]


def rule_state(st: dict[str, Any], template: Any) -> Any:
    """A tensor's rule state, from its ``scaling`` entry or its ``scaling.i`` slots."""
    if "scaling" in st:
        return st["scaling"]
    fields = [st[f"scaling.{i}"] for i in range(len(template))]
    return type(template)._make(fields) if hasattr(template, "_make") else tuple(fields)


def rule_slots(rule_state: Any) -> dict[str, Any]:
    """A rule state as state entries: ``scaling`` or, for a tuple, ``scaling.0``, ..."""
    if isinstance(rule_state, tuple):
        return {f"scaling.{i}": value for i, value in enumerate(rule_state)}
    return {"scaling": rule_state}


def sweep_rule(
    batches: list[Batch], want: Want, add: Add, foreach: bool | None
) -> list[tuple[dict, dict]]:
    """Sweep 1 (see the module's docstring): the reductions of ``want`` through ``add``,
    and each tensor's new state (rule state at step k, alpha_k, g_0) staged as (state, new
    entries), for the caller to store once the step goes ahead."""
    staged: list[tuple[dict, dict]] = []
    for group, ps, gs, states in batches:
        rule = group["scaling"]
        fast = foreach is not False and type(rule) in FOREACH
        cut = _multi_tensor_chunks if fast else _single_tensor_chunks
        advance = _multi_tensor_advance if fast else _single_tensor_advance
        for cp, cg, sts in cut(group, ps, gs, states):
            if want.transfer:
                derive_alpha(rule, sts, cg)
            alphas, new = advance(rule, cp, cg, sts)
            if want.transfer:
                transfer_statistics(want.transfer, cp, cg, sts, alphas, add)
            if "scaled_grad_sq" in want.stats:
                gp = torch._foreach_div(cg, alphas)  # g' = g / alpha
                add("scaled_grad_sq", torch.stack(torch._foreach_norm(gp)).to(F64).square().sum())
            if "alpha_max" in want.stats:
                add("alpha_max", torch.stack(torch._foreach_max(alphas)).max())
            if "g0_scaled_sq" in want.stats:
                if want.first_g0:
                    for ahead, g in zip(new, cg, strict=True):
                        ahead["g0"] = g.clone()
                g0 = [ahead.get("g0", st["g0"]) for st, ahead in zip(sts, new, strict=True)]
                g0s = torch._foreach_div(g0, alphas)
                add("g0_scaled_sq", torch.stack(torch._foreach_norm(g0s)).to(F64).square().sum())
            for st, ahead, a in zip(sts, new, alphas, strict=True):
                ahead["alpha"] = a
                staged.append((st, ahead))
    return staged


def transfer_statistics(
    names: tuple[str, ...], ps: Tensors, gs: Tensors, states: list[dict], alphas: Tensors,
    add: Add,
) -> None:  # fmt: skip
    """The partial reductions of a transfer's statistics over the tensors that have an
    alpha_{k-1}: the max ratio with foreach kernels, the others per tensor with the very
    element-wise functions of ``theory.transfer.STATISTICS`` (array API)."""
    had = [i for i, st in enumerate(states) if "alpha" in st]
    if not had:
        return
    for key in names:
        if key == "ratio_max":
            ratios = torch._foreach_div([alphas[i] for i in had], [states[i]["alpha"] for i in had])
            add(key, torch.stack(torch._foreach_max(ratios)).max())
            continue
        stat = STATISTICS[key]
        parts = []
        for i in had:
            st = states[i]
            moved = ps[i].detach().to(alphas[i].dtype) - st["x0"] if "x0" in st else None
            value = stat.elementwise(MetricChange(st["alpha"], alphas[i], moved, gs[i]))
            if stat.op == "sum":  # accumulated in float64; a max or min is exact as it is
                value = value.to(F64)
            parts.append(getattr(value, TORCH_REDUCTION[stat.op])().to(F64))
        add(key, getattr(torch.stack(parts), stat.op)())


def transfer_reductions(transfer: str) -> tuple[str, ...]:
    """The transfer's statistics a sweep reduces (the host keeps ``HOST_STATISTICS``)."""
    return tuple(key for key in TRANSFERS[transfer].needs if key not in HOST_STATISTICS)


def derive_alpha(rule: Any, states: list[dict], gs: Tensors) -> None:
    """alpha at each tensor's last step, from its rule state, for tensors whose last steps
    ran on the fused path (which keeps no alpha); a fresh tensor (no update yet) is left
    without one."""
    todo = [i for i, st in enumerate(states) if "alpha" not in st and st.get("scaling.0", 0) > 0]
    if not todo:
        return
    sts = [states[i] for i in todo]
    c = correction(rule, [st["scaling.0"] - 1 for st in sts])
    for st, a in zip(
        sts, FOREACH[type(rule)].alpha(rule, c, sts, [gs[i] for i in todo]), strict=True
    ):
        st["alpha"] = a


def counts_own_steps(rule: Any, g: torch.Tensor) -> bool:
    """Whether ``rule``'s state is a ``Moments``, whose ``k`` (``scaling.0``) counts its
    tensor's own steps: every built-in rule's is. A rule with another state keeps no count
    the optimizer can read; its first moment then counts the global steps (README,
    choices)."""
    return isinstance(rule.init(empty_like(g)), Moments)


def sweep_move(
    batches: list[Batch], lams: list[float], rho: float, keeps_sum: bool, k: int,
    foreach: bool | None,
) -> tuple[list[tuple[float, torch.Tensor]], Tensors]:  # fmt: skip
    """Sweep 2 (see the module's docstring) with each group's step ``lams[i]``; returns
    D-Adaptation's partial sums ([(lam, <g', s_{k-1}>)], [||s_k||^2]) (empty without s)."""
    s_parts, dots = [], []
    for (group, ps, gs, states), lam in zip(batches, lams, strict=True):
        b1 = group["first_moment"]
        own_steps = b1 > 0 and counts_own_steps(group["scaling"], gs[0])
        fast = foreach is not False and type(group["scaling"]) in FOREACH
        cut = _multi_tensor_chunks if fast else _single_tensor_chunks
        for cp, cg, sts in cut(group, ps, gs, states):
            alphas = [st["alpha"] for st in sts]
            u = torch._foreach_div(cg, alphas)  # g' = g / alpha
            if keeps_sum:
                ss = [st["s"] for st in sts]
                dots.append((lam, dot(u, ss)))  # lam <g', s_{k-1}> (times rho later)
                if k > 0:
                    torch._foreach_mul_(ss, rho)
                torch._foreach_add_(ss, u, alpha=lam)  # s += lam g'
                s_parts.append(torch.stack(torch._foreach_norm(ss)).to(F64).square().sum())
            if b1 > 0:
                ms = [st["m"] for st in sts]
                torch._foreach_lerp_(ms, cg, 1 - b1)  # m = b1 m + (1-b1) g
                # mhat = m / (1 - b1^n), n the tensor's own steps, as torch.optim.Adam
                n = [st["scaling.0"] for st in sts] if own_steps else [k + 1] * len(sts)
                u = torch._foreach_div(ms, [1 - b1**i for i in n])
                torch._foreach_div_(u, alphas)
            apply(group, cp, sts, u, alphas, lam)  # u / alpha = mhat / alpha**2
    return dots, s_parts


def apply(
    group: dict[str, Any], ps: Tensors, sts: list[dict], u: Tensors, alphas: Tensors, lam: float
) -> None:
    """z -= lam u / alpha (one pass); x = beta x + (1 - beta) z (z is the parameter itself
    when beta = 0 and the parameter is full precision)."""
    beta = group["momentum"]
    if "z" not in sts[0]:
        torch._foreach_addcdiv_(list(ps), u, alphas, value=-lam)
        return
    zs = [st["z"] for st in sts]
    torch._foreach_addcdiv_(zs, u, alphas, value=-lam)
    if beta == 0:
        for p, z in zip(ps, zs, strict=True):
            p.copy_(z)
        return
    if ps[0].dtype == zs[0].dtype:
        torch._foreach_lerp_([p.detach() for p in ps], zs, 1 - beta)  # x = b x + (1-b) z
        return
    xs = [p.detach().to(z.dtype) for p, z in zip(ps, zs, strict=True)]
    torch._foreach_lerp_(xs, zs, 1 - beta)  # low precision: in float32, then round
    for p, x in zip(ps, xs, strict=True):
        p.copy_(x)


def dot(a: Tensors, b: Tensors) -> torch.Tensor:
    """sum of the inner products of two tensor lists: on the CPU one pass per tensor, no
    temporary; on CUDA one foreach product, one concatenation, one reduction (3 launches
    instead of one per tensor)."""
    if not a[0].is_cuda:
        dots = [torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(a, b, strict=True)]
        return torch.stack(dots).to(F64).sum()
    prods = torch._foreach_mul(a, b)
    return torch.cat([p.reshape(-1) for p in prods]).sum().to(F64)
