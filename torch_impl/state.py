"""The names of a parameter's optimizer state (``optimizer.state[p]``), in one place.

    scaling.<field>  the scaling rule's state, one entry per field of its NamedTuple
                     (``theory.scaling.Moments``: ``scaling.k`` the tensor's own step count,
                     ``scaling.v`` the second moment or accumulator, ``scaling.m`` the
                     running max of AMSGrad or LAMB's first moment); ``scaling.0``, ... for a
                     plain tuple, ``scaling`` for any other state (a user's rule)
    alpha            alpha_{k-1}, kept by the foreach and per-tensor paths (the fused paths
                     derive it from the rule state)
    s, x0, g0        the step rule's vector state (``theory.reductions.VECTORS``)
    anchor           an anchored transfer's metric (``theory.transfer``)
    m                the first moment of the direction (``first_moment``)
    z                the iterate the step moves (momentum's averaging, low-precision masters)

Checkpoints of format 1 named the rule state by position (``scaling.0`` for ``k``, ...):
``positional_to_named`` reads them.
"""

from __future__ import annotations

from typing import Any

import torch

STEP = "scaling.k"  # built-in rules (Moments): the tensor's own step count
SECOND = "scaling.v"  # the second moment (AdaGrad: the accumulator)
THIRD = "scaling.m"  # AMSGrad's running max (LAMB's first moment)
ALPHA = "alpha"
S, X0, G0, M, Z, ANCHOR = "s", "x0", "g0", "m", "z", "anchor"
VECTORS = (S, X0, G0, ANCHOR)  # theory.reductions.VECTORS, by the names above
PREFIX = "scaling"


def rule_slots(rule_state: Any) -> dict[str, Any]:
    """A rule state as state entries: ``scaling.<field>`` for a NamedTuple, ``scaling.<i>``
    for another tuple, ``scaling`` otherwise."""
    if isinstance(rule_state, tuple):
        names = getattr(rule_state, "_fields", None) or map(str, range(len(rule_state)))
        return {f"{PREFIX}.{name}": value for name, value in zip(names, rule_state, strict=True)}
    return {PREFIX: rule_state}


def rule_state(st: dict[str, Any], template: Any) -> Any:
    """A tensor's rule state from its entries, shaped as ``template`` (the rule's init)."""
    if PREFIX in st:
        return st[PREFIX]
    keys = rule_slots(template)
    values = [st[key] for key in keys]
    return type(template)._make(values) if hasattr(template, "_make") else tuple(values)


def positional_to_named(saved: dict[str, Any], template: Any) -> dict[str, Any]:
    """A saved state with its rule state named as ``rule_slots(template)`` names it (a
    checkpoint of format 1 held ``scaling.0``, ``scaling.1``, ...); others as they are."""
    fields = getattr(template, "_fields", None)
    if not fields or f"{PREFIX}.0" not in saved:
        return saved
    renamed = {f"{PREFIX}.{i}": f"{PREFIX}.{name}" for i, name in enumerate(fields)}
    return {renamed.get(key, key): value for key, value in saved.items()}


def made(
    states: list[dict],
    params: list[torch.Tensor],
    group: dict[str, Any],
    vectors: frozenset[str],
    local: Any,
    state_dtype: Any,
    low_precision: tuple,
) -> None:
    """The state of each parameter at its first step (an empty state dict): the rule
    state, the iterate z (averaging, or a float32 master of a low-precision parameter), the
    first moment, and the vectors ``s`` (zeros) and ``x0`` (the start) where kept."""
    for p, st in zip(params, states, strict=True):
        if st:
            continue
        x = local(p).detach().to(state_dtype(p))
        st.update(rule_slots(group["scaling"].init(x)))
        if group["momentum"] > 0 or p.dtype in low_precision:
            st[Z] = x.clone()
        if group["first_moment"] > 0:
            st[M] = torch.zeros_like(x)
        if S in vectors:
            st[S] = torch.zeros_like(x)
        if X0 in vectors:
            st[X0] = x.clone()  # the start: the distance travelled is x - x0


def capture(names: frozenset[str], states: list[dict], grads: list[torch.Tensor]) -> None:
    """The vectors set from this step's values: ``g0``, the gradient."""
    if G0 in names:
        for st, g in zip(states, grads, strict=True):
            st[G0] = g.clone()


def anchor(batches: list, every: bool) -> None:
    """An anchored transfer's anchor (``theory.transfer``) set to alpha of each tensor's
    last step: in every tensor (``every``: the rule raised its estimate at the last step;
    before the move, so alpha_{k-1}), else in those that have none yet (after the move: the
    metric of a tensor's first step)."""
    from paramscale.torch_impl.multi_tensor import last_alphas

    for group, _, gs, states in batches:
        todo = [i for i, st in enumerate(states) if every or ANCHOR not in st]
        if not todo:
            continue
        sts = [states[i] for i in todo]
        for st, a in zip(sts, last_alphas(group["scaling"], sts, [gs[i] for i in todo]),
                         strict=True):  # fmt: skip
            if a is not None:  # a tensor at its first step has no alpha_{k-1}
                st[ANCHOR] = a.clone()


def collect(param_groups: list[dict], state: Any, vectors: frozenset[str]) -> list:
    """Each group's stepped tensors (local shards) with gradients (the descent direction,
    in the state dtype) and their states, made at a parameter's first step
    (``sweeps.Batch``; groups with nothing to step left out)."""
    from paramscale.torch_impl import checkpoint, distributed, groups
    from paramscale.torch_impl.sweeps import Batch

    out = []
    for gi, group in enumerate(param_groups):
        ps, gs = [], []
        for pi, p in enumerate(group["params"]):
            if p.grad is None or distributed.local(p).numel() == 0:  # nothing here
                continue
            g = distributed.local(p.grad)
            if (g.layout is not torch.strided or g.dtype is not p.dtype
                    or p.dtype in checkpoint.LOW_PRECISION):  # fmt: skip
                g = checkpoint.state_grad(g, p, f"parameter {pi} of group {gi}")
            ps.append(p)  # the step runs under no_grad: no detach needed
            gs.append(g)
        if ps:
            sts = list(map(state.__getitem__, ps))
            made(sts, ps, group, vectors, distributed.local, checkpoint.state_dtype,
                 checkpoint.LOW_PRECISION)  # fmt: skip
            local = list(map(distributed.local, ps))
            out.append(Batch(group, local, groups.ascent(gs, group["maximize"]), sts))
    return out
