"""The command line: every subcommand has --help (docs/spec.md section 9); the main job runs."""

import pytest

from paramscale.cli import main


@pytest.mark.parametrize("command", ["compare", "check", "plot", "validate-rule", "bench"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: paramscale " + command in capsys.readouterr().out


def test_main_job_prints_its_table(capsys, tmp_path):
    csv = tmp_path / "c.csv"
    assert (
        main(
            [
                "compare",
                "--quick",
                "--iters",
                "50",
                "--no-progress",
                "--methods",
                "sps,ps_sps[adam],ps_dadapt_sgd[adam]",
                "--csv",
                str(csv),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "ps_sps[adam]" in out and "lad(m=60,n=8,scale=2,seed=0)" in out
    assert len(csv.read_text().splitlines()) == 1 + 3 * 15  # header + methods x problems


def test_bad_arguments_exit_two(capsys):
    assert main(["compare", "--methods", "nope"]) == 2
    assert main(["compare", "--iters", "0"]) == 2
    assert main(["bench", "--sizes", "ten"]) == 2
    assert main(["bench", "--rounds", "0"]) == 2


def test_compare_table_fits_120_columns_with_ranks_and_start_gaps(capsys, tmp_path):
    """Method specs split at top-level commas only; the default table shows each method's
    rank per problem and each problem's f(x0) - f*, within 120 columns; --wide every gap."""
    methods = "sps,ps_dadapt_sgd[adam,literal],ps_dadapt_sgd[adam]"
    argv = ["compare", "--quick", "--iters", "40", "--no-progress", "--methods", methods]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 120
    assert "mean rank" in out and "f(x0) - f*" in out and "ps_dadapt_sgd[adam,literal]" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("sps ", "ps_"))]
    for problem in range(1, 16):  # each problem's ranks are 1.. among the three methods
        assert sorted(int(r[problem]) for r in rows if r[problem] != "d")[0] == 1
    assert main([*argv, "--wide"]) == 0
    assert "f(x0)-f*" in capsys.readouterr().out
    assert main(["compare", "--methods", "ps_sps[adam"]) == 2
    assert "'[' without ']'" in capsys.readouterr().err


RULE = "examples/max_normalised_adam.py:max_normalised_adam"
DATA = "examples/my_data.py:problems"


def test_a_users_problem_and_rule_run_through_compare_and_check(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1])
    argv = ["compare", "--problem", DATA, "--rule", RULE, "--methods", "adam", "--iters", "60",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ps_dadapt_sgd[max_normalised_adam]" in out and "dataset=user:diabetes" in out
    assert max(map(len, out.splitlines())) <= 120
    report = tmp_path / "r.json"
    argv = ["check", "--problem", DATA, "--rule", RULE, "--claims", "A2,A3,B2", "--iters", "40",
            "--no-progress", "--report", str(report)]  # fmt: skip
    assert main(argv) == 0
    checked = __import__("json").loads(report.read_text())["records"]
    assert {r["rule"] for r in checked} >= {RULE, "adam"}
    assert {r["problem"] for r in checked} == {
        "lad(m=442,n=11,dataset=user:diabetes)", "huber(m=442,n=11,dataset=user:diabetes,delta=10)"
    }  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "--problem", "nope.py:x"], "Cannot import 'nope.py'"),
        (["check", "--rule", "examples/my_data.py:problems"], "is not a scaling rule"),
        (["compare", "--problem", RULE], "expected a synthetic.Problem"),
    ],
)
def test_bad_user_inputs_exit_two(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1])
    assert main(argv) == 2
    assert message in capsys.readouterr().err
