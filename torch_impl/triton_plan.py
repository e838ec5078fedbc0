"""A parameter group as the Triton kernels see it (``fused=True`` on CUDA): the tensors they
address, by kind of tensor, and the launch tables, kept across steps.

On a GPU the step is host-bound (the two sweeps take ~0.2 ms at 10M parameters), so the
per-parameter Python work of a step matters. A plan is rebuilt when a group's stepped
parameters, their state dicts, the state tensors those dicts hold or the address of any
tensor the kernels touch change (a new parameter's first gradient, ``load_state_dict``, a
state tensor replaced, a ``.data`` swap such as ``module.half()``); otherwise checking it
costs an identity test per parameter, state dict and state tensor and an address read per
tensor. The plan keeps its tensors alive, so a replaced tensor's memory cannot come back at
the same address while the plan points to it.
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple

import torch

from torch_impl import fused_triton as FT

STATE_KEYS = ("scaling.1", "scaling.2", "s", "m", "z")  # FT.ROWS after g and x
MAX_TABLES = 16  # pointer tables kept per kind: gradients at new addresses every step
_data_ptr = torch.Tensor.data_ptr
_stride = torch.Tensor.stride


class Kind(NamedTuple):
    """Tensors of one launch: same device, state dtype, parameter dtype, master copy and step
    count. ``indices`` are their positions in the plan, ``blocks`` the block table (fixed by
    the sizes), ``rows`` the pointer-table rows after g (``FT.ROWS``; 0: absent) and
    ``tables`` the pointer tables by gradient addresses."""

    key: tuple
    indices: list[int]
    blocks: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    rows: list[list[int]]
    tables: dict[tuple[int, ...], torch.Tensor]


class TritonPlan(NamedTuple):
    """``params`` and their ``states`` in the group's order; the state tensors the kernels
    address (``held``), each as ``owners[i][slots[i]]``; every addressed tensor
    (``tensors``: the parameters, then ``held``) with its ``addresses``; the parameters'
    ``strides`` (a gradient must be laid out alike); the ``kinds``; and the state dicts
    holding an ``alpha`` left by the foreach path (the fused path derives alpha; dropped at
    the plan's first step)."""

    params: list[torch.Tensor]
    states: list[dict[str, Any]]
    owners: list[dict[str, Any]]
    slots: list[str]
    held: list[torch.Tensor]
    tensors: list[torch.Tensor]
    addresses: list[int]
    strides: list[tuple[int, ...]]
    kinds: list[Kind]
    stale_alpha: list[dict[str, Any]]


def build(params: list[torch.Tensor], states: list[dict[str, Any]], state_dtype) -> TritonPlan:
    """The plan of ``params`` (with their optimizer ``states``; ``state_dtype(p)`` the dtype
    their state is kept in). The kernels walk a tensor's memory linearly, so every tensor of
    a parameter must be dense and laid out as the parameter (contiguous, channels-last, ...:
    optimizer state is made with ``zeros_like``, which keeps the layout)."""
    owners, slots, held, columns, by_kind = [], [], [], [], {}
    for i, (p, st) in enumerate(zip(params, states, strict=True)):
        named = (p, *map(st.get, STATE_KEYS))
        for t in named:
            if t is not None and (t.stride() != p.stride() or not _dense(t)):
                raise ValueError(
                    f"Invalid parameter: shape {tuple(p.shape)} with strides {p.stride()} "
                    "with fused=True on CUDA (expected a dense tensor, its state laid out "
                    "alike; fused=False takes any layout)"
                )
        for key, t in zip(STATE_KEYS, named[1:], strict=True):
            if t is not None:
                owners.append(st)
                slots.append(key)
                held.append(t)
        columns.append([0 if t is None else t.data_ptr() for t in named])
        kind = (p.device, state_dtype(p), p.dtype, named[-1] is not None, st["scaling.0"])
        by_kind.setdefault(kind, []).append(i)
    kinds = [
        Kind(
            key,
            indices,
            FT.block_table([params[i].numel() for i in indices], key[0]),
            [list(row) for row in zip(*(columns[i] for i in indices), strict=True)],
            {},
        )
        for key, indices in by_kind.items()
    ]
    tensors = [*params, *held]
    return TritonPlan(
        list(params),
        list(states),
        owners,
        slots,
        held,
        tensors,
        list(map(_data_ptr, tensors)),
        list(map(_stride, params)),
        kinds,
        [st for st in states if "alpha" in st],
    )


def current(plan: TritonPlan | None, params: list[torch.Tensor], states: list[dict]) -> bool:
    """Whether ``plan`` still describes these parameters and states: the same parameters,
    state dicts and state tensors, and every tensor where it was (C loops: no Python code
    runs per tensor)."""
    return (
        plan is not None
        and len(plan.params) == len(params)
        and all(map(operator.is_, plan.params, params))
        and all(map(operator.is_, plan.states, states))
        and all(map(operator.is_, map(dict.get, plan.owners, plan.slots), plan.held))
        and list(map(_data_ptr, plan.tensors)) == plan.addresses
    )


def laid_out(plan: TritonPlan, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The gradients, each copied into its parameter's layout where it is not laid out so."""
    if list(map(_stride, grads)) == plan.strides:
        return grads
    return [
        g if g.stride() == p.stride() else torch.empty_like(p, dtype=g.dtype).copy_(g)
        for p, g in zip(plan.params, grads, strict=True)
    ]


def launch(kind: Kind, grads: list[torch.Tensor]) -> FT.Launch:
    """The tables of ``kind``'s launch with these gradients (``grads`` in the plan's order);
    the pointer table is cached by the gradients' addresses (a training loop whose
    gradients come back at the same addresses builds it once)."""
    mine = [grads[i] for i in kind.indices] if len(kind.indices) < len(grads) else grads
    addresses = tuple(map(_data_ptr, mine))
    table = kind.tables.get(addresses)
    if table is None:
        if len(kind.tables) >= MAX_TABLES:
            kind.tables.clear()
        table = kind.tables[addresses] = FT.pointer_table([list(addresses), *kind.rows],
                                                          kind.key[0])  # fmt: skip
    return FT.Launch(*kind.blocks, table, len(mine), len(kind.blocks[0]))


def _dense(t: torch.Tensor) -> bool:
    """Its elements fill numel() consecutive slots in some order of the dimensions."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride(), strict=True), key=lambda d: d[1]):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True
