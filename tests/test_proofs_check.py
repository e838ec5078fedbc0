"""proofs_check: every theorem holds on the suite; every check fails on a planted error,
at the right step; conjectures are measured without failing the run; search and CLI."""

import json
import math
from dataclasses import dataclass, replace

import numpy as np
import pytest

from paramscale import synthetic, theory
from paramscale.cli import main
from paramscale.proofs_check import CLAIMS, check
from paramscale.proofs_check import runner as R
from paramscale.proofs_check import search as SE
from paramscale.theory import optimizers as O
from paramscale.theory import scaling as S
from paramscale.theory.stepsize import dadapt, polyak


@pytest.fixture(scope="module")
def quick_records():
    return R.sweep(R.default_problems(quick=True), 150, progress=False)


def test_every_theorem_holds_on_the_quick_suite(quick_records):
    failures = R.theorem_failures(quick_records)
    assert not failures, [(f.problem, f.method, f.rule, f.result) for f in failures[:3]]


def test_every_claim_is_exercised(quick_records):
    seen = {r.result.claim for r in quick_records}
    assert seen == set(CLAIMS)


def test_conjectures_are_measured_not_failed(quick_records):
    a6 = [r for r in quick_records if r.result.claim == "A6"]
    assert a6 and all("log_pi_final" in r.result.measured for r in a6)
    assert any(not r.result.holds for r in a6)  # e.g. PS-SPS + Adam stalls on l1_ball
    assert all(r.kind == "conjecture" for r in a6)
    assert not R.theorem_failures(a6)
    b3 = [r for r in quick_records if r.result.claim == "B3"]
    assert all(r.result.measured["max_d_over_D"] > 0 for r in b3)


# -- planted errors ----------------------------------------------------------------------

P = synthetic.lad(30, 5, 1.0, seed=2)
SOL = P.solve()


@dataclass(frozen=True)
class ScaledPolyak(polyak):
    """Planted: PS-SPS with its step multiplied by ``factor``."""

    factor: float = 3.0

    def step(self, scalars, sums):
        lam, scalars = super().step(scalars, sums)
        return self.factor * lam, scalars


def _pssps(rule, factor=1.0, iters=60, problem=P, sol=SOL):
    opt = O.ps_sps(sol.f, c=1.0, scaling=rule, f_star_tol=1e-9)
    if factor != 1.0:
        opt = replace(opt, step_rule=ScaledPolyak(sol.f, 1.0, math.inf, 1e-9, factor))
    return theory.run(opt, problem, iters=iters, stop_on_nonfinite=True)


@pytest.mark.parametrize("rule", [S.identity(), S.adam(), S.amsgrad()], ids=lambda r: r.name)
def test_a2_holds_then_fails_for_a_tripled_step(rule):
    assert check("A2", _pssps(rule), P, SOL).holds
    bad = check("A2", _pssps(rule, factor=3.0), P, SOL)
    assert not bad.holds and bad.first_violation == 0  # the first step already overshoots


def test_wrong_sign_is_caught_by_a2_and_b2():
    """Planted: a sign bug in the gradient (the method ascends; its step sizes stay >= 0)."""
    flipped = replace(P)
    object.__setattr__(flipped, "grad", lambda x, idx=None: -P.grad(x, idx))
    traj = theory.run(O.ps_sps(SOL.f, c=1.0, scaling=S.identity()), flipped, iters=30)
    for cid in ("A2", "B2"):
        res = check(cid, traj, P, SOL)
        assert not res.holds, cid
    assert check("A2", traj, P, SOL).first_violation == 0


def test_wrong_f_star_is_caught():
    traj = _pssps(S.identity())
    DG = P.distance(P.x0) * np.max(np.linalg.norm(traj.grad, axis=1))
    wrong = replace(SOL, f=SOL.f - 2 * DG)  # an f* far below the true optimum
    assert check("C1", traj, P, SOL).holds
    res = check("C1", traj, P, wrong)
    assert not res.holds and res.first_violation == 0


@dataclass(frozen=True)
class claimed_monotone(S.adam):
    """Planted: a non-monotone rule (Adam) that declares itself monotone."""

    monotone: bool = True


def test_a4_and_b1_catch_a_non_monotone_rule_claimed_monotone():
    traj = _pssps(claimed_monotone(beta2=0.9), iters=100)
    res = check("A4", traj, P, SOL)
    rhos = np.max(traj.alpha[1:] / traj.alpha[:-1], axis=1)
    assert not res.holds
    assert (
        res.first_violation
        == int(
            np.argmax(
                np.cumprod(rhos) > np.prod(traj.alpha[1:] / traj.alpha[0], axis=1) * (1 + 1e-9)
            )
        )
        + 1
    )
    smooth = synthetic.logistic(40, 5, 0.0, seed=0)  # gradients shrink: alpha, d decrease
    dtraj = theory.run(O.ps_dadapt_sgd(scaling=claimed_monotone()), smooth, iters=100)
    b1 = check("B1", dtraj, smooth, smooth.solve())
    assert not b1.holds
    drops = -np.diff(dtraj.info["d"]) > 1e-9  # the claim's tolerance: 1e-9 (1 + |0|)
    assert b1.first_violation == int(np.argmax(drops)) + 1


def test_a1_catches_the_torch_form_amsgrad():
    """Planted: torch's AMSGrad (max before bias correction) recorded as the monotone rule;
    its alpha falls right after a gradient spike."""
    traj = _pssps(S.amsgrad(), iters=5)
    rule = S.amsgrad(beta2=0.999, form="torch")
    state, alphas = rule.init(np.zeros(2)), []
    grads = np.array([[3.0, 3.0], [0.0, 0.0], [0.0, 0.0]])
    for g in grads:
        a, state = rule.update(state, g, np.zeros(2))
        alphas.append(a)
    fake = replace(traj, alpha=np.array(alphas), grad=grads)
    res = CLAIMS["A1"].evaluate(fake, P, SOL)
    assert not res.holds and res.first_violation == 1
    mono = S.amsgrad(beta2=0.999)
    state, alphas = mono.init(np.zeros(2)), []
    for g in grads:
        a, state = mono.update(state, g, np.zeros(2))
        alphas.append(a)
    assert CLAIMS["A1"].evaluate(replace(fake, alpha=np.array(alphas)), P, SOL).holds


def test_a3_catches_a_wrong_metric_change_factor(monkeypatch):
    """A3 holds for any positive alpha once rho_k is the *max* ratio: the only way to break
    it is a wrong proof step. Planted: rho_k as the mean ratio (a plausible slip in Eq. 14)."""
    import paramscale.proofs_check.quantities as C

    traj = _pssps(S.adam(beta2=0.9), iters=40)
    assert check("A3", traj, P, SOL).holds
    monkeypatch.setattr(C, "rho", lambda t: np.mean(t.alpha[1:] / t.alpha[:-1], axis=1))
    res = check("A3", traj, P, SOL)
    assert not res.holds and res.first_violation is not None


@dataclass(frozen=True)
class inflated_dadapt(dadapt):
    """Planted: D-Adaptation whose estimate is 20x too large."""

    def settle(self, scalars, sums):
        before = scalars.d
        scalars, info = super().settle(scalars, sums)
        if np.isfinite(info["dhat"]):
            info = {**info, "dhat": 20 * info["dhat"]}
            scalars = scalars._replace(d=max(before, info["dhat"]))
        return scalars, info


def test_b4_catches_an_inflated_estimate():
    good = theory.run(O.dadapt_sgd(), P, iters=150)
    assert check("B4", good, P, SOL).holds
    bad = theory.run(replace(O.dadapt_sgd(), step_rule=inflated_dadapt()), P, iters=150)
    res = check("B4", bad, P, SOL)
    assert not res.holds
    d_true = P.distance(P.x0)
    assert res.first_violation == int(np.argmax(bad.info["dhat"] / 2 > d_true))


@pytest.mark.parametrize("transfer", ["min_active", "anchor"])
def test_b6_catches_a_transfer_by_the_maximum_ratio(transfer):
    """B6 holds for the default and the anchored transfer, and fails where d is carried by
    max_i alpha_k,i / alpha_{k-1},i (the planted error: a ratio no distance can exceed)."""
    make = lambda t: O.ps_dadapt_sgd(momentum=0.0, scaling=S.adam(beta2=0.9), transfer=t)  # noqa: E731
    assert check("B6", theory.run(make(transfer), P, iters=150), P, SOL).holds
    bad = theory.run(make("max"), P, iters=150)
    assert not CLAIMS["B6"].evaluate(bad, P, SOL).holds  # max does not claim the bound


def test_c2_catches_a_step_built_with_too_small_g():
    K = 100
    D = P.distance(P.x0)
    ok = theory.run(O.sgd(lr=D / (P.lipschitz * math.sqrt(K))), P, iters=K)
    assert check("C2", ok, P, SOL).holds
    bad = theory.run(O.sgd(lr=D / (0.01 * P.lipschitz * math.sqrt(K))), P, iters=K)
    assert not check("C2", bad, P, SOL).holds


def test_l1_catches_a_method_that_knows_the_answer():
    nw = synthetic.nesterov_worst(n=10)
    sol = nw.solve()
    traj = theory.run(O.sps(sol.f, c=1.0), nw, iters=9)
    assert check("L1", traj, nw, sol).holds
    cheat = replace(traj, f=traj.f.copy())
    cheat.f[3] = sol.f  # planted: an iterate at the optimum after 3 steps
    res = check("L1", cheat, nw, sol)
    assert not res.holds and res.first_violation == 3


def test_check_rejects_unknown_or_inapplicable_claims():
    traj = _pssps(S.adam(), iters=5)
    with pytest.raises(ValueError, match="Invalid claim_id: 'Z9'"):
        check("Z9", traj, P, SOL)
    with pytest.raises(ValueError, match="Claim B1 does not apply"):
        check("B1", traj, P, SOL)


# -- search and command line ---------------------------------------------------------------


def _tripled(case, sol):
    opt = R.build_optimizer(case, sol)
    if isinstance(opt.step_rule, polyak):
        s = opt.step_rule
        return replace(opt, step_rule=ScaledPolyak(s.f_star, s.c, s.eta_max, s.f_star_tol, 3.0))
    return opt


def test_search_finds_and_shrinks_a_planted_counterexample():
    assert SE.search("A2", max_examples=40) is None
    case, res = SE.search("A2", max_examples=100, make_optimizer=_tripled)
    assert not res.holds and case.method == "ps_sps"
    assert len(case.x0) == 2  # shrunk to the smallest dimension the strategy draws
    again = SE.evaluate(SE.SearchCase.from_json(case.to_json()), _tripled)
    assert again == res  # the printed case reproduces the failure
    assert "reproduce: paramscale check --case" in SE.describe(case, res)


def test_cli_check_quick_writes_report_and_exits_zero(tmp_path, capsys):
    report = tmp_path / "r.json"
    assert (
        main(["check", "--quick", "--no-progress", "--iters", "60", "--report", str(report)]) == 0
    )
    data = json.loads(report.read_text())
    assert data["meta"]["theorem_failures"] == 0
    assert {row["claim"] for row in data["summary"]} == set(CLAIMS)
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["claim", "kind", "family"]
    assert any(line.split()[:2] == ["A2", "theorem"] for line in out.splitlines())


def test_cli_exits_one_when_a_theorem_fails(tmp_path, monkeypatch):
    class Broken(type(CLAIMS["A3"])):
        def evaluate(self, t, p, s):
            return replace(super().evaluate(t, p, s), holds=False)

    monkeypatch.setitem(CLAIMS, "A3", Broken())
    args = [
        "check",
        "--quick",
        "--no-progress",
        "--iters",
        "30",
        "--claims",
        "A3",
        "--report",
        str(tmp_path / "r.json"),
    ]
    assert main(args) == 1


def test_cli_bad_input_exits_two():
    assert main(["check", "--claims", "Z9"]) == 2
    assert main(["check", "--search", "Z9"]) == 2
    assert main(["check", "--case", "{not json"]) == 2
