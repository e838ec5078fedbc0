"""The foreach and per-tensor paths (``torch_impl.sweeps``): ``_multi_tensor_*``
(``torch._foreach_*`` kernels, the element-wise built-in rules of ``foreach_rules``) and
``_single_tensor_*`` (theory's rule objects on each tensor through the array API: LARS,
LAMB, a user's rule). They share the chunking and sweep 2; they differ in how sweep 1
advances the rule.

- Sweep 1 writes nothing: it computes alpha_k and the rule state at step k as new tensors
  (staged), and the step-stage reductions, so that the step's one host synchronisation
  can refuse the step with nothing changed.
- Sweep 2, after the staged state is stored: the move-stage reductions (of s_{k-1}), s =
  rho s + lam g', the moved-stage ones (of s_k), the first moment, z -= lam mhat /
  alpha**2 and x = beta x + (1 - beta) z.

On the CPU the foreach kernels run on chunks of ``sweeps.CPU_CHUNK`` elements: their
temporaries for a whole list cost a page fault per fresh page (measured: 4x slower at 10M
parameters).
"""

from __future__ import annotations

from typing import Any

import torch

from paramscale.theory.reductions import REDUCTIONS
from paramscale.theory.scaling import Moments
from paramscale.torch_impl import state as keys
from paramscale.torch_impl.foreach_rules import FOREACH, correction, update
from paramscale.torch_impl.sweeps import (
    Add,
    Lists,
    Move,
    Sweep,
    Tensors,
    chunks,
    foreach_budget,
    reduce_lists,
    vectors_of,
)

Staged = list[tuple[dict, dict]]  # (a tensor's state, its new entries), stored at sweep 2


def _multi_tensor_rule(sweep: Sweep) -> Staged:
    return _rule(sweep, foreach=True)


def _single_tensor_rule(sweep: Sweep) -> Staged:
    return _rule(sweep, foreach=False)


def _multi_tensor_move(sweep: Sweep, move: Move) -> None:
    _move(sweep, move, foreach=True)


def _single_tensor_move(sweep: Sweep, move: Move) -> None:
    _move(sweep, move, foreach=False)


def _cut(ps: Tensors, gs: Tensors, states: list[dict], foreach: bool) -> list[tuple]:
    return chunks(ps, gs, states, foreach_budget(ps) if foreach else 1)


def _advance_each(rule: Any, gs: Tensors, states: list[dict], ps: Tensors):
    """theory's rule object on each tensor (array API): alpha_k and the new rule states
    (the rule objects never mutate theirs)."""
    alphas, new = [], []
    for p, g, st in zip(ps, gs, states, strict=True):
        x = p.detach().to(g.dtype)
        template = rule.init(empty_like(x))
        alpha, new_state = rule.update(keys.rule_state(st, template), g, x)
        alphas.append(alpha)
        new.append(keys.rule_slots(new_state))
    return alphas, new


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """``x`` with no elements (its first dimension cut to 0; a 0-dim ``x`` as shape (0,)):
    what a rule's ``init`` needs to say the structure of its state."""
    return x[:0] if x.dim() else x.reshape(1)[:0]


def _rule(sweep: Sweep, foreach: bool) -> Staged:
    """Sweep 1 (see the module's docstring): the step-stage reductions through
    ``sweep.add``, and each tensor's new state (rule state at step k, alpha_k) staged.
    A reduction that reads alpha_{k-1} runs over the tensors that have one."""
    staged: Staged = []
    names = sweep.want.step
    with_prev = tuple(n for n in names if "alpha_prev" in REDUCTIONS[n].reads)
    # of the gradient and the vector state alone (||g||^2): once over the whole group
    whole = tuple(n for n in names if not REDUCTIONS[n].reads & {"alpha", "alpha_prev"})
    plain = tuple(n for n in names if n not in with_prev and n not in whole)
    for group, ps, gs, states in sweep.batches:
        rule = group["scaling"]
        fast = foreach and type(rule) in FOREACH
        if whole:
            reduce_lists(whole, _lists(sweep.want, whole, ps, gs, states, []), sweep.add)
        for cp, cg, sts in _cut(ps, gs, states, fast):
            if with_prev:
                derive_alpha(rule, sts, cg)
            alphas, new = update(rule, sts, cg) if fast else _advance_each(rule, cg, sts, cp)
            lists = _lists(sweep.want, names, cp, cg, sts, alphas)
            reduce_lists(plain, lists, sweep.add)
            if with_prev:
                had = [i for i, st in enumerate(sts) if keys.ALPHA in st]
                prev = [sts[i][keys.ALPHA] for i in had]
                some = lists if len(had) == len(sts) else _subset(lists, had)
                if had:
                    reduce_lists(with_prev, some._replace(alpha_prev=prev), sweep.add)
            for st, ahead, a in zip(sts, new, alphas, strict=True):
                ahead[keys.ALPHA] = a
                staged.append((st, ahead))
    return staged


def _lists(
    want: Any, names: tuple[str, ...], ps: Tensors, gs: Tensors, sts: list[dict], alphas: Tensors
) -> Lists:
    """A chunk's fields' tensors for reductions ``names``: the kept vectors, g as g_0 when
    it is captured at this step, x in the state dtype where a field reads it."""
    vec = vectors_of(sts, want, gs)
    xs = None
    if any("x" in REDUCTIONS[name].reads for name in names):
        xs = [p.detach().to(g.dtype) for p, g in zip(ps, gs, strict=True)]
    return Lists(gs, alphas, None, xs, vec["x0"], vec["g0"], vec["s"], vec["anchor"])


def _subset(lists: Lists, at: list[int]) -> Lists:
    """``lists`` at the positions ``at``."""
    return Lists(*(None if value is None else [value[i] for i in at] for value in lists))


def last_alphas(rule: Any, states: list[dict], gs: Tensors) -> list[torch.Tensor | None]:
    """alpha of each tensor's last step: kept (the foreach and per-tensor paths), else
    from its rule state (a built-in rule on the fused path); None before its first step."""
    todo = [i for i, st in enumerate(states) if keys.ALPHA not in st and st.get(keys.STEP, 0) > 0]
    out = [st.get(keys.ALPHA) for st in states]
    if todo and type(rule) in FOREACH:
        sts = [states[i] for i in todo]
        c = correction(rule, [st[keys.STEP] - 1 for st in sts])
        for i, a in zip(todo, FOREACH[type(rule)].alpha(rule, c, sts, [gs[i] for i in todo]),
                        strict=True):  # fmt: skip
            out[i] = a
    return out


def derive_alpha(rule: Any, states: list[dict], gs: Tensors) -> None:
    """alpha at each tensor's last step, from its rule state, for tensors whose last steps
    ran on the fused path (which keeps no alpha); a fresh tensor (no update yet) is left
    without one."""
    for st, a in zip(states, last_alphas(rule, states, gs), strict=True):
        if a is not None:
            st[keys.ALPHA] = a


def counts_own_steps(rule: Any, g: torch.Tensor) -> bool:
    """Whether ``rule``'s state is a ``Moments``, whose ``k`` (``scaling.k``) counts its
    tensor's own steps: every built-in rule's is. A rule with another state keeps no count
    the optimizer can read; its first moment then counts the global steps (README,
    choices)."""
    return isinstance(rule.init(empty_like(g)), Moments)


def _move(sweep: Sweep, move: Move, foreach: bool) -> None:
    """Sweep 2 (see the module's docstring) with each batch's step ``move.lams[i]``."""
    for st, new in move.staged:  # the rule state at step k, alpha_k: stored now
        st.update(new)
    want, k = sweep.want, sweep.k
    keeps_s = "s" in want.vectors
    for (group, ps, gs, states), lam in zip(sweep.batches, move.lams, strict=True):
        b1 = group["first_moment"]
        own_steps = b1 > 0 and counts_own_steps(group["scaling"], gs[0])
        fast = foreach and type(group["scaling"]) in FOREACH
        for cp, cg, sts in _cut(ps, gs, states, fast):
            alphas = [st[keys.ALPHA] for st in sts]
            u = torch._foreach_div(cg, alphas)  # g' = g / alpha
            if keeps_s:
                lists = Lists(cg, alphas, None, None, None, None, [st[keys.S] for st in sts])
                known = {"g_scaled": u}
                reduce_lists(want.move, lists, move.add, lam, known)  # of s_{k-1}
                if k > 0:
                    torch._foreach_mul_(lists.s, move.rho)
                torch._foreach_add_(lists.s, u, alpha=lam)  # s = rho s + lam g'
                reduce_lists(want.moved, lists, move.add, known=known)  # of s_k
            if b1 > 0:
                ms = [st[keys.M] for st in sts]
                torch._foreach_lerp_(ms, cg, 1 - b1)  # m = b1 m + (1-b1) g
                # mhat = m / (1 - b1^n), n the tensor's own steps, as torch.optim.Adam
                n = [st[keys.STEP] for st in sts] if own_steps else [k + 1] * len(sts)
                u = torch._foreach_div(ms, [1 - b1**i for i in n])
                torch._foreach_div_(u, alphas)
            apply(group, cp, sts, u, alphas, lam)  # u / alpha = mhat / alpha**2


def apply(
    group: dict[str, Any], ps: Tensors, sts: list[dict], u: Tensors, alphas: Tensors, lam: float
) -> None:
    """z -= lam u / alpha (one pass); x = beta x + (1 - beta) z (z is the parameter itself
    when beta = 0 and the parameter is full precision)."""
    beta = group["momentum"]
    if keys.Z not in sts[0]:
        torch._foreach_addcdiv_(list(ps), u, alphas, value=-lam)
        return
    zs = [st[keys.Z] for st in sts]
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


def alphas_of(rule: Any, states: list[dict], gs: Tensors, advanced: bool = False):
    """(alpha_{k-1}, alpha_k) of tensors of an element-wise built-in rule from their
    states, eagerly: before the state is advanced (alpha_{k-1} meaningful where the tensor
    has stepped), or after it (``advanced``: alpha_k only, alpha_{k-1} None)."""
    fr = FOREACH[type(rule)]
    c = correction(rule, [st[keys.STEP] - 1 for st in states])
    if advanced:
        return None, fr.alpha(rule, c, states, gs)
    return fr.alpha(rule, c, states, gs), update(rule, states, gs)[0]


def reduce_eagerly(names: tuple[str, ...], batch: Any, want: Any, alphas: Tensors,
                   prev: Tensors | None, add: Add, weight: float = 1.0) -> None:  # fmt: skip
    """Reductions ``names`` of one batch with its alpha_k (and alpha_{k-1}) given: what the
    fused paths compute outside their kernels (a reduction that reads x, x_0 or g_0)."""
    group, ps, gs, sts = batch
    lists = _lists(want, names, ps, gs, sts, alphas)._replace(alpha_prev=prev)
    reduce_lists(names, lists, add, weight)


__all__ = ["alphas_of", "apply", "counts_own_steps", "derive_alpha", "empty_like",
           "last_alphas", "reduce_eagerly"]  # fmt: skip
