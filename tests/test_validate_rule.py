"""validate-rule flags planted bad rules with a clear message, passes AMSGrad, and answers
bad input with exit status 2."""

import pytest

from paramscale.cli import main
from paramscale.proofs_check import validate as V
from paramscale.theory import scaling as S
from tests import planted_rules as P


def _failed(report):
    return {c.name: c.detail for c in report.checks if c.ok is False}


def test_amsgrad_passes():
    report = V.validate_rule(S.amsgrad(), iters=60, search_examples=10)
    assert report.passed, _failed(report)
    assert {"A1", "A4", "B1"} <= set(report.theorems)  # the monotone theorems now apply


def test_negative_alpha_is_flagged():
    report = V.validate_rule(P.negative(), iters=60)
    failed = _failed(report)
    assert not report.passed
    assert "alpha = -" in failed["alpha positive and finite"]


def test_non_monotone_rule_claimed_monotone_is_flagged():
    report = V.validate_rule(P.adam_claimed_monotone(), iters=60, search_examples=20)
    failed = _failed(report)
    assert "alpha decreases at step" in failed["monotone (as declared)"]
    assert any(c in report.failed_claims for c in ("A4", "B1"))
    assert "reproduce: paramscale check --case" in report.counterexample


def test_nan_after_100_steps_is_flagged():
    report = V.validate_rule(P.nan_after_100(), iters=150)
    detail = _failed(report)["alpha positive and finite"]
    assert "alpha = nan at step 100" in detail


def test_cli_report_and_exit_status(tmp_path):
    """A failing rule: exit status 1, the report says FAIL, the figure is drawn (a rule that
    passes exits 0: the README's ``validate-rule`` block, run by tests/test_docs.py)."""
    out = tmp_path / "vr"
    assert (
        main(
            ["validate-rule", "tests/planted_rules.py:negative", "--out", str(out), "--iters", "40"]
        )
        == 1
    )
    assert "**FAIL**" in (out / "report.md").read_text()
    assert (out / "rate_curves.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_module_xyz:rule", "Cannot import 'no_such_module_xyz'"),
        ("tests/planted_rules.py:missing", "has no attribute 'missing'"),
        ("tests/planted_rules.py:not_a_rule", "is not a scaling rule"),
        ("tests/planted_rules.py:wrong_shape", "returned alpha of shape (3,)"),
        ("no_colon", "expected 'module:attr'"),
    ],
)
def test_bad_input_exits_two_with_a_clear_message(spec, message, capsys):
    assert main(["validate-rule", spec]) == 2
    assert message in capsys.readouterr().err


def test_the_printed_reproduce_command_runs(tmp_path, capsys, monkeypatch):
    """validate-rule prints the counterexample's ``paramscale check --case`` command; that
    command loads the user's rule again from its path and re-runs the failing case."""
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1])
    spec = "tests/planted_rules.py:adam_claimed_monotone"
    argv = ["validate-rule", spec, "--out", str(tmp_path), "--iters", "60", "--examples", "20"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    command = next(line for line in out.splitlines() if "reproduce: paramscale check" in line)
    case = command.split("--case ", 1)[1].strip().strip("'")
    assert spec in case
    assert main(["check", "--case", case]) == 1  # the theorem fails again: exit status 1
    assert '"holds": false' in capsys.readouterr().out


def test_claims_on_a_users_problems(tmp_path, capsys, monkeypatch):
    """validate-rule --problem: the claims run on the user's problems instead of the suite."""
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1])
    argv = ["validate-rule", "examples/max_normalised_adam.py:max_normalised_adam", "--problem",
            "examples/my_data.py:problems", "--iters", "40", "--examples", "5", "--out",
            str(tmp_path)]  # fmt: skip
    assert main(argv) in (0, 1)
    assert "claims of docs/spec.md section 4 on the given problems" in capsys.readouterr().out


# -- step-size rules -------------------------------------------------------------------------
def _step_report(rule, iters=40):
    from paramscale import synthetic
    from paramscale.proofs_check.validate_step import validate_step_rule

    problems = [synthetic.lad(30, 5, 2.0, seed=1), synthetic.logistic(30, 5, 2.0, seed=1)]
    report = validate_step_rule(rule, iters=iters, problems=problems)
    return {c.name: c for c in report.checks}, report


def test_a_step_rule_is_validated_and_a_planted_cap_or_sign_is_caught():
    """The example step rule passes every check; the same rule with a finite cap (in scaled
    units: it breaks principle (i)) fails uniform-scale invariance only; a rule whose step
    is negative fails the step check."""
    import sys
    from dataclasses import replace

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "examples"))
    from lowest_loss_polyak import lowest_loss_polyak

    checks, report = _step_report(lowest_loss_polyak())
    assert report.passed and "B2" in report.theorems, report.markdown()
    checks, report = _step_report(replace(lowest_loss_polyak(), eta_max=0.01))
    failed = [name for name, c in checks.items() if c.ok is False]
    assert failed == ["uniform-scale invariance"], report.markdown()

    class uphill(type(lowest_loss_polyak())):
        def step(self, scalars, sums):
            lam, scalars = super().step(scalars, sums)
            return -lam, scalars

    checks, _ = _step_report(uphill())
    assert checks["steps finite and non-negative"].ok is False


def test_a_step_rule_naming_an_unknown_reduction_is_bad_input():
    from paramscale.loading import RuleInputError
    from paramscale.proofs_check.validate_step import check_step_interface
    from paramscale.theory.stepsize import constant

    class reads_nothing_known(constant):
        def reductions(self, scalars, k):
            return frozenset({"gradient_norm"})

    with pytest.raises(RuleInputError, match=r"unknown reductions \['gradient_norm'\]"):
        check_step_interface(reads_nothing_known())
    with pytest.raises(RuleInputError, match="is not a step-size rule"):
        check_step_interface(object())
