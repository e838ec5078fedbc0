"""Evaluate every applicable claim on the synthetic suite (``paramscale check``).

Cases: every problem of the suite x every scaling rule (identity, Adam, AMSGrad, AdaGrad,
RMSProp) x the methods the claims are about, all deterministic (full gradient), ``c = 1``,
``eta_max = inf``, momentum 0 (docs/spec.md section 4):

- ``ps_sps``: PS-SPS (A1-A6, B2, C1 with identity, L1 on Nesterov's function);
- ``ps_dadapt_sgd``: PS-DA-SGD, constant schedule (B1-B4, and A1/A3/A4/B2);
- ``ps_dadapt_sgd_decay``: PS-DA-SGD with ``gamma_k = 1/sqrt(k+1)`` (B5), monotone rules;
- ``sgd_c2``: the subgradient method with ``eta = D/(G sqrt(K))`` (C2).

A run that diverges is cut at the first non-finite step; its claims are checked on the
finite prefix and the divergence is reported.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paramscale import synthetic, theory
from paramscale.proofs_check.claims import CLAIMS, Result
from paramscale.theory import optimizers
from paramscale.theory import scaling as rules

RULES: dict[str, Callable[[], Any]] = {
    "identity": rules.identity,
    "adam": rules.adam,
    "amsgrad": rules.amsgrad,
    "adagrad": rules.adagrad,
    "rmsprop": rules.rmsprop,
}


@contextmanager
def extra_rule(name: str, make: Callable[[], Any]):
    """Make ``name`` a rule of the sweep (and of the search) for the duration (validate-rule)."""
    saved = dict(RULES)
    RULES[name] = make
    try:
        yield
    finally:
        RULES.clear()
        RULES.update(saved)


@dataclass(frozen=True)
class Case:
    problem: Any
    method: str
    rule: str
    iters: int


@dataclass(frozen=True)
class Record:
    problem: str
    family: str
    method: str
    rule: str
    result: Result
    kind: str
    diverged_at: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "family": self.family,
            "method": self.method,
            "rule": self.rule,
            "kind": self.kind,
            "diverged_at": self.diverged_at,
            **self.result.as_dict(),
        }


def f_star_tol(sol: Any) -> float:
    return 1e-9 * max(1.0, abs(sol.f)) + 10 * sol.gap


def rule_named(name: str) -> Any:
    """A rule of the sweep by name, or a user's rule by its path (``module:attr`` or
    ``file.py:attr``, as ``paramscale validate-rule`` takes it)."""
    if name in RULES:
        return RULES[name]()
    if ":" in name:
        from paramscale.loading import load_rule

        return load_rule(name)
    raise ValueError(f"Invalid rule: {name!r} (expected one of {tuple(RULES)} or module:attr)")


def build_optimizer(case: Case, solution: Any) -> Any:
    rule = rule_named(case.rule)
    if case.method == "ps_sps":
        return optimizers.ps_sps(solution.f, c=1.0, scaling=rule, f_star_tol=f_star_tol(solution))
    if case.method == "ps_dadapt_sgd":
        return optimizers.ps_dadapt_sgd(momentum=0.0, scaling=rule)
    if case.method == "ps_dadapt_sgd_decay":
        return optimizers.ps_dadapt_sgd(
            momentum=0.0, scaling=rule, schedule=lambda k: 1 / math.sqrt(k + 1)
        )
    if case.method == "sgd_c2":
        D = case.problem.distance(case.problem.x0)
        return optimizers.sgd(lr=D / (case.problem.lipschitz * math.sqrt(case.iters)))
    raise ValueError(f"Invalid method: {case.method!r}")


def cases(problems: Iterable[Any], iters: int, rules: Iterable[str] | None = None) -> list[Case]:
    out = []
    for p in problems:
        for rule in RULES if rules is None else rules:
            out.append(Case(p, "ps_sps", rule, iters))
            out.append(Case(p, "ps_dadapt_sgd", rule, iters))
            if RULES[rule]().monotone:
                out.append(Case(p, "ps_dadapt_sgd_decay", rule, iters))
        out.append(Case(p, "sgd_c2", "identity", iters))
    return out


def run_case(case: Case, claims: Iterable[str] = tuple(CLAIMS)) -> list[Record]:
    p = case.problem
    sol = p.solve()
    with np.errstate(over="ignore", invalid="ignore"):
        traj = theory.run(build_optimizer(case, sol), p, iters=case.iters, stop_on_nonfinite=True)
    stopped = traj.info.get("stopped_at")
    diverged = int(stopped[0]) if stopped is not None else None
    out = []
    if traj.iters < 2:
        return out
    for cid in claims:
        claim = CLAIMS[cid]
        if claim.applies(traj, p):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                res = claim.evaluate(traj, p, sol)
            out.append(Record(p.name, p.family, case.method, case.rule, res, claim.kind, diverged))
    return out


def default_problems(quick: bool = False, seeds: tuple[int, ...] = (0, 1)) -> list[Any]:
    if quick:
        return synthetic.suite(seeds=(0,), badly_scaled=2.0, real_data=False)[::2] + [
            synthetic.nesterov_worst()
        ]
    return synthetic.suite(seeds=seeds)


def sweep(
    problems: list[Any],
    iters: int,
    claims: Iterable[str] = tuple(CLAIMS),
    progress: bool = True,
) -> list[Record]:
    claims = tuple(claims)
    records: list[Record] = []
    all_cases = cases(problems, iters)
    t0 = time.perf_counter()
    for i, case in enumerate(all_cases):
        records += run_case(case, claims)
        if progress and (i + 1) % 25 == 0 or progress and i + 1 == len(all_cases):
            print(
                f"  {i + 1}/{len(all_cases)} runs, {len(records)} checks, "
                f"{time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    return records


# -- reporting -----------------------------------------------------------------------------


def summarize(records: list[Record]) -> list[dict[str, Any]]:
    """One row per (claim, family): count, failures, worst margin, median tightness."""
    rows: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        rows.setdefault((r.result.claim, r.family), []).append(r)
    out = []
    for (cid, family), rs in sorted(rows.items()):
        margins = [r.result.margin for r in rs if np.isfinite(r.result.margin)]
        tight = [r.result.tightness for r in rs if np.isfinite(r.result.tightness)]
        fails = [r for r in rs if not r.result.holds]
        out.append(
            {
                "claim": cid,
                "kind": CLAIMS[cid].kind,
                "family": family,
                "checks": len(rs),
                "failures": len(fails),
                "worst_margin": max(margins) if margins else math.nan,
                "median_tightness": float(np.median(tight)) if tight else math.nan,
                "first_failure": None
                if not fails
                else (
                    f"{fails[0].problem} {fails[0].method}[{fails[0].rule}] "
                    f"step {fails[0].result.first_violation}"
                ),
                "measured": _measured_summary(rs) if CLAIMS[cid].kind == "conjecture" else {},
            }
        )
    return out


def _measured_summary(rs: list[Record]) -> dict[str, float]:
    keys = {k for r in rs for k in r.result.measured}
    return {
        k: float(np.nanmedian([r.result.measured.get(k, np.nan) for r in rs])) for k in sorted(keys)
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'claim':6} {'kind':10} {'family':15} {'holds':>9} {'worst margin':>13} {'tightness':>10}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        holds = f"{row['checks'] - row['failures']}/{row['checks']}"
        if row["kind"] == "conjecture":
            holds += "*"
        margin = "" if not np.isfinite(row["worst_margin"]) else f"{row['worst_margin']:.1e}"
        tight = "" if not np.isfinite(row["median_tightness"]) else f"{row['median_tightness']:.3g}"
        line = f"{row['claim']:6} {row['kind']:10} {row['family']:15} {holds:>9} "
        line += f"{margin:>13} {tight:>10}"
        if row["kind"] == "conjecture" and row["measured"]:
            line += "  " + ", ".join(f"{k}={v:.3g}" for k, v in row["measured"].items())
        elif row["failures"]:
            line += f"  FAIL: {row['first_failure']}"
        lines.append(line)
    return "\n".join(lines)


def theorem_failures(records: list[Record]) -> list[Record]:
    return [r for r in records if r.kind == "theorem" and not r.result.holds]


def write_report(
    records: list[Record], rows: list[dict[str, Any]], path: Path, meta: dict[str, Any]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "summary": rows, "records": [r.as_dict() for r in records]}
    path.write_text(json.dumps(report, indent=1, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.bool_):
        return bool(value)
    return str(value)
