"""How the parameters are spread over processes, and the step's statistics made the same
on every rank (docs/distributed.md).

- ``local``: the tensor a step updates. A DTensor parameter (FSDP2's ``fully_shard``,
  tensor parallelism) is stepped on its local shard, with plain tensors; its gradient too.
- ``mesh_group``: the process group a model of DTensor parameters reduces its global
  statistics over: that of the mesh dimension its parameters are sharded on (none for
  replicated ones, whose every rank holds the whole tensor).
- ``agreed_keys``: before the statistics are all-reduced, the ranks agree on which ones
  there are (one all-gather of a checksum of the names, 8 bytes a rank): a rank whose
  shard holds no tensor of a group, or no tensor at all, reduces the same vector as the
  others, with each statistic's neutral value, instead of a shorter one that would hang
  the collective.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch


def _dtensor_type() -> type | None:
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor

    return DTensor


def is_dtensor(t: Any) -> bool:
    kind = _dtensor_type()
    return kind is not None and isinstance(t, kind)


def local(t: torch.Tensor) -> torch.Tensor:
    """The tensor that holds ``t``'s values on this rank: its local shard for a DTensor,
    ``t`` itself otherwise."""
    return t._local_tensor if is_dtensor(t) else t


def mesh_group(params: list[torch.Tensor]) -> Any:
    """The process group to reduce the statistics of ``params`` over: the group of the
    mesh dimension the DTensor parameters are sharded on; None when none is sharded (plain
    or replicated parameters). DTensors sharded over two mesh dimensions, over different
    dimensions from one another, or mixed with plain tensors, are refused by name."""
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
    return found[0]


def agreed_keys(keys: list[str], group: Any) -> list[str]:
    """The statistics every rank of ``group`` reduces this step, sorted: ``keys`` itself
    when all ranks have the same names (one all-gather of a checksum), else their union
    (a second, rare exchange of the names)."""
    names = sorted(keys)
    checksum = zlib.crc32("\0".join(names).encode())
    mine = torch.tensor([checksum, len(names)], dtype=torch.int64)
    backend = torch.distributed.get_backend(group)
    if backend == "nccl":
        mine = mine.cuda()
    world = torch.distributed.get_world_size(group)
    everyone = [torch.empty_like(mine) for _ in range(world)]
    torch.distributed.all_gather(everyone, mine, group)
    if all(torch.equal(other, mine) for other in everyone):
        return names
    lists: list[Any] = [None] * world
    torch.distributed.all_gather_object(lists, names, group)
    return sorted(set().union(*lists))
