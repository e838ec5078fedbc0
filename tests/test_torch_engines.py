"""PyTorch's distributed engines (docs/distributed.md): two CPU processes on gloo, each on
half of the batch, against one process on the whole batch, for a model of 167k (or 165k,
unevenly sharded) parameters.

- DDP: ``DistributedDataParallel``, the optimizer on every replica as it is;
- FSDP2: ``fully_shard`` on each linear layer and the root, DTensor parameters, detected;
  evenly sharded, and unevenly, with a layer of one output whose weight and bias are
  empty on the second rank;
- ZeRO: ``ZeroRedundancyOptimizer(optimizer_class=PSDASGD, sharded=True)`` under DDP;
- FSDP1 needs an accelerator on this torch ("FSDP needs a non-CPU accelerator device"),
  so it runs only where CUDA is (marked ``cuda``).

Every path (per tensor, foreach, fused) and both dtypes run on the unevenly sharded FSDP2
model, where a rank's shards are empty; PSDASGD and PSSPS on the foreach path in float64
under every engine (``PER_ENGINE``); PS-DoG and PS-DoWG (whose reductions read the start
x_0) under FSDP2 and ZeRO.

Each run compares the distance travelled by every parameter and the final d and step
size with the single process: float64 to 1e-9 (the sums are reduced in another order;
measured: 7e-12 at most), float32 to 5% (D-Adaptation's d is that sensitive to float32
round-off here: one process in float32 ends 0.7% and 1.9% from float64 on the two models;
the engines ended 0.005% (DDP, ZeRO) and 1.4% (FSDP2, uneven) from one float32 process).
Each spawn has a timeout, so a hang fails the test.
"""

import os
import socket
import time
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import Parameter

from paramscale import torch_impl as T
from paramscale.communication import batch, model
from tests.devices import needs_cuda

STEPS, WORLD, TIMEOUT_S = 12, 2, 150
CONFIGS = {  # name -> (optimizer, options, dtype)
    "psdasgd-foreach-f64": ("PSDASGD", {}, torch.float64),
    "psdasgd-per-tensor-f64": ("PSDASGD", {"foreach": False}, torch.float64),
    "psdasgd-fused-f64": ("PSDASGD", {"fused": True}, torch.float64),
    "pssps-foreach-f64": ("PSSPS", {"eta_max": 0.1}, torch.float64),
    "psdasgd-foreach-f32": ("PSDASGD", {}, torch.float32),
    "psdog-foreach-f64": ("PSDoG", {"reps_rel": 1e-3}, torch.float64),
    "psdowg-fused-f64": ("PSDoWG", {"fused": True}, torch.float64),
}
PER_ENGINE = {  # every path and dtype where the sharding is the hardest; the rest elsewhere
    "ddp": ("psdasgd-foreach-f64", "pssps-foreach-f64", "psdasgd-foreach-f32"),
    "fsdp2-even": ("psdasgd-foreach-f64", "pssps-foreach-f64"),
    # every config but PS-DA-SGD fused, sharded in test_torch_distributed's
    # sharded-equals-unsharded (each fused config compiles in both ranks)
    "fsdp2-uneven": tuple(c for c in CONFIGS if c != "psdasgd-fused-f64"),
    "zero": ("psdasgd-foreach-f64", "pssps-foreach-f64", "psdog-foreach-f64"),
    "fsdp1": tuple(CONFIGS),
}


def make(kind: str, params, options: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return getattr(T, kind)(params, **options)


def train(net, opt, X, Y) -> None:
    for _ in range(STEPS):

        def closure():
            opt.zero_grad()
            loss = ((net(X) - Y) ** 2).mean()
            loss.backward()
            return loss

        opt.step(closure)


def flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in params])


def single(config: str, uneven: bool) -> dict:
    kind, options, dtype = CONFIGS[config]
    net = model(uneven, dtype)
    X, Y = batch(1 if uneven else 10, dtype)
    start = flat(net.parameters())
    opt = make(kind, net.parameters(), options)
    train(net, opt, X, Y)
    return {"moved": flat(net.parameters()) - start, **_estimates(opt)}


def _estimates(opt) -> dict:
    """The step size and the rule's scalar estimates (D-Adaptation's d, DoG's rbar, ...)."""
    stats = opt.stats()
    counters = ("k", "amax", "skipped", "skip_run", "d_growths")
    return {key: value for key, value in stats.items() if key not in counters}


def _engine_run(engine: str, config: str, rank: int) -> dict:
    kind, options, dtype = CONFIGS[config]
    uneven = engine == "fsdp2-uneven"
    net = model(uneven, dtype)
    X, Y = batch(1 if uneven else 10, dtype)
    X, Y = X[rank::WORLD], Y[rank::WORLD]
    start = flat(net.parameters())
    if engine.startswith("fsdp2"):
        from torch.distributed.fsdp import fully_shard

        for layer in net:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(net)
        opt = make(kind, net.parameters(), options)
        owner = opt
    elif engine == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel

        net = FullyShardedDataParallel(net.cuda(), use_orig_params=True)
        X, Y = X.cuda(), Y.cuda()
        opt = owner = make(kind, net.parameters(), {**options, "sharded": True})
    else:
        net = torch.nn.parallel.DistributedDataParallel(net)
        if engine == "zero":
            from torch.distributed.optim import ZeroRedundancyOptimizer

            opt = ZeroRedundancyOptimizer(
                net.parameters(), optimizer_class=getattr(T, kind), sharded=True, **options
            )
            owner = opt.optim
        else:
            opt = owner = make(kind, net.parameters(), options)
    train(net, opt, X, Y)
    estimates = _estimates(owner)  # every rank: a collective when sharded
    if engine.startswith("fsdp2"):
        end = torch.cat([p.full_tensor().detach().reshape(-1).double() for p in net.parameters()])
    elif engine == "fsdp1":
        with FullyShardedDataParallel.summon_full_params(net):
            end = flat(net.parameters()).cpu()
    else:
        end = flat(net.parameters())
    return {"moved": end - start, **estimates}


def _worker(rank: int, port: int, engines: tuple[str, ...], out: str) -> None:
    """Every engine of ``engines`` in turn on one process group (a spawn and a group per
    engine would cost more than the runs)."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    results = {
        engine: {config: _engine_run(engine, config, rank) for config in PER_ENGINE[engine]}
        for engine in engines
    }
    if rank == 0:
        torch.save(results, out)
    dist.barrier()
    os._exit(
        0
    )  # gloo's teardown may abort after the results are written (see test_torch_distributed)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(worker, *args, label: str, world: int = WORLD) -> None:
    """``worker(rank, port, *args)`` on ``world`` processes; killed, and the test failed,
    after ``TIMEOUT_S``."""
    context = mp.spawn(worker, args=(_free_port(), *args), nprocs=world, join=False)
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=max(0.1, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{label}: the ranks did not finish in {TIMEOUT_S} s (a hang)")


def spawn(engines: tuple[str, ...], out: str) -> dict:
    """Rank 0's results, by engine, for every configuration under each of ``engines``."""
    run_ranks(_worker, engines, out, label=",".join(engines))
    return torch.load(out)


CPU_ENGINES = ("ddp", "fsdp2-even", "fsdp2-uneven", "zero")
ENGINES = [*CPU_ENGINES, needs_cuda("fsdp1", reason="FSDP1 needs CUDA")]


@pytest.fixture(scope="module")
def cpu_engines(tmp_path_factory) -> dict:
    """The CPU engines' results from one spawn of two ranks."""
    return spawn(CPU_ENGINES, str(tmp_path_factory.mktemp("engines") / "cpu.pt"))


@pytest.mark.parametrize("engine", ENGINES)
def test_an_engine_takes_the_single_process_steps(engine, request, tmp_path):
    if engine in CPU_ENGINES:
        got = request.getfixturevalue("cpu_engines")[engine]
    else:
        got = spawn((engine,), str(tmp_path / f"{engine}.pt"))[engine]
    for config in PER_ENGINE[engine]:
        expected = single(config, engine == "fsdp2-uneven")
        rtol = 1e-9 if CONFIGS[config][2] == torch.float64 else 0.05
        for key in expected.keys() - {"moved"}:  # the step, rho, the rule's estimates
            assert got[config][key] == pytest.approx(expected[key], rel=rtol), (config, key)
        moved = expected["moved"]
        assert moved.abs().max() > 0, config  # the run moved
        scale = moved.abs().max()
        torch.testing.assert_close(
            got[config]["moved"], moved, rtol=rtol, atol=rtol * scale, msg=config
        )


def _mistakes_worker(rank: int, port: int, cases: tuple[str, ...], out: str) -> None:
    """Each misconfigured run of ``cases`` in turn on one process group: the error each
    rank raised (or "none"), written per rank. A case that left the ranks out of step
    would make the next one's collectives hang (and the spawn time out)."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    messages = {}
    for case in cases:
        messages[case] = _mistake(rank, case)
        dist.barrier()
    torch.save(messages, f"{out}.{rank}")
    os._exit(0)


def _mistake(rank: int, case: str) -> str:
    """One misconfigured run on this rank: the error it raised, the warning, or "none"."""
    net = model(False, torch.float64)
    X, Y = batch(10, torch.float64)
    X, Y = X[rank::WORLD], Y[rank::WORLD]
    message = "none"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            if case == "ddp-given-sharded":
                net = torch.nn.parallel.DistributedDataParallel(net)
                opt = T.PSDASGD(net.parameters(), sharded=True)
                train(net, opt, X, Y)
            elif case == "zero-without-sharded":
                from torch.distributed.optim import ZeroRedundancyOptimizer

                net = torch.nn.parallel.DistributedDataParallel(net)
                opt = ZeroRedundancyOptimizer(net.parameters(), optimizer_class=T.PSDASGD)
                train(net, opt, X, Y)
            else:  # "ranks-at-different-steps": a model split by hand, one rank's state ahead
                opt = T.PSDASGD(list(net.parameters())[rank::WORLD], sharded=True)
                train(net, opt, X, Y)
                if rank == 1:
                    opt.state["global"]["k"] += 5
                train(net, opt, X, Y)
        warned = [str(w.message) for w in caught if "sharded" in str(w.message)]
        message = f"RuntimeWarning: {warned[0]}" if warned else message
    except (ValueError, RuntimeError) as exc:
        message = f"{type(exc).__name__}: {exc}"
    return message


MISTAKES = {
    "ddp-given-sharded": "ValueError: Invalid sharded: True, but all 2 ranks hold",
    "ranks-at-different-steps": "RuntimeError: The ranks are at different steps",
    "zero-without-sharded": "RuntimeWarning: The ranks hold different parameters",
}


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory) -> list[dict]:
    """Every rank's message for each case of ``MISTAKES``, from one spawn of two ranks."""
    out = str(tmp_path_factory.mktemp("mistakes") / "messages")
    run_ranks(_mistakes_worker, tuple(MISTAKES), out, label="misconfigured runs")
    return [torch.load(f"{out}.{rank}") for rank in range(WORLD)]


@pytest.mark.parametrize("case, expected", MISTAKES.items())
def test_a_misconfigured_run_raises_on_every_rank_instead_of_hanging(case, expected, mistakes):
    """DDP replicas given sharded=True (their statistics would be counted once per rank)
    and ranks whose optimizers are at different steps: every rank raises, naming it;
    ZeroRedundancyOptimizer without sharded=True (each rank's d from its partition only):
    every rank warns. The processes end (a timeout fails the test)."""
    for rank in range(WORLD):
        assert mistakes[rank][case].startswith(expected), rank


def _layout_worker(rank: int, port: int, out: str) -> None:
    """The layouts ``distributed.mesh_group`` refuses, on one process: the messages."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    mesh = init_device_mesh("cpu", (1,))
    mesh_2d = init_device_mesh("cpu", (1, 1), mesh_dim_names=("dp", "tp"))
    sharded = Parameter(distribute_tensor(torch.ones(4, 2), mesh, [Shard(0)]))
    two_dims = distribute_tensor(torch.ones(4, 2), mesh_2d, [Shard(0), Shard(1)])
    replicated = distribute_tensor(torch.ones(3), mesh, [Replicate()])
    cases = {
        "mixed": [sharded, Parameter(torch.ones(3))],
        "two-dims": [Parameter(two_dims)],
        "sharded-and-replicated": [sharded, Parameter(replicated)],
        "sharded-given-sharded": [sharded],
    }
    messages = {}
    for case, params in cases.items():
        try:
            T.PSDASGD(params, sharded=case == "sharded-given-sharded")
            messages[case] = "accepted"
        except ValueError as exc:
            messages[case] = str(exc)
    torch.save(messages, out)
    os._exit(0)


def test_layouts_that_cannot_be_reduced_correctly_are_refused(tmp_path):
    """A plain tensor next to DTensors (it would be counted once per rank), a DTensor
    sharded over two mesh dimensions, sharded and replicated DTensors together, and
    sharded=True on top of a detected mesh: each refused by name at construction."""
    out = str(tmp_path / "layouts.pt")
    run_ranks(_layout_worker, out, label="layouts", world=1)
    messages = torch.load(out)
    assert messages["mixed"].startswith("Invalid params: 1 DTensors and 1 plain tensors")
    assert messages["two-dims"].startswith(
        "Invalid params: a DTensor sharded over mesh dimensions [0, 1]"
    )
    assert messages["sharded-and-replicated"].startswith(
        "Invalid params: DTensors sharded over different"
    )
    assert messages["sharded-given-sharded"].startswith(
        "Invalid sharded: True with DTensor parameters"
    )
