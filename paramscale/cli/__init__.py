"""``paramscale``: the command line (docs/spec.md section 9): the argparse definitions and
``main``; the subcommands are ``cli.convex`` (compare, check, plot, validate-rule) and
``cli.networks`` (bench, train, study)."""

from __future__ import annotations

import argparse
import sys

from paramscale.cli.convex import run_check, run_compare, run_plot, run_validate_rule
from paramscale.cli.networks import run_bench, run_study, run_train

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
    p.set_defaults(func=run_compare)

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
    c.set_defaults(func=run_check)

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
    b.set_defaults(func=run_bench)

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
    pl.set_defaults(func=run_plot)

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
    v.set_defaults(func=run_validate_rule)

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
    t.set_defaults(func=run_train)

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
    st.set_defaults(func=run_study)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "iters", 1) < 1:
        print(f"paramscale: invalid --iters {args.iters} (expected >= 1)", file=sys.stderr)
        return 2
    return args.func(args)
