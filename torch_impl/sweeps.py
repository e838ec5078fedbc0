"""What every path of a step shares: its arguments (``Batch``, ``Want``, ``Sweep``,
``Move``), the dispatcher (``path``), the cutting of tensor lists into chunks, and the
generic evaluation of named reductions (``theory.reductions``) on lists of tensors.

A path is two module functions with one signature each, as ``torch/optim/adam.py``'s
``_single_tensor_adam`` / ``_multi_tensor_adam`` / ``_fused_adam``:

- ``rule(sweep: Sweep) -> staged``: sweep 1, which writes nothing: alpha_k, the rule state
  at step k, and the step-stage reductions of ``sweep.want`` through ``sweep.add``;
- ``move(sweep: Sweep, move: Move) -> None``: sweep 2, once the step goes ahead: the
  staged state stored, the vector state (s) and the iterate moved, and the move- and
  moved-stage reductions through ``move.add`` (read at the next synchronisation).

The paths: ``multi_tensor._single_tensor_*`` (theory's rule objects on each tensor, any
rule), ``multi_tensor._multi_tensor_*`` (``torch._foreach_*``; the element-wise built-in
rules), ``fused._fused_cpu_*`` (compiled kernels), ``fused_triton._fused_cuda_*``
(Triton). Each computes every reduction a rule declares: in its kernels where it can, with
``reduce_lists`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from paramscale.theory.reductions import FIELDS, REDUCTIONS, Coordinates

F64 = torch.float64
Tensors = list[torch.Tensor]
Add = Callable[[str, torch.Tensor], None]
CPU_CHUNK = 1 << 16  # elements per foreach chunk on the CPU: temporaries stay cache-sized
# the step from which a compiled sweep 1 computes the step's reductions: a rule's first
# steps read others than its steady ones (step 0's starting values, the transfer from step
# 1), computed eagerly, so that one kernel variant is compiled, for the steady set; the
# choice depends on the step count alone, so a resumed run computes as the uninterrupted
KERNEL_FROM = 2


class Batch(NamedTuple):
    """A parameter group at a step: its stepped tensors (local shards), their gradients
    (the descent direction, in the state dtype) and their state dicts."""

    group: dict[str, Any]
    params: Tensors
    grads: Tensors
    states: list[dict[str, Any]]


class Want(NamedTuple):
    """What a step reduces, by stage (``theory.reductions``; ``grad_sq``, the finite check,
    always among ``step``), ``kernel``: the step-stage ones a compiled kernel may compute
    (from ``KERNEL_FROM`` on), the vector state kept (``vectors``) and set from this step
    (``capture``)."""

    step: tuple[str, ...]
    move: tuple[str, ...] = ()
    moved: tuple[str, ...] = ()
    kernel: tuple[str, ...] = ()
    vectors: frozenset[str] = frozenset()
    capture: frozenset[str] = frozenset()


class Sweep(NamedTuple):
    """A path's arguments: the batches, what to reduce, where reductions go (``add``), the
    fused paths' cached plans by group (``plans``), the state dtype of a parameter and how
    to name a parameter in an error (``describe``)."""

    batches: list[Batch]
    want: Want
    add: Add
    plans: dict[int, Any]
    state_dtype: Callable[[torch.Tensor], torch.dtype]
    describe: Callable[[dict[str, Any]], Callable[[torch.Tensor], str]]
    k: int = 0


class Move(NamedTuple):
    """Sweep 2's own arguments: sweep 1's ``staged`` result, each batch's step ``lams``,
    the metric transfer ``rho`` and where the move's reductions go (``add``)."""

    staged: Any
    lams: list[float]
    rho: float
    add: Add


class Path(NamedTuple):
    name: str
    rule: Callable[[Sweep], Any]
    move: Callable[[Sweep, Move], None]


def path(fused: bool, foreach: bool | None, device: torch.device, elementwise: bool) -> Path:
    """The path a group takes: fused (Triton on CUDA, compiled kernels on the CPU), the
    foreach path for the element-wise built-in rules unless ``foreach=False``, else per
    tensor."""
    from paramscale.torch_impl import fused as cpu
    from paramscale.torch_impl import fused_triton as cuda
    from paramscale.torch_impl import multi_tensor as mt

    if fused:
        if cuda.available(device):
            return Path("fused_cuda", cuda._fused_cuda_rule, cuda._fused_cuda_move)
        return Path("fused_cpu", cpu._fused_cpu_rule, cpu._fused_cpu_move)
    if foreach is not False and elementwise:
        return Path("foreach", mt._multi_tensor_rule, mt._multi_tensor_move)
    return Path("per_tensor", mt._single_tensor_rule, mt._single_tensor_move)


def check_fused_device(device: torch.device) -> None:
    """``fused=True`` runs on the CPU and, with Triton, on CUDA; a meta model must be
    materialised first."""
    from paramscale.torch_impl import fused_triton

    if device.type == "meta":
        raise RuntimeError(
            "Invalid parameter device: meta at a step with fused=True (expected cpu, or "
            "cuda with Triton installed: materialise the model first, model.to_empty)"
        )
    if device.type != "cpu" and not fused_triton.available(device):
        raise ValueError(
            f"Invalid parameter device: {device} with fused=True (expected cpu, or cuda "
            "with Triton installed)"
        )


def want_of(rule: Any, scalars: Any, k: int, vectors: frozenset[str]) -> Want:
    """A step's ``Want``: the rule's reductions by stage (``rule.reductions``), the
    transfer's (k > 0; the host keeps max alpha_{k-1}) and ``grad_sq`` (the finite check);
    the compiled kernels' share: none before ``KERNEL_FROM``."""
    from paramscale.theory.transfer import HOST_STATISTICS, TRANSFERS

    names = rule.reductions(scalars, k)
    transfer = TRANSFERS[rule.transfer].needs if k > 0 and rule.transfer != "none" else ()
    step = tuple(sorted({*stage(names, "step"), *transfer, "grad_sq"} - {HOST_STATISTICS[1]}))
    kernel = step if k >= KERNEL_FROM else ()
    moving = stage(names, "move")
    return Want(step, moving, stage(names, "moved"), kernel, vectors, rule.captures(scalars))


def chunks(ps: Tensors, gs: Tensors, states: list[dict], budget: float) -> list[tuple]:
    """(params, grads, states) cut into chunks of about ``budget`` elements, and wherever
    the parameters' device or dtype changes: a foreach kernel (and the write of x) sees one
    device and dtype, as torch's ``_group_tensors_by_device_and_dtype`` arranges (a group's
    parameters keep their order, so alternating dtypes cost a chunk per tensor)."""
    out, start, size = [], 0, 0
    for i, p in enumerate(ps):
        size += p.numel()
        last = i == len(ps) - 1
        if last or size >= budget or (p.device, p.dtype) != (ps[i + 1].device, ps[i + 1].dtype):
            out.append((ps[start : i + 1], gs[start : i + 1], states[start : i + 1]))
            start, size = i + 1, 0
    return out


def foreach_budget(ps: Tensors) -> float:
    """A chunk per dtype on CUDA (one launch per op), ``CPU_CHUNK`` elements on the CPU."""
    return math.inf if ps[0].is_cuda else CPU_CHUNK


def stage(names: frozenset[str] | tuple[str, ...], which: str) -> tuple[str, ...]:
    """The reductions of ``names`` taken at stage ``which``, sorted (every rank, every
    path in the same order)."""
    return tuple(sorted(name for name in names if REDUCTIONS[name].stage == which))


class Lists(NamedTuple):
    """The tensors a chunk's fields read (``theory.reductions.Coordinates``, as lists)."""

    g: Tensors
    alpha: Tensors
    alpha_prev: Tensors | None = None
    x: Tensors | None = None
    x0: Tensors | None = None
    g0: Tensors | None = None
    s: Tensors | None = None
    anchor: Tensors | None = None


def _field(name: str, lists: Lists) -> Tensors:
    """Field ``name`` of every tensor: foreach kernels for the common ones, else theory's
    element-wise function (array API) per tensor."""
    if name in Lists._fields and name in FIELDS:
        return getattr(lists, name)
    if name == "g_scaled":
        return torch._foreach_div(lists.g, lists.alpha)
    if name == "ratio":
        return torch._foreach_div(lists.alpha, lists.alpha_prev)
    field = FIELDS[name]
    columns = {key: getattr(lists, key) for key in field.reads}
    return [
        field.of(Coordinates(**{key: column[i] for key, column in columns.items()}))
        for i in range(len(lists.g))
    ]


def reduce_lists(
    names: tuple[str, ...],
    lists: Lists,
    add: Add,
    weight: float = 1.0,
    known: dict[str, Tensors] | None = None,
) -> None:
    """Each reduction of ``names`` over the tensors of ``lists``, through ``add`` as a
    float64 0-dim tensor (sums accumulated in float64; a weighted one times ``weight``).
    ``known``: fields the caller has computed already (``g_scaled`` in sweep 2)."""
    fields: dict[str, Tensors] = dict(known or {})
    for name in names:
        reduction = REDUCTIONS[name]
        values = []
        for key in reduction.fields:
            if key not in fields:
                fields[key] = _field(key, lists)
            values.append(fields[key])
        if reduction.form == "sq":
            value = torch.stack(torch._foreach_norm(values[0])).to(F64).square().sum()
        elif reduction.form == "dot":
            value = dot(*values)
        elif reduction.form == "max":
            value = torch.stack(torch._foreach_max(values[0])).max().to(F64)
        else:
            value = torch.stack([v.amin() for v in values[0]]).min().to(F64)  # no argmin
        add(name, value * weight if reduction.weighted and weight != 1.0 else value)


def dot(a: Tensors, b: Tensors) -> torch.Tensor:
    """sum of the inner products of two tensor lists, in float64: on the CPU one pass per
    tensor, no temporary; on CUDA one foreach product, one concatenation, one reduction
    (3 launches instead of one per tensor)."""
    if not a[0].is_cuda:
        dots = [torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(a, b, strict=True)]
        return torch.stack(dots).to(F64).sum()
    prods = torch._foreach_mul(a, b)
    return torch.cat([p.reshape(-1) for p in prods]).sum().to(F64)


def vectors_of(states: list[dict], want: Want, gs: Tensors) -> dict[str, Tensors | None]:
    """The vector state of a chunk's tensors by name (None where not kept), the gradients
    as g_0 at a step that captures it."""
    vec = {key: None for key in ("x0", "g0", "s", "anchor")}
    for key in vec:
        if key in want.capture:
            vec[key] = gs
        elif key in want.vectors:
            vec[key] = [st.get(key) for st in states]  # anchor: None before a tensor's first
    return vec
