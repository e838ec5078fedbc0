"""The subcommands on networks and timings: ``bench``, ``train`` and ``study``, each its
arguments turned into a call of the module that does the work."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from paramscale import bench

    if args.communication:
        from paramscale import communication

        rows = communication.measure(Path("reports"))
        print(communication.format_table(rows))
        if args.csv:
            communication.write_csv(rows, Path(args.csv).with_name("communication.csv"))
        return 0
    if args.kernels:
        if importlib.util.find_spec("triton") is None:
            print("paramscale bench: --kernels needs Triton (not installed)", file=sys.stderr)
            return 2
        from paramscale import sass

        print(sass.table())
        return 0
    try:
        sizes = [int(float(v.rstrip("Mm")) * 1e6) for v in args.sizes.split(",")]
    except ValueError:
        print(
            f"paramscale bench: invalid --sizes {args.sizes!r} (expected e.g. 1M,10M)",
            file=sys.stderr,
        )
        return 2
    for flag in ("repeats", "rounds"):
        if getattr(args, flag) < 1:
            print(
                f"paramscale bench: invalid --{flag} {getattr(args, flag)} (expected >= 1)",
                file=sys.stderr,
            )
            return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("paramscale bench: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    torch.set_num_threads(torch.get_num_threads())
    print(
        f"step time on {args.device}, {args.warmup} warm-up + {args.repeats} timed steps "
        f"in {args.rounds} round-robin rounds, "
        f"float32, ~100 tensors (torch {torch.__version__}, {torch.get_num_threads()} threads)",
        file=sys.stderr,
    )
    names = args.optimizers.split(",") if args.optimizers else None
    results = bench.run(
        sizes,
        args.device,
        args.warmup,
        args.repeats,
        names,
        Path(args.csv) if args.csv else None,
        args.rounds,
    )
    print(bench.format_table(results))
    if not args.skip_reference:
        print(f"NumPy reference: {bench.numpy_throughput():,.0f} steps/s on the default suite")
        print(f"claim sweep (paramscale check, full): {bench.sweep_seconds():.1f} s")
    if args.csv:
        print(f"wrote {args.csv}")
    return 0


def _seeds(text: str) -> list[int]:
    """``--seeds``: a count (3 -> 0, 1, 2) or a comma-separated list of seeds."""
    parts = [p for p in text.split(",") if p.strip()]
    values = [int(p) for p in parts]
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise ValueError(f"invalid --seeds {text!r} (expected a count >= 1 or a list)")
        return list(range(values[0]))
    if not values or any(v < 0 for v in values):
        raise ValueError(f"invalid --seeds {text!r} (expected a count >= 1 or a list)")
    return values


def run_train(args: argparse.Namespace) -> int:
    import os

    from paramscale import train
    from paramscale.train.outputs import write_outputs

    if args.list:
        print("tasks:")
        for task in train.TASKS.values():
            print(f"  {task.name:<22} {task.what}")
        print("methods (spec: name or name[key=value,...]):")
        for family in train.FAMILIES.values():
            why = family.missing()
            print(f"  {family.name:<22} {family.what}" + (f" [skipped: {why}]" if why else ""))
        return 0
    try:
        seeds = _seeds(args.seeds)
        tasks = train.resolve_tasks(args.tasks.split(",")) if args.tasks else list(train.TASKS)
        specs = train.parse_methods(args.methods)
        train.methods.expand(specs, args.quick)  # bad names and options fail here, by name
    except ValueError as exc:
        print(f"paramscale train: {exc}", file=sys.stderr)
        return 2
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("paramscale train: --device cuda but no CUDA device", file=sys.stderr)
            return 2
    workers = args.jobs or (1 if args.device == "cuda" else os.cpu_count() or 1)
    t0 = time.perf_counter()
    print(
        f"paramscale train ({'quick' if args.quick else 'full'}): {len(tasks)} tasks, "
        f"seeds {seeds}, {workers} worker(s), device {args.device}",
        file=sys.stderr,
    )
    rows = train.benchmark(
        tasks, specs, seeds, args.quick, args.device, workers, args.steps or None,
        progress=not args.no_progress,
    )  # fmt: skip
    written = write_outputs(rows, Path(args.out))
    print(written["table"].read_text())
    for key in ("csv", "table", "png"):
        if written[key] is not None:
            print(f"wrote {written[key]}")
    if written["no_figure"]:
        print(f"no figure: {written['no_figure']}")
    print(f"done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


def run_study(args: argparse.Namespace) -> int:
    import os

    from paramscale import study

    try:
        seeds = tuple(_seeds(args.seeds))
        net_seeds = _seeds(args.net_seeds) if args.net_seeds != "0" else []
        tasks = None
        if args.tasks:
            from paramscale import train

            tasks = train.resolve_tasks(args.tasks.split(","))
    except ValueError as exc:
        print(f"paramscale study: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    args.out = args.out or f"reports/study/{args.which}"
    if args.which == "eg":
        from paramscale import study_eg

        table = study_eg.run(Path(args.out), net_seeds or [0, 1, 2], args.jobs or os.cpu_count()
                             or 1, tasks, args.steps or None, not args.no_progress)  # fmt: skip
        print(table)
        print(f"wrote {args.out}/eg.csv, table.txt, eg_study.png")
        print(f"done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return 0
    table = study.run(
        Path(args.out), seeds, net_seeds, args.jobs or os.cpu_count() or 1, tasks,
        args.steps or None, not args.no_progress, args.which,
    )  # fmt: skip
    print(table)
    figure = args.which.replace("-", "_") + "study.png"
    print(f"wrote {args.out}/convex.csv, nets.csv, table.txt, {figure}")
    print(f"done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0
