"""A parameter group as the fused kernels see it, kept across steps (``fused=True``).

The fused step is host-bound for small and medium models (on a GPU the two sweeps of a
10M-parameter step take ~0.2 ms), so the per-parameter Python work of a step matters. A
plan holds what the kernels need from a group: its stepped parameters, their state dicts,
the state tensors the kernels address, and a path's own ``layout`` of them (Triton
launch tables on CUDA, packs of views for the compiled CPU kernels). It is rebuilt when any
of these changes (a parameter's first gradient, ``load_state_dict``, a state tensor or
dict replaced, a ``.data`` swap such as ``module.half()`` or ``p.data = loaded``); checking
it costs an identity test per parameter, state dict and state tensor and an address read
per tensor, all C loops. The plan keeps its tensors alive, so a replaced tensor's memory
cannot come back at the same address while the plan points to it.
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple

import torch

from paramscale.torch_impl.state import SECOND, THIRD, M, S, Z

STATE_KEYS = (SECOND, THIRD, S, M, Z)  # the state tensors the kernels address (torch_impl.state)
_data_ptr = torch.Tensor.data_ptr


class Plan(NamedTuple):
    """``params`` and their ``states`` in the group's order; the state tensors the kernels
    address (``held``), each ``owners[i][slots[i]]``; every tensor whose memory they touch
    (``tensors``: the parameters, then ``held``) with its ``addresses``; the path's
    ``layout``; and the state dicts holding an ``alpha`` left by the foreach path (the fused
    path derives alpha; dropped at the plan's first step)."""

    params: list[torch.Tensor]
    states: list[dict[str, Any]]
    owners: list[dict[str, Any]]
    slots: list[str]
    held: list[torch.Tensor]
    tensors: list[torch.Tensor]
    addresses: list[int]
    layout: Any
    stale_alpha: list[dict[str, Any]]


def build(params: list[torch.Tensor], states: list[dict[str, Any]], layout: Any) -> Plan:
    """The plan of ``params`` with their optimizer ``states`` and the path's ``layout``."""
    owners, slots, held = [], [], []
    for st in states:
        for key in STATE_KEYS:
            t = st.get(key)
            if t is not None:
                owners.append(st)
                slots.append(key)
                held.append(t)
    tensors = [*params, *held]
    return Plan(
        list(params),
        list(states),
        owners,
        slots,
        held,
        tensors,
        list(map(_data_ptr, tensors)),
        layout,
        [st for st in states if "alpha" in st],
    )


def current(plan: Plan | None, params: list[torch.Tensor], states: list[dict]) -> bool:
    """Whether ``plan`` still describes these parameters and states: the same parameters,
    state dicts and state tensors, and every tensor where it was (no Python code runs per
    tensor)."""
    return (
        plan is not None
        and len(plan.params) == len(params)
        and all(map(operator.is_, plan.params, params))
        and all(map(operator.is_, plan.states, states))
        and all(map(operator.is_, map(dict.get, plan.owners, plan.slots), plan.held))
        and list(map(_data_ptr, plan.tensors)) == plan.addresses
    )


def planned(
    plans: dict[int, Plan],
    group: dict[str, Any],
    params: list[torch.Tensor],
    states: list[dict],
    layout: Any,
    state_dtype: Any,
    describe: Any,
) -> Plan:
    """The group's plan in ``plans``, rebuilt with the path's ``layout(params, states,
    state_dtype)`` only when its parameters or state moved (after ``check_state``)."""
    plan = plans.get(id(group))
    if not current(plan, params, states):
        check_state(params, states, state_dtype, describe)
        plan = plans[id(group)] = build(params, states, layout(params, states, state_dtype))
    return plan


def check_state(
    params: list[torch.Tensor], states: list[dict], state_dtype: Any, describe: Any
) -> None:
    """Every state tensor the kernels address has its parameter's shape and device and the
    state dtype (the kernels read memory as that dtype: a state tensor replaced by hand, or
    a parameter cast by ``model.double()`` after its state was made, would be misread, or
    read out of bounds), else ``ValueError`` naming it (``describe(p)``), before any
    change."""
    for p, st in zip(params, states, strict=True):
        want = (p.shape, state_dtype(p), p.device)
        for key in STATE_KEYS:
            t = st.get(key)
            if t is None or (t.shape, t.dtype, t.device) == want:
                continue
            raise ValueError(
                f"Invalid state {key!r} of {describe(p)}: shape {tuple(t.shape)}, {t.dtype} "
                f"on {t.device} (expected {tuple(p.shape)}, {want[1]} on {p.device}, as the "
                "optimizer makes it for the parameter: was the state replaced, or the "
                "parameter cast or moved, after its first step?)"
            )
