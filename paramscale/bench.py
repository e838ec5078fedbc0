"""``paramscale bench``: optimizer step time and state memory against torch.optim.Adam,
D-Adapt Adam and Prodigy, the claim sweep's wall time, and the NumPy reference throughput.

Benchmarks, not tests: warm-up steps, then ``repeats`` timed steps; the median and the
spread (min-max) are reported. All timings in one run, on one machine, side by side.
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

N_TENSORS = 100


def _shapes(n_params: int) -> list[tuple[int, ...]]:
    """~``n_params`` parameters in 100 tensors, shaped like a network: 50 square weight
    matrices and 50 bias vectors."""
    width = max(1, int(math.sqrt(n_params / (N_TENSORS // 2))))
    return [(width, width), (width,)] * (N_TENSORS // 2)


def _n_params(n_params: int) -> int:
    return sum(math.prod(s) for s in _shapes(n_params))


def model_params(n_params: int, device: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Parameters of ``_shapes(n_params)`` and a fixed gradient for each."""
    gen = torch.Generator().manual_seed(seed)
    shapes = _shapes(n_params)
    params = [
        torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype).to(device)) for s in shapes
    ]
    grads = [torch.randn(s, generator=gen, dtype=dtype).to(device) * 1e-2 for s in shapes]
    return params, grads


def _optimizers(device: str) -> dict[str, Callable]:
    import dadaptation
    import prodigyopt

    from paramscale import torch_impl

    out: dict[str, Callable] = {
        "Adam(foreach)": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "Adam(fused)": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
        "DAdaptAdam": lambda ps: dadaptation.DAdaptAdam(ps),
        "Prodigy": lambda ps: prodigyopt.Prodigy(ps),
        "PSDASGD(foreach)": lambda ps: torch_impl.PSDASGD(ps, foreach=True),
        "PSDASGD(per-tensor)": lambda ps: torch_impl.PSDASGD(ps, foreach=False),
        "PSDASGD(fused)": lambda ps: torch_impl.PSDASGD(ps, fused=True),
        "PSSPS(foreach)": lambda ps: torch_impl.PSSPS(ps, f_star=0.0, foreach=True),
        "PSSPS(fused)": lambda ps: torch_impl.PSSPS(ps, f_star=0.0, fused=True),
        "PSSPS(per-tensor)": lambda ps: torch_impl.PSSPS(ps, f_star=0.0, foreach=False),
        "PSDoG(foreach)": lambda ps: torch_impl.PSDoG(ps, foreach=True),
        "PSDoWG(fused)": lambda ps: torch_impl.PSDoWG(ps, fused=True),
    }
    return out


@dataclass(frozen=True)
class StepTiming:
    optimizer: str
    n_params: int
    device: str
    median_ms: float
    min_ms: float
    max_ms: float
    state_buffers: float  # optimizer state in parameter-sized buffers


def state_buffers(opt: torch.optim.Optimizer, params) -> float:
    total = sum(p.numel() for p in params)
    seen, count = set(), 0
    for st in opt.state.values():
        if not isinstance(st, dict):
            continue
        for v in st.values():
            if isinstance(v, torch.Tensor) and v.numel() > 1 and id(v) not in seen:
                seen.add(id(v))
                count += v.numel()
    return count / total


def time_steps(
    name: str, make: Callable, n_params: int, device: str, warmup: int, repeats: int
) -> tuple[list[float], float] | None:
    """Step times (ms) of ``repeats`` steps after ``warmup`` steps, on a fresh model, and the
    optimizer state in parameter-sized buffers; None where the optimizer is unavailable."""
    params, grads = model_params(n_params, device)
    try:
        opt = make(params)
    except (RuntimeError, ValueError) as exc:  # e.g. fused Adam on a device without it
        print(f"  {name}: skipped ({exc})", file=sys.stderr)
        return None
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for i in range(warmup + repeats):
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        sync()
        t0 = time.perf_counter()
        opt.step(loss=1.0) if "PSSPS" in name else opt.step()
        sync()
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - t0))
    return times, state_buffers(opt, params)


def numpy_throughput(iters: int = 200) -> float:
    """Steps per second of the NumPy reference on the default suite (every method of the
    main job)."""
    from paramscale import compare

    problems = compare.default_problems()
    t0 = time.perf_counter()
    compare.compare(problems, list(compare.METHODS), iters, progress=False)
    return len(problems) * len(compare.METHODS) * iters / (time.perf_counter() - t0)


def sweep_seconds() -> float:
    from paramscale.proofs_check import runner

    problems = runner.default_problems()
    for p in problems:  # exact solutions are cached; time the checks, not the first solve
        p.solve()
    t0 = time.perf_counter()
    runner.sweep(problems, 200, progress=False)
    return time.perf_counter() - t0


def run(
    sizes: list[int],
    device: str,
    warmup: int,
    repeats: int,
    names: list[str] | None,
    csv_path: Path | None,
    rounds: int = 3,
) -> list[StepTiming]:
    opts = {k: v for k, v in _optimizers(device).items() if not names or k in names}
    results = []
    for n in sizes:
        # round-robin: each optimizer is timed in ``rounds`` separate blocks, so that a slow
        # spell of a shared machine falls on all of them rather than on one
        samples: dict[str, tuple[list[float], float]] = {}
        for r in range(rounds):
            for name, make in opts.items():
                if r > 0 and name not in samples:
                    continue  # unavailable here
                print(f"  {n / 1e6:g}M {name} on {device}, round {r + 1}", file=sys.stderr)
                got = time_steps(name, make, n, device, warmup, max(1, repeats // rounds))
                if got is not None:
                    samples.setdefault(name, ([], got[1]))[0].extend(got[0])
                if device == "cuda":
                    torch.cuda.empty_cache()
        for name, (times, buffers) in samples.items():
            results.append(
                StepTiming(
                    name, _n_params(n), device, statistics.median(times), min(times),
                    max(times), buffers,
                )
            )  # fmt: skip
    if csv_path:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with csv_path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                [
                    "optimizer",
                    "n_params",
                    "device",
                    "median_ms",
                    "min_ms",
                    "max_ms",
                    "state_buffers",
                    "ratio_to_adam_foreach",
                    "ratio_to_adam_fused",
                ]
            )
            for r in results:
                w.writerow(
                    [
                        r.optimizer,
                        r.n_params,
                        r.device,
                        r.median_ms,
                        r.min_ms,
                        r.max_ms,
                        r.state_buffers,
                        *_ratios(r, results),
                    ]
                )
    return results


def _ratios(r: StepTiming, results: list[StepTiming]) -> tuple[float, float]:
    ref = {x.optimizer: x.median_ms for x in results if x.n_params == r.n_params}
    return (
        r.median_ms / ref["Adam(foreach)"] if "Adam(foreach)" in ref else math.nan,
        r.median_ms / ref["Adam(fused)"] if "Adam(fused)" in ref else math.nan,
    )


def format_table(results: list[StepTiming]) -> str:
    head = (
        f"{'optimizer':22} {'params':>7} {'device':>6} {'median ms':>10} {'min-max ms':>17} "
        f"{'x Adam(foreach)':>16} {'x Adam(fused)':>14} {'state bufs':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        a, b = _ratios(r, results)
        lines.append(
            f"{r.optimizer:22} {r.n_params / 1e6:>6.1f}M {r.device:>6} {r.median_ms:>10.2f} "
            f"{f'{r.min_ms:.2f}-{r.max_ms:.2f}':>17} {a:>16.2f} {b:>14.2f} "
            f"{r.state_buffers:>10.2f}"
        )
    return "\n".join(lines)
