"""``paramscale bench --communication``: the collectives an optimizer step makes under
PyTorch's distributed engines, counted, with their bytes, next to torch.optim.Adam.

Two CPU processes on gloo train the 167k-parameter model of tests/test_torch_engines.py
(``model``) under DDP, FSDP2 (``fully_shard``) and ZeRO (``ZeroRedundancyOptimizer``). Every
``torch.distributed`` collective called inside ``optimizer.step()`` is counted (the
engine's own gradient reduction runs in ``backward()`` and is the same for every
optimizer); 3 warm-up steps, then 5 counted. Rows are written as a tidy CSV.
"""

from __future__ import annotations

import csv
import functools
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

COLLECTIVES = (
    "all_reduce", "all_gather", "all_gather_object", "broadcast", "reduce_scatter_tensor",
    "all_gather_into_tensor", "reduce", "gather", "scatter", "all_to_all",
)  # fmt: skip
ENGINES = ("ddp", "fsdp2", "zero")
OPTIMIZERS = ("Adam", "PSDASGD", "PSSPS")
WARMUP, COUNTED, WORLD = 3, 5, 2


@dataclass(frozen=True)
class Traffic:
    engine: str
    optimizer: str
    collectives_per_step: float
    bytes_per_step: float  # this rank's tensors handed to the collectives


def _nbytes(args: tuple) -> int:
    total = 0
    for arg in args:
        if isinstance(arg, torch.Tensor):
            total += arg.numel() * arg.element_size()
        elif isinstance(arg, list):
            total += sum(t.numel() * t.element_size() for t in arg if isinstance(t, torch.Tensor))
    return total


def _counting(dist, tally: dict) -> None:
    """Wrap each collective of ``dist`` to count calls and bytes while ``tally["on"]``."""
    for name in COLLECTIVES:
        original = getattr(dist, name, None)
        if original is None:
            continue

        @functools.wraps(original)
        def counted(*args, _original=original, **kwargs):
            if tally["on"]:
                tally["calls"] += 1
                tally["bytes"] += _nbytes((*args, *kwargs.values()))
            return _original(*args, **kwargs)

        setattr(dist, name, counted)


def model(uneven: bool, dtype: torch.dtype) -> torch.nn.Sequential:
    """The engines' model: 64-512-256-10 ReLU (167,178 parameters), or 64-511-256-1
    (164,544), whose last layer's weight and bias are empty on the second of two ranks."""
    torch.manual_seed(0)
    widths = (64, 511, 256, 1) if uneven else (64, 512, 256, 10)
    layers: list[torch.nn.Module] = []
    for a, b in zip(widths, widths[1:], strict=False):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).to(dtype)


def batch(outputs: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed regression batch of 32 (float64 draws, then cast)."""
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(32, 64, generator=gen, dtype=torch.float64)
    return X.to(dtype), torch.randn(32, outputs, generator=gen, dtype=torch.float64).to(dtype)


def _make(engine: str, optimizer: str, rank: int):
    from paramscale import torch_impl

    net = model(False, torch.float32)
    X, Y = batch(10, torch.float32)
    X, Y = X[rank::WORLD], Y[rank::WORLD]
    options = {"eta_max": 0.1} if optimizer == "PSSPS" else {}
    kind = torch.optim.Adam if optimizer == "Adam" else getattr(torch_impl, optimizer)
    if engine == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in net:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(net)
        return net, kind(net.parameters(), **options), X, Y
    net = torch.nn.parallel.DistributedDataParallel(net)
    if engine == "zero":
        from torch.distributed.optim import ZeroRedundancyOptimizer

        sharded = {} if optimizer == "Adam" else {"sharded": True}
        opt = ZeroRedundancyOptimizer(net.parameters(), optimizer_class=kind, **sharded, **options)
        return net, opt, X, Y
    return net, kind(net.parameters(), **options), X, Y


def _count(engine: str, optimizer: str, rank: int, tally: dict) -> Traffic:
    """The collectives of ``COUNTED`` steps after ``WARMUP``, per step."""
    net, opt, X, Y = _make(engine, optimizer, rank)
    tally.update(calls=0, bytes=0)
    for i in range(WARMUP + COUNTED):
        opt.zero_grad()
        loss = ((net(X) - Y) ** 2).mean()
        loss.backward()
        tally["on"] = i >= WARMUP
        opt.step(lambda loss=loss: loss) if optimizer == "PSSPS" else opt.step()
        tally["on"] = False
    return Traffic(engine, optimizer, tally["calls"] / COUNTED, tally["bytes"] / COUNTED)


def _worker(rank: int, port: int, out: str) -> None:
    import warnings

    import torch.distributed as dist

    warnings.simplefilter("ignore")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)  # fmt: skip
    tally = {"on": False, "calls": 0, "bytes": 0}
    _counting(dist, tally)
    rows = []
    for engine in ENGINES:
        for optimizer in OPTIMIZERS:
            rows.append(_count(engine, optimizer, rank, tally))
            print(f"  {engine} {optimizer}: done", file=sys.stderr, flush=True)
    if rank == 0:
        torch.save([r.__dict__ for r in rows], out)
    dist.barrier()
    os._exit(0)


def measure(out_dir: Path) -> list[Traffic]:
    """Counts every engine x optimizer on 2 processes; rank 0's counts."""
    import torch.multiprocessing as mp

    out_dir.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(out_dir / "communication.pt")
    mp.spawn(_worker, args=(port, out), nprocs=WORLD, join=True)
    return [Traffic(**row) for row in torch.load(out)]


def write_csv(rows: list[Traffic], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["engine", "optimizer", "collectives_per_step", "bytes_per_step"])
        for r in rows:
            writer.writerow([r.engine, r.optimizer, r.collectives_per_step, r.bytes_per_step])


def format_table(rows: list[Traffic]) -> str:
    head = f"{'engine':8} {'optimizer':10} {'collectives/step':>17} {'bytes/step':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.engine:8} {r.optimizer:10} {r.collectives_per_step:>17.1f} "
            f"{r.bytes_per_step:>11.0f}"
        )
    return "\n".join(lines)
