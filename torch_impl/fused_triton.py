"""``fused=True`` on CUDA: each sweep of the step is one Triton launch over every tensor
(the kernels: ``torch_impl.triton_kernels``).

On the GPU a compiled call per pack of tensors (``torch_impl.fused``, the CPU kernels) costs
more in launches and guards than the sweep itself, and the foreach path makes a dozen passes
over memory. Here, as in torch's fused Adam (``multi_tensor_apply``), one launch covers a
list of tensors: a block table maps each program to (tensor, offset) and a pointer table
holds each tensor's address, so a step is two launches per kind of tensor (dtype, master
copy, step count: one kind in a plain model) and a few reductions of per-program partials.
PS-DA-SGD with Adam scaling and momentum thus moves 11 parameter-sized streams a step
(sweep 1: g, v; sweep 2: g, v, s, z, x read and v, s, z, x written) against fused Adam's 7.

The kernels compute the reductions ``IN_KERNEL`` names (with at most one of the two ratio
statistics a launch); any other a step rule or transfer reads is computed eagerly
(``multi_tensor.reduce_eagerly``) around the launches, on the same device.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import torch

from paramscale.theory.reductions import REDUCTIONS
from paramscale.torch_impl import plan as plans
from paramscale.torch_impl import state as keys
from paramscale.torch_impl.multi_tensor import alphas_of, reduce_eagerly
from paramscale.torch_impl.plan import STATE_KEYS
from paramscale.torch_impl.sweeps import Batch, Move, Sweep
from paramscale.torch_impl.triton_kernels import (
    BLOCK,
    PROGRAMS,
    RATIO_CODES,
    Launch,
    consts,
    move_sweep,
    rule_sweep,
    triton,
)

F64 = torch.float64
_data_ptr = torch.Tensor.data_ptr
_stride = torch.Tensor.stride
# the reductions the kernels compute: sweep 1's (one of the ratios a launch), sweep 2's
IN_KERNEL = {"step": frozenset({"alpha_max", "scaled_grad_sq", "grad_sq", *RATIO_CODES}),
             "move": frozenset({"step_dot"}), "moved": frozenset({"sum_sq"})}  # fmt: skip

# pointer tables kept per kind, keyed by the gradients' addresses: a training loop whose
# gradients come back at the same addresses uses one; a loop that allocates new gradients
# every step (set_to_none) cycles through a few, and past 16 the cache is dropped
MAX_TABLES = 16
ROWS = ("g", "x", "v", "w", "s", "m", "z")  # the pointer table's rows (w: AMSGrad's max)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def available(device: torch.device) -> bool:
    """Whether the kernels run on ``device``: CUDA with Triton, or the CPU under
    ``TRITON_INTERPRET=1``."""
    if triton is None:
        return False
    return device.type == "cuda" or (device.type == "cpu" and interpreting())


def block_table(numels: list[int], device: torch.device) -> tuple[torch.Tensor, ...]:
    """(blocks, starts, numels) for tensors of ``numels`` elements, BLOCK per program."""
    sizes = torch.tensor(numels, dtype=torch.int64)
    per = (sizes + BLOCK - 1) // BLOCK
    blocks = torch.repeat_interleave(torch.arange(len(numels), dtype=torch.int32), per)
    first = torch.cumsum(per, 0) - per
    starts = (torch.arange(int(per.sum())) - first.repeat_interleave(per)) * BLOCK
    return blocks.to(device), starts.to(device), sizes.to(device)


def pointer_table(rows: list[list[int]], device: torch.device) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64).reshape(-1).to(device)


class Kind(NamedTuple):
    """Tensors of one launch: same device, state dtype, parameter dtype, master copy and step
    count (``key``; the count when the layout was built: the kind's tensors step together
    while it is kept, so a caller reads the current one from a state). ``indices`` are
    their positions in the group, ``blocks`` the block table (fixed by the sizes), ``rows``
    the pointer-table rows after g (``ROWS``; 0: absent), ``tables`` the pointer tables
    by gradient addresses and ``counters`` the finished programs of a launch of each sweep
    (int32, zero between launches)."""

    key: tuple
    indices: list[int]
    blocks: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    rows: list[list[int]]
    tables: dict[tuple[int, ...], torch.Tensor]
    counters: tuple[torch.Tensor, torch.Tensor]


class Layout(NamedTuple):
    """A group's tensors as the kernels walk them: the ``kinds`` (a launch each) and the
    parameters' ``strides`` (a gradient must be laid out alike)."""

    kinds: list[Kind]
    strides: list[tuple[int, ...]]


def layout(params: list[torch.Tensor], states: list[dict], state_dtype) -> Layout:
    """The kinds of ``params`` (with their optimizer ``states``; ``state_dtype(p)`` the dtype
    their state is kept in). The kernels walk a tensor's memory linearly, so every tensor of
    a parameter must be dense and laid out as the parameter (contiguous, channels-last, ...:
    optimizer state is made with ``zeros_like``, which keeps the layout)."""
    columns, by_kind = [], {}
    for i, (p, st) in enumerate(zip(params, states, strict=True)):
        named = (p, *map(st.get, STATE_KEYS))  # ROWS after g
        for t in named:
            if t is not None and (t.stride() != p.stride() or not _dense(t)):
                raise ValueError(
                    f"Invalid parameter: shape {tuple(p.shape)} with strides {p.stride()} "
                    "with fused=True on CUDA (expected a dense tensor, its state laid out "
                    "alike; fused=False takes any layout)"
                )
        columns.append([0 if t is None else t.data_ptr() for t in named])
        kind = (p.device, state_dtype(p), p.dtype, named[-1] is not None, st[keys.STEP])
        by_kind.setdefault(kind, []).append(i)
    kinds = [
        Kind(
            key,
            indices,
            block_table([params[i].numel() for i in indices], key[0]),
            [list(row) for row in zip(*(columns[i] for i in indices), strict=True)],
            {},
            tuple(torch.zeros(1, dtype=torch.int32, device=key[0]) for _ in range(2)),
        )
        for key, indices in by_kind.items()
    ]
    return Layout(kinds, [p.stride() for p in params])


def laid_out(layout: Layout, params: list[torch.Tensor], grads: list[torch.Tensor]) -> list:
    """The gradients, each copied into its parameter's layout where it is not laid out so."""
    if list(map(_stride, grads)) == layout.strides:
        return grads
    return [
        g if g.stride() == p.stride() else torch.empty_like(p, dtype=g.dtype).copy_(g)
        for p, g in zip(params, grads, strict=True)
    ]


def launch(kind: Kind, grads: list[torch.Tensor]) -> Launch:
    """The tables of ``kind``'s launch with these gradients (``grads``: the whole group's,
    in order); the pointer table is cached by the gradients' addresses (a training loop
    whose gradients come back at the same addresses builds it once)."""
    mine = [grads[i] for i in kind.indices] if len(kind.indices) < len(grads) else grads
    addresses = tuple(map(_data_ptr, mine))
    table = kind.tables.get(addresses)
    if table is None:
        if len(kind.tables) >= MAX_TABLES:
            kind.tables.clear()
        table = kind.tables[addresses] = pointer_table([list(addresses), *kind.rows],
                                                       kind.key[0])  # fmt: skip
    blocks_n = len(kind.blocks[0])
    programs = min(blocks_n, PROGRAMS)
    return Launch(*kind.blocks, table, len(mine), blocks_n, programs, kind.counters)


def _dense(t: torch.Tensor) -> bool:
    """Its elements fill numel() consecutive slots in some order of the dimensions."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride(), strict=True), key=lambda d: d[1]):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True


# -- the path: the two sweeps of a step on CUDA, one launch per kind of tensor -------------
class Sweep1(NamedTuple):
    """What sweep 2 of a group needs from its sweep 1: the plan, the gradients in their
    parameters' layout (alive until sweep 2) and each kind's launch and scalars."""

    plan: Any
    grads: list
    launches: list


def _kind_batch(batch: Batch, kind: Any, grads: list) -> Batch:
    """The tensors of one kind of a batch."""
    at = kind.indices
    return Batch(batch.group, [batch.params[i] for i in at], [grads[i] for i in at],
                 [batch.states[i] for i in at])  # fmt: skip


def _fused_cuda_rule(sweep: Sweep) -> list[Sweep1]:
    """Sweep 1 of every group as one Triton launch per kind of tensor: reductions only,
    ||g||^2 among them (the finite check); a reduction the kernel does not compute,
    eagerly. A kernel variant is cheap to build: each step's own set is computed."""
    out, want = [], sweep.want
    ratio = next((n for n in want.step if n in RATIO_CODES), None)
    compiled = [n for n in want.step if n in IN_KERNEL["step"] and (n not in RATIO_CODES
                                                                    or n == ratio)]  # fmt: skip
    eager = tuple(n for n in want.step if n not in compiled)
    for batch in sweep.batches:
        group, ps, gs, sts = batch
        rule, b1, beta = group["scaling"], group["first_moment"], group["momentum"]
        describe = sweep.describe(group)
        plan = plans.planned(sweep.plans, group, ps, sts, layout, sweep.state_dtype, describe)
        gs = laid_out(plan.layout, ps, gs)
        launches = []
        for kind in plan.layout.kinds:
            count = plan.states[kind.indices[0]][keys.STEP]  # shared by the kind
            one = launch(kind, gs)
            c = consts(rule, count, b1, beta)
            stats = (ratio,) if ratio is not None and count > 0 else ()
            values = rule_sweep(rule, one, c, kind.key[1], "scaled_grad_sq" in compiled, stats)
            for name in compiled:
                if name in values:  # a ratio only where the tensors have an alpha_{k-1}
                    sweep.add(name, values[name])
            names = tuple(n for n in eager if count > 0 or "alpha_prev" not in REDUCTIONS[n].reads)
            if names:
                part = _kind_batch(batch, kind, gs)
                prev, alphas = alphas_of(rule, part.states, part.grads)
                reduce_eagerly(names, part, want, alphas, prev if count > 0 else None, sweep.add)
            launches.append((kind, one, c))
        out.append(Sweep1(plan, gs, launches))
    return out


def _fused_cuda_move(sweep: Sweep, move: Move) -> None:
    """Sweep 2 of every group as one Triton launch per kind, with <g', s_{k-1}> (times the
    group's step) and ||s_k||^2 when the rule keeps s; other move reductions eagerly."""
    want = sweep.want
    keeps_s = "s" in want.vectors
    eager_move = tuple(n for n in want.move if n not in IN_KERNEL["move"])
    eager_moved = tuple(n for n in want.moved if n not in IN_KERNEL["moved"])
    for batch, one, lam in zip(sweep.batches, move.staged, move.lams, strict=True):
        rule, b1, beta = (batch.group[key] for key in ("scaling", "first_moment", "momentum"))
        states = one.plan.states
        for kind, run, c in one.launches:
            _, dtype, x_dtype, has_z, _ = kind.key
            part = _kind_batch(batch, kind, one.grads)
            if eager_move:  # of s_{k-1}: before the launch changes it
                _, alphas = alphas_of(rule, part.states, part.grads)
                reduce_eagerly(eager_move, part, want, alphas, None, move.add, lam)
            sums = move_sweep(
                rule, run, c, dtype, x_dtype, lam, move.rho, keeps_s, b1 > 0, has_z, beta > 0
            )
            if keeps_s:
                dot, s_sq = sums
                if "step_dot" in want.move:
                    move.add("step_dot", dot * lam)  # lam <g', s_{k-1}>
                if "sum_sq" in want.moved:
                    move.add("sum_sq", s_sq)
            for i in kind.indices:  # after the launch: the GPU need not wait for this loop
                states[i][keys.STEP] += 1
            if eager_moved:
                _, alphas = alphas_of(rule, part.states, part.grads, advanced=True)
                reduce_eagerly(eager_moved, part, want, alphas, None, move.add)
        for st in one.plan.stale_alpha:
            st.pop(keys.ALPHA, None)  # left by the foreach path: the fused path derives it
