"""``paramscale``: the command line (docs/spec.md section 9).

Longer than the project's ~400 lines: one function per subcommand, each parsing its
arguments into a call of the module that does the work, and the argparse definitions;
nothing else lives here."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any


def _user_inputs(args: argparse.Namespace) -> tuple[list | None, dict[str, Any]]:
    """The problems of ``--problem`` (None: the default ones) and the rules of ``--rule``
    (by their paths), loaded; RuleInputError names what is wrong."""
    from paramscale import loading
    from paramscale.proofs_check import validate

    problems = [p for spec in args.problem for p in loading.load_problems(spec)]
    rules = {spec: loading.load_rule(spec) for spec in args.rule}
    for rule in rules.values():
        validate.check_interface(rule)
    return problems or None, rules


def _compare(args: argparse.Namespace) -> int:
    from paramscale import compare
    from paramscale.loading import RuleInputError
    from paramscale.train.methods import split_specs

    try:
        problems, user_rules = _user_inputs(args)
        methods = split_specs(args.methods) if args.methods else list(compare.METHODS)
    except (ValueError, RuleInputError) as exc:
        print(f"paramscale compare: {exc}", file=sys.stderr)
        return 2
    factories = dict(compare.METHODS)
    for rule in user_rules.values():
        added = compare.with_rule(rule)
        factories |= added
        methods += [m for m in added if m not in methods]
    unknown = [m for m in methods if m not in factories]
    if unknown:
        print(
            f"paramscale compare: unknown method(s) {unknown}; known: {list(factories)}",
            file=sys.stderr,
        )
        return 2
    t0 = time.perf_counter()
    results = compare.compare(
        problems or compare.default_problems(args.quick), methods, args.iters,
        not args.no_progress, factories,
    )  # fmt: skip
    print(
        f"min_k f(x_k) - f* after {args.iters} steps, f* certified by two solvers\n"
        "(<=a: below the certified accuracy a of f*; div@k or d: diverged at step k)"
    )
    if args.wide:
        print(compare.format_wide(results, methods))
    else:
        print(compare.format_table(results, methods))
    if args.csv:
        compare.write_csv(results, Path(args.csv))
        print(f"wrote {args.csv}")
    print(f"{len(results)} runs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from paramscale import loading
    from paramscale.proofs_check import CLAIMS, runner, search

    if args.case:
        try:
            case = search.SearchCase.from_json(args.case)
        except ValueError as exc:
            print(f"paramscale check: {exc}", file=sys.stderr)
            return 2
        res = search.evaluate(case)
        if res is None:
            print(f"claim {case.claim} does not apply to this case")
            return 2
        print(json.dumps(res.as_dict(), indent=1, default=str))
        return 0 if res.holds or CLAIMS[case.claim].kind == "conjecture" else 1
    if args.pep:
        return _check_pep(args)
    if args.search:
        if args.search not in CLAIMS:
            print(
                f"paramscale check: unknown claim {args.search!r}; known: {list(CLAIMS)}",
                file=sys.stderr,
            )
            return 2
        print(
            f"searching for a counterexample to {args.search} ({args.examples} examples)...",
            file=sys.stderr,
        )
        found = search.search(args.search, max_examples=args.examples, iters=args.iters)
        if found is None:
            print(f"no counterexample to {args.search} in {args.examples} examples")
            return 0
        print(search.describe(*found))
        return 1 if CLAIMS[args.search].kind == "theorem" else 0
    claims = list(CLAIMS) if not args.claims else args.claims.split(",")
    unknown = [c for c in claims if c not in CLAIMS]
    if unknown:
        print(
            f"paramscale check: unknown claim(s) {unknown}; known: {list(CLAIMS)}", file=sys.stderr
        )
        return 2
    t0 = time.perf_counter()
    try:
        user_problems, user_rules = _user_inputs(args)
    except loading.RuleInputError as exc:
        print(f"paramscale check: {exc}", file=sys.stderr)
        return 2
    problems = user_problems or runner.default_problems(args.quick)
    print(
        f"checking {len(claims)} claims on {len(problems)} problems x {len(runner.RULES)} rules, "
        f"{args.iters} steps per run",
        file=sys.stderr,
    )
    with contextlib.ExitStack() as stack:
        for spec, rule in user_rules.items():
            stack.enter_context(runner.extra_rule(spec, lambda rule=rule: rule))
        records = runner.sweep(problems, args.iters, claims, progress=not args.no_progress)
    rows = runner.summarize(records)
    print(runner.format_table(rows))
    failures = runner.theorem_failures(records)
    elapsed = time.perf_counter() - t0
    meta = {
        "iters": args.iters,
        "quick": args.quick,
        "claims": claims,
        "seconds": elapsed,
        "theorem_failures": len(failures),
        "checks": len(records),
    }
    runner.write_report(records, rows, Path(args.report), meta)
    print(
        f"{len(records)} checks in {elapsed:.1f} s; {len(failures)} theorem failures; "
        f"report: {args.report}"
    )
    return 1 if failures else 0


def _bench(args: argparse.Namespace) -> int:
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


def _check_pep(args: argparse.Namespace) -> int:
    from paramscale.figures.tidy import write_csv
    from paramscale.proofs_check import pep

    claims = tuple(args.claims.split(",")) if args.claims else None
    unknown = [c for c in claims or () if c not in pep.PEP_CLAIMS]
    if unknown:
        print(f"paramscale check --pep: unknown claim(s) {unknown}; with a fixed-metric form: "
              f"{list(pep.PEP_CLAIMS)}", file=sys.stderr)  # fmt: skip
        return 2
    n_max = 4 if args.quick else 8
    t0 = time.perf_counter()
    print(f"certified worst cases (PEPit, {pep.SOLVER}), N = 1..{n_max}", file=sys.stderr)
    say = None if args.no_progress else lambda m: print(m, file=sys.stderr, flush=True)
    table = pep.rows(claims, n_max, progress=say)
    print(pep.format_table(table))
    write_csv([r.as_dict() for r in table], Path(args.pep_csv))
    failed = [r for r in table if not r.holds]
    print(f"wrote {args.pep_csv}; {len(table)} SDPs, {len(failed)} failed, "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


def _plot(args: argparse.Namespace) -> int:
    from paramscale.figures import plots
    from paramscale.loading import RuleInputError

    try:
        problems, rules = _user_inputs(args)
    except RuleInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(f"writing figures to {out}/", file=sys.stderr)
    t0 = time.perf_counter()
    written = plots.make_all(
        out,
        args.iters,
        args.quick,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
        problems=problems,
        rules=rules,
        pep=args.pep,
    )
    for path in written:
        print(path)
    print(f"{len(written)} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def _validate_rule(args: argparse.Namespace) -> int:
    from paramscale import loading
    from paramscale.proofs_check import validate, validate_step
    from paramscale.theory.stepsize import StepRule

    try:
        rule = loading.load_rule(args.rule)
        problems = [p for spec in args.problem for p in loading.load_problems(spec)] or None
        print(f"validating {args.rule} ...", file=sys.stderr, flush=True)
        stepping = isinstance(rule, StepRule)  # a step-size rule, else a scaling rule
        if stepping:
            report = validate_step.validate_step_rule(
                rule, iters=args.iters, spec=args.rule, problems=problems
            )
        else:
            report = validate.validate_rule(
                rule, iters=args.iters, search_examples=args.examples, spec=args.rule,
                problems=problems,
            )  # fmt: skip
    except loading.RuleInputError as exc:
        print(f"paramscale validate-rule: {exc}", file=sys.stderr)
        return 2
    print(report.markdown())
    write = validate_step.write_step_report if stepping else validate.write_report
    written = write(report, rule, Path(args.out), problems)
    print(f"report: {written[0]} (figure: {written[1]})")
    if args.train:
        import os

        from paramscale import train
        from paramscale.train.outputs import write_outputs

        if stepping:  # the rule in Adam's space and in SGD's, beside tuned Adam and SGD
            specs = [f"PS[step={args.rule}]", f"PS[step={args.rule},scaling=identity]",
                     "adam", "sgd"]  # fmt: skip
        else:
            specs = [f"PSDASGD[scaling={args.rule}]", f"PSSPS[scaling={args.rule}]", "adam",
                     "amsgrad"]  # fmt: skip
        print(f"paramscale train --quick with {args.rule} ...", file=sys.stderr, flush=True)
        rows = train.benchmark(list(train.TASKS), specs, [0, 1, 2], True, "cpu",
                               os.cpu_count() or 1, progress=True)  # fmt: skip
        outputs = write_outputs(rows, Path(args.out) / "train")
        print(outputs["table"].read_text())
        figure = outputs["png"] or f"none: {outputs['no_figure']}"
        print(f"training table: {outputs['table']} (figure: {figure})")
    return 0 if report.passed else 1


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


def _train(args: argparse.Namespace) -> int:
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


def _study(args: argparse.Namespace) -> int:
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
    figure = args.which.replace("-", "_") + "_study.png"
    print(f"wrote {args.out}/convex.csv, nets.csv, table.txt, {figure}")
    print(f"done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


PROBLEM_HELP = (
    "a user's problem(s) instead of the default ones: a synthetic.Problem, a list, or a "
    "function returning them (e.g. via synthetic.from_data); repeatable"
)
RULE_HELP = (
    "a user's scaling rule (module:attr or file.py:attr), run as PS-SPS and PS-DA-SGD beside "
    "the others; repeatable"
)


def _add_user_inputs(parser: argparse.ArgumentParser, rules: bool = True) -> None:
    """``--problem`` (and ``--rule``): a user's problems and scaling rules by module path."""
    parser.add_argument(
        "--problem", action="append", default=[], metavar="MODULE:ATTR", help=PROBLEM_HELP
    )
    if rules:
        parser.add_argument(
            "--rule", action="append", default=[], metavar="MODULE:ATTR", help=RULE_HELP
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paramscale",
        description="Verification sandbox for learning-rate-free optimizers (PS-SPS, PS-DA-SGD).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "compare",
        help="run every reference optimizer on the default suite and print the table",
        description="Run the NumPy reference optimizers on the default synthetic suite "
        "(every family, well and badly scaled, Nesterov's function, two scikit-learn data "
        "sets) and print min_k f(x_k) - f* per method and problem.",
    )
    p.add_argument("--iters", type=int, default=500, help="steps per run (default 500)")
    p.add_argument("--methods", default="", help="comma-separated subset of methods")
    p.add_argument("--quick", action="store_true", help="synthetic problems only")
    p.add_argument("--csv", default="", help="also write the results to this CSV file")
    p.add_argument(
        "--wide", action="store_true", help="every gap: a column per method (wider than 120)"
    )
    _add_user_inputs(p)
    p.add_argument("--no-progress", action="store_true", help="no per-problem progress lines")
    p.set_defaults(func=_compare)

    c = sub.add_parser(
        "check",
        help="check the paper's convergence claims on the synthetic suite",
        description="Evaluate every applicable claim of docs/spec.md section 4 (A1-A6, B1-B6, "
        "C1, C2, "
        "L1) on the default suite and print a table (claim x family: checks that hold / "
        "worst relative margin / median tightness = bound/observed). Exit status 1 when a "
        "theorem fails; conjectures (marked *) are measured and reported.",
    )
    c.add_argument("--quick", action="store_true", help="a subset (one seed, no real data)")
    c.add_argument("--iters", type=int, default=200, help="steps per run (default 200)")
    c.add_argument("--claims", default="", help="comma-separated subset of claim ids")
    c.add_argument("--report", default="reports/check.json", help="JSON report path")
    c.add_argument("--no-progress", action="store_true", help="no progress lines")
    c.add_argument(
        "--search",
        default="",
        metavar="CLAIM",
        help="search for a counterexample to CLAIM with hypothesis instead",
    )
    c.add_argument("--examples", type=int, default=200, help="examples for --search")
    c.add_argument(
        "--pep", action="store_true",
        help="certified worst cases (PEPit) of the claims with a fixed-metric form, N = 1..8 "
        "(--quick: 1..4), against their bounds; CSV at --pep-csv",
    )  # fmt: skip
    c.add_argument("--pep-csv", default="reports/pep.csv", help="the --pep CSV path")
    _add_user_inputs(c)
    c.add_argument("--case", default="", metavar="JSON", help="re-run one case printed by --search")
    c.set_defaults(func=_check)

    b = sub.add_parser(
        "bench",
        help="optimizer step time and memory, claim-sweep time, NumPy throughput",
        description="Time one optimizer step (median and min-max over repeats after "
        "warm-up) for PSDASGD and PSSPS (foreach and per-tensor paths), Adam (foreach, "
        "fused), DAdaptAdam and Prodigy, with state memory in parameter-sized buffers; then "
        "the NumPy reference throughput and the full claim sweep's wall time.",
    )
    b.add_argument("--sizes", default="1M,10M,50M", help="model sizes (default 1M,10M,50M)")
    b.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--repeats", type=int, default=15, help="timed steps in all")
    b.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="round-robin blocks the repeats are split into (a slow spell of a shared "
        "machine then falls on every optimizer)",
    )
    b.add_argument("--optimizers", default="", help="comma-separated subset")
    b.add_argument("--csv", default="reports/bench.csv", help="CSV path ('' for none)")
    b.add_argument(
        "--skip-reference",
        action="store_true",
        help="skip the NumPy throughput and claim-sweep timings",
    )
    b.add_argument(
        "--communication",
        action="store_true",
        help="instead: the collectives and bytes of an optimizer step under DDP, FSDP2 and "
        "ZeRO (2 CPU processes on gloo), next to torch.optim.Adam (paramscale/communication.py)",
    )
    b.add_argument(
        "--kernels",
        action="store_true",
        help="instead: instructions per element of the CUDA sweeps' main loops, compiled "
        "for an H100 (sm_90) with Triton's assembler; no GPU needed (paramscale/sass.py)",
    )
    b.set_defaults(func=_bench)

    pl = sub.add_parser(
        "plot",
        help="draw the figures (PNG, PDF and the CSV each is drawn from)",
        description="Rate curves with the theorems' bounds and Nesterov's lower bound, the "
        "learning-rate-free methods' estimated steps, bound tightness, invariance and "
        "early-converging-coordinate demonstrations, and the scaling x step-size rule grid.",
    )
    pl.add_argument("--out", default="figures/out", help="output folder (default figures/out)")
    pl.add_argument("--iters", type=int, default=300, help="steps per run (default 300)")
    pl.add_argument("--quick", action="store_true", help="three problems, 60 steps")
    pl.add_argument(
        "--pep", action="store_true",
        help="also the certified worst cases (PEPit) against the claims' bounds, per N",
    )  # fmt: skip
    pl.add_argument(
        "--problem", action="append", default=[], metavar="MODULE:ATTR",
        help="a user's problem(s) instead of the default suite (see compare --problem); "
        "repeatable",
    )  # fmt: skip
    pl.add_argument(
        "--rule", action="append", default=[], metavar="MODULE:ATTR",
        help="a user's scaling rule, a column of the rule grid; repeatable",
    )  # fmt: skip
    pl.set_defaults(func=_plot)

    v = sub.add_parser(
        "validate-rule",
        help="put a new scaling rule through every check and claim",
        description="Load a scaling rule from 'module:attr' or 'file.py:attr' (a class is "
        "instantiated with no arguments) and check: alpha positive and finite; monotone if "
        "declared; bounded; uniform-scale and permutation invariances of PS-SPS and PS-DA-SGD "
        "on it; every claim of docs/spec.md section 4 on the quick suite (with a counterexample "
        "search when a theorem fails); NumPy/torch agreement. Writes a Markdown report and a "
        "figure. Exit status: 0 passes, 1 a check failed, 2 bad input.",
    )
    v.add_argument("rule", help="module:attr or path/to/file.py:attr")
    v.add_argument("--out", default="reports/validate-rule", help="report folder")
    v.add_argument("--iters", type=int, default=150, help="steps per run (default 150)")
    v.add_argument("--examples", type=int, default=100, help="counterexample-search examples")
    _add_user_inputs(v, rules=False)
    v.add_argument(
        "--train",
        action="store_true",
        help="also run the rule (as PSDASGD and PSSPS) through paramscale train --quick, next "
        "to Adam and AMSGrad (3 seeds; a few minutes)",
    )
    v.set_defaults(func=_validate_rule)

    t = sub.add_parser(
        "train",
        help="the deep-learning benchmark: small networks on bundled data",
        description="Train small networks on scikit-learn's bundled data and generated "
        "tasks (nothing downloaded) with tuned Adam and SGD grids, this project's PSSPS and "
        "PSDASGD, and the official learning-rate-free packages; same steps and batches for "
        "every method. Writes a tidy CSV (one row per task x method x seed x logged step), "
        "then the table and the figure made from it.",
    )
    t.add_argument("--list", action="store_true", help="list the tasks and methods, and exit")
    t.add_argument("--quick", action="store_true", help="fewer steps (the tasks' quick counts)")
    t.add_argument("--tasks", default="", help="comma-separated tasks (default: all)")
    t.add_argument(
        "--methods",
        default="",
        help="comma-separated method specs, e.g. 'adam,PSDASGD[transfer=max]' (default: all)",
    )
    t.add_argument("--seeds", default="3", help="a count (default 3: seeds 0-2) or a list")
    t.add_argument("--steps", type=int, default=0, help="override every task's step count")
    t.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    t.add_argument(
        "--jobs", type=int, default=0, help="worker processes (default: the CPU count; cuda: 1)"
    )
    t.add_argument("--out", default="reports/train", help="output folder (default reports/train)")
    t.add_argument("--no-progress", action="store_true", help="no progress output")
    t.set_defaults(func=_train)

    st = sub.add_parser(
        "study",
        help="the studies the defaults are chosen from (PS-DA-SGD, PS-SPS, EG)",
        description="Every PS-DA-SGD variant (metric transfer, normaliser, ablations) on the "
        "convex suite (NumPy, 400 steps) and on the paramscale train --quick tasks: "
        "divergence, final gap against D-Adapt SGD, test metric against tuned Adam, and the "
        "estimated step against the best constant step of the same update. CSVs, a table "
        "and a figure.",
    )
    st.add_argument("which", choices=["ps-dadapt", "ps-sps", "eg"], help="the study to run (eg: "
                    "the EG step-size adaptation's exponents from 10x below and above the best "
                    "Adam rate; --net-seeds are its seeds, --seeds is unused)")  # fmt: skip
    st.add_argument("--seeds", default="5", help="convex suite seeds: a count or a list")
    st.add_argument("--net-seeds", default="3", help="network seeds: a count, a list, or 0")
    st.add_argument("--tasks", default="", help="comma-separated train tasks (default: all)")
    st.add_argument("--steps", type=int, default=0, help="override the tasks' step counts")
    st.add_argument("--jobs", type=int, default=0, help="worker processes (default: CPUs)")
    st.add_argument("--out", default="", help="output folder (default reports/study/WHICH)")
    st.add_argument("--no-progress", action="store_true", help="no progress output")
    st.set_defaults(func=_study)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "iters", 1) < 1:
        print(f"paramscale: invalid --iters {args.iters} (expected >= 1)", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
