"""The subcommands of the convex sandbox: ``compare``, ``check`` (``--pep`` included),
``plot`` and ``validate-rule``, each its arguments turned into a call of the module that
does the work; ``user_inputs`` loads a user's ``--problem`` and ``--rule``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any


def user_inputs(args: argparse.Namespace) -> tuple[list | None, dict[str, Any]]:
    """The problems of ``--problem`` (None: the default ones) and the rules of ``--rule``
    (by their paths), loaded; RuleInputError names what is wrong."""
    from paramscale import loading
    from paramscale.proofs_check import validate

    problems = [p for spec in args.problem for p in loading.load_problems(spec)]
    rules = {spec: loading.load_rule(spec) for spec in args.rule}
    for rule in rules.values():
        validate.check_interface(rule)
    return problems or None, rules


def run_compare(args: argparse.Namespace) -> int:
    from paramscale import compare
    from paramscale.loading import RuleInputError
    from paramscale.train.methods import split_specs

    try:
        problems, user_rules = user_inputs(args)
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


def run_check(args: argparse.Namespace) -> int:
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
        return run_check_pep(args)
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
        user_problems, user_rules = user_inputs(args)
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


def run_check_pep(args: argparse.Namespace) -> int:
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


def run_plot(args: argparse.Namespace) -> int:
    from paramscale.figures import plots
    from paramscale.loading import RuleInputError

    try:
        problems, rules = user_inputs(args)
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


def run_validate_rule(args: argparse.Namespace) -> int:
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
