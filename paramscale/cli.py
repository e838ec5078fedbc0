"""``paramscale``: the command line (SPEC section 9)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _compare(args: argparse.Namespace) -> int:
    from paramscale import compare as C

    methods = list(C.METHODS) if not args.methods else args.methods.split(",")
    unknown = [m for m in methods if m not in C.METHODS]
    if unknown:
        print(
            f"paramscale compare: unknown method(s) {unknown}; known: {list(C.METHODS)}",
            file=sys.stderr,
        )
        return 2
    t0 = time.perf_counter()
    results = C.compare(C.default_problems(args.quick), methods, args.iters, not args.no_progress)
    print(
        f"min_k f(x_k) - f* after {args.iters} steps (f* certified by two solvers; "
        "<=a: below the certified accuracy a of f*; div@k: diverged at step k)"
    )
    print(C.format_table(results, methods))
    if args.csv:
        C.write_csv(results, Path(args.csv))
        print(f"wrote {args.csv}")
    print(f"{len(results)} runs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


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
    p.add_argument("--no-progress", action="store_true", help="no per-problem progress lines")
    p.set_defaults(func=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "iters", 1) < 1:
        print(f"paramscale: invalid --iters {args.iters} (expected >= 1)", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
