"""How the parameters are spread over processes, and the step's statistics made the same
on every rank (docs/distributed.md).

- ``local``: the tensor a step updates. A DTensor parameter (FSDP2's ``fully_shard``,
  tensor parallelism) is stepped on its local shard, with plain tensors; its gradient too.
- ``mesh_group``: the process group a model of DTensor parameters reduces its global
  statistics over: that of the mesh dimension its parameters are sharded on (none for
  replicated ones, whose every rank holds the whole tensor).
- ``agreed_keys``: before the statistics are all-reduced, the ranks agree on which ones
  there are and on the step (one all-gather of three integers a rank): a rank whose shard
  holds no tensor of a group, or no tensor at all, reduces the same vector as the others,
  with each statistic's neutral value, instead of a shorter one that would hang the
  collective; ranks at different steps are refused.
- ``refuse_replicas``, ``warn_if_shards``: the first step's check that the ranks hold what
  ``sharded`` says (shards with it, replicas without).
- ``mean_over_ranks``: PS-SPS's loss averaged over the ranks.
"""

from __future__ import annotations

import functools
import warnings
import zlib
from typing import Any

import torch


@functools.cache
def _dtensor_type() -> type:
    """torch's DTensor class (imported once; a class no tensor is an instance of where
    torch.distributed is not built)."""
    if not torch.distributed.is_available():
        return type("NoDTensor", (), {})
    from torch.distributed.tensor import DTensor

    return DTensor


def is_dtensor(t: Any) -> bool:
    return isinstance(t, _dtensor_type())


def local(t: torch.Tensor) -> torch.Tensor:
    """The tensor that holds ``t``'s values on this rank: its local shard for a DTensor,
    ``t`` itself otherwise."""
    return t._local_tensor if is_dtensor(t) else t


def mesh_group(params: list[torch.Tensor], sharded: bool = False) -> Any:
    """The process group to reduce the statistics of ``params`` over: the group of the
    mesh dimension the DTensor parameters are sharded on; None when none is sharded (plain
    or replicated parameters). DTensors sharded over two mesh dimensions, over different
    dimensions from one another, or mixed with plain tensors, are refused by name, and so
    is ``sharded=True`` with a sharded mesh (its reductions already span the ranks)."""
    dtensors = [p for p in params if is_dtensor(p)]
    if not dtensors:
        return None
    if len(dtensors) != len(params):
        raise ValueError(
            f"Invalid params: {len(dtensors)} DTensors and {len(params) - len(dtensors)} plain "
            "tensors (expected one kind: a plain tensor next to sharded ones would be counted "
            "once per rank; shard the whole model, e.g. fully_shard on the root module too)"
        )
    found = []  # the process group each parameter is sharded over (None: replicated)
    for p in dtensors:
        dims = [i for i, placement in enumerate(p.placements) if placement.is_shard()]
        if len(dims) > 1:
            raise ValueError(
                f"Invalid params: a DTensor sharded over mesh dimensions {dims} "
                f"({p.placements}; expected one: FSDP2 or HSDP, not FSDP with tensor "
                "parallelism)"
            )
        group = p.device_mesh.get_group(dims[0]) if dims else None
        if found and group is not found[0]:
            raise ValueError(
                "Invalid params: DTensors sharded over different process groups, or some "
                "sharded and some replicated (expected one layout for the whole model)"
            )
        found.append(group)
    if found[0] is not None and sharded:
        raise ValueError(
            "Invalid sharded: True with DTensor parameters sharded over a device mesh "
            "(expected False: the statistics are reduced over the mesh's group already)"
        )
    return found[0]


def _fingerprints(gs: list[torch.Tensor], device: torch.device, group: Any) -> list:
    """Every rank's (number of elements, sum of squared gradients) of ``gs``: one
    all-gather of two numbers."""
    mine = torch.zeros(2, dtype=torch.float64, device=device)
    if gs:
        mine[0] = float(sum(g.numel() for g in gs))
        mine[1] = torch.stack([g.double().square().sum() for g in gs]).sum()
    everyone = [torch.empty_like(mine) for _ in range(torch.distributed.get_world_size(group))]
    torch.distributed.all_gather(everyone, mine, group)
    return [tuple(other.tolist()) for other in everyone]


def refuse_replicas(gs: list[torch.Tensor], device: torch.device, group: Any) -> None:
    """``sharded=True`` says each rank holds its own part of the model; ranks that hold the
    same number of elements with the same gradients are replicas (DDP), whose statistics
    summed over the ranks would count the model once per rank: refused, on every rank at
    once (at the first step)."""
    prints = _fingerprints(gs, device, group)
    world, mine = len(prints), prints[0]
    if world > 1 and mine[0] > 0 and len(set(prints)) == 1:
        raise ValueError(
            f"Invalid sharded: True, but all {world} ranks hold {int(mine[0])} elements with "
            "the same gradients: replicas (DDP), not shards (expected sharded=False for "
            "DistributedDataParallel; sharded=True is for ZeroRedundancyOptimizer or a "
            "model split by hand; FSDP2 is detected)"
        )


def warn_if_shards(gs: list[torch.Tensor], device: torch.device) -> None:
    """Without ``sharded``, under ``torch.distributed``: ranks whose parameters differ in
    size or whose gradients differ are not replicas, so each computes its own ``d`` from its
    part only; warned about, on every rank (at the first step). Replicas (DDP) agree."""
    prints = _fingerprints(gs, device, None)
    if len(set(prints)) > 1:
        sizes = ", ".join(f"rank {r}: {int(n)} elements" for r, (n, _) in enumerate(prints))
        warnings.warn(
            f"The ranks hold different parameters or gradients ({sizes}) and sharded=False: "
            "each rank's step size then comes from its part of the model only. For shards of "
            "one model (ZeroRedundancyOptimizer, FSDP1, a split by hand) pass sharded=True; "
            "for a model only this rank trains, reduce_loss=False (no collective)",
            RuntimeWarning,
            stacklevel=2,
        )


def running() -> bool:
    """Whether ``torch.distributed`` runs with more than one rank."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def check_layout(
    gs: list[torch.Tensor], device: torch.device, sharded: bool, group: Any, meshed: bool,
    reduce_loss: bool | None,
) -> None:  # fmt: skip
    """The first step's check that the ranks hold what the options say: shards with
    ``sharded`` (replicas refused), replicas without it (shards warned about, unless the
    parameters are a DTensor mesh or ``reduce_loss=False`` says this rank trains alone)."""
    if sharded:
        refuse_replicas(gs, device, group)
    elif not meshed and reduce_loss is not False and running():
        warn_if_shards(gs, device)


def mean_over_ranks(loss: Any, device: torch.device, group: Any) -> torch.Tensor:
    """The mean of every rank's loss (a number or a 0-dim tensor), as a float64 0-dim tensor
    on ``device``: the loss of the whole batch when the ranks' batches are equal in size."""
    if isinstance(loss, torch.Tensor):
        value = loss.detach().reshape(()).to(device=device, dtype=torch.float64, copy=True)
    else:  # a Python number: float64 from the start (torch.tensor would make it float32)
        value = torch.tensor(float(loss), dtype=torch.float64, device=device)
    torch.distributed.all_reduce(value, torch.distributed.ReduceOp.SUM, group)
    return value / torch.distributed.get_world_size(group)


def agreed_keys(keys: list[str], group: Any, step: int = -1) -> list[str]:
    """The statistics every rank of ``group`` reduces at ``step``, sorted: ``keys`` itself
    when all ranks have the same names (one all-gather of a checksum and the step count),
    else their union (a second, rare exchange of the names). Ranks at different steps (a
    checkpoint loaded on some only) are refused by name, on every rank."""
    names = sorted(keys)
    checksum = zlib.crc32("\0".join(names).encode())
    mine = torch.tensor([checksum, len(names), step], dtype=torch.int64)
    if torch.distributed.get_backend(group) == "nccl":
        mine = mine.cuda()
    world = torch.distributed.get_world_size(group)
    everyone = [torch.empty_like(mine) for _ in range(world)]
    torch.distributed.all_gather(everyone, mine, group)
    steps = [int(other[2]) for other in everyone]
    if len(set(steps)) > 1:
        ranks = ", ".join(f"rank {r}: step {k}" for r, k in enumerate(steps))
        raise RuntimeError(
            f"The ranks are at different steps ({ranks}): their optimizers' states differ "
            "(a checkpoint loaded on some ranks only?); every rank must load the same one"
        )
    if all(torch.equal(other, mine) for other in everyone):
        return names
    lists: list[Any] = [None] * world
    torch.distributed.all_gather_object(lists, names, group)
    return sorted(set().union(*lists))
