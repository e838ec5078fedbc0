"""``paramscale train``: determinism, a planted diverging method, the CSV schema, the
listing and bad names, a tiny run of every task, and the table and figure made from the
CSV. Nothing here is timed."""

import math

import numpy as np
import pytest
import torch

from paramscale import train
from paramscale.cli import main
from paramscale.train import methods as M
from paramscale.train import report, runner
from paramscale.train.family import group_lr, single_builder
from paramscale.train.outputs import write_outputs
from paramscale.train.tasks import TASKS

TINY = 12  # steps: enough for every logged point to be a different step


def _strip_wall(rows):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def _same(a, b):
    """Rows equal, NaN equal to NaN."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for key in ra:
            x, y = ra[key], rb[key]
            if isinstance(x, float) and math.isnan(x):
                assert isinstance(y, float) and math.isnan(y), key
            else:
                assert x == y, (key, x, y)


def test_same_seed_same_rows_and_workers_do_not_matter():
    """Two runs of the same command give the same rows apart from wall times, whether the
    runs are made in this process or in two worker processes."""
    args = (["digits-mlp", "logreg-convex"], ["adam[lr=0.01]", "PSDASGD", "PSSPS"], [0, 1])
    first = train.benchmark(*args, steps=TINY)
    again = train.benchmark(*args, steps=TINY)
    parallel = train.benchmark(*args, steps=TINY, workers=2)
    _same(_strip_wall(first), _strip_wall(again))
    _same(_strip_wall(first), _strip_wall(parallel))
    assert {r["seed"] for r in first} == {0, 1}
    seeds = [[r["test_metric"] for r in first if r["seed"] == s and r["method"] == "PSDASGD"]
             for s in (0, 1)]  # fmt: skip
    assert seeds[0] != seeds[1]  # the seed changes weights and batches


def test_every_method_sees_the_same_batches():
    """Same seed: the same batch indices and the same initial weights for every method."""
    a = runner._batches(3, 100, 8, 5)
    assert np.array_equal(a, runner._batches(3, 100, 8, 5))
    assert not np.array_equal(a, runner._batches(4, 100, 8, 5))
    rows = train.benchmark(["digits-mlp"], ["adam[lr=0.001]", "sgd[lr=0.1]"], [0], steps=TINY)
    at_zero = {r["method"]: r["train_loss"] for r in rows if r["step"] == 0}
    assert len(set(at_zero.values())) == 1  # same initial model


@pytest.fixture
def planted(monkeypatch):
    """Three planted families: one whose loss becomes NaN, one that refuses a step with
    FloatingPointError (as ours do), one that raises something else."""

    class Refuses(torch.optim.SGD):
        def step(self, closure=None):
            if self.state.setdefault("k", 0) == 3:
                raise FloatingPointError("Non-finite gradient at step 3 (planted)")
            self.state["k"] += 1
            return super().step(closure)

    class Crashes(torch.optim.SGD):
        def step(self, closure=None):
            raise RuntimeError("planted crash")

    make = {
        "blowup": lambda ps, o: torch.optim.SGD(ps, lr=1e6),
        "refuses": lambda ps, o: Refuses(ps, lr=0.01),
        "crashes": lambda ps, o: Crashes(ps, lr=0.01),
    }
    for name, factory in make.items():
        family = M.Family(name, "planted", single_builder(name, factory, group_lr, "sgd"))
        monkeypatch.setitem(M.FAMILIES, name, family)


def test_a_diverging_method_is_recorded_and_the_others_finish(planted):
    specs = ["blowup", "refuses", "crashes", "adam[lr=0.01]"]
    rows = train.benchmark(["digits-mlp"], specs, [0], steps=TINY)
    last = {r["method"]: r for r in rows}  # rows are in step order: the last one of each
    assert last["blowup"]["status"] == "diverged"
    assert "non-finite" in last["blowup"]["detail"] or "nan" in last["blowup"]["detail"]
    assert math.isnan(last["blowup"]["train_loss"])
    assert last["refuses"]["status"] == "diverged" and "step 3" in last["refuses"]["detail"]
    assert last["refuses"]["step"] == 3
    assert last["crashes"]["status"] == "error" and "planted crash" in last["crashes"]["detail"]
    assert last["adam[lr=0.01]"]["status"] == "ok" and last["adam[lr=0.01]"]["step"] == TINY
    summary = {s.method: s for s in report.summarize(rows)}
    assert summary["blowup"].diverged == 1 and summary["blowup"].mean == 0.0
    table = report.format_table(report.summarize(rows))
    assert "1/1" in table  # the diverged mark


def test_csv_schema_and_round_trip(tmp_path):
    rows = train.benchmark(["logreg-convex"], ["adam[lr=0.01]", "PSDASGD"], [0], steps=TINY)
    path = tmp_path / "train.csv"
    runner.write_csv(rows, path)
    header = path.read_text().splitlines()[0].split(",")
    assert tuple(header) == runner.COLUMNS
    back = runner.read_csv(path)
    _same(back, rows)
    assert len(back) == 2 * len(runner.logged_steps(TINY, runner.QUICK_LOG_POINTS))
    for r in back:  # f* is exact here: the gap is f - f* >= 0 (up to float32 round-off)
        assert r["train_gap"] > -1e-5 and r["lr_units"] == "adam"
    (tmp_path / "bad.csv").write_text("task,method\nx,y\n")
    with pytest.raises(ValueError, match="missing column"):
        runner.read_csv(tmp_path / "bad.csv")


def test_logreg_f_star_is_the_minimum():
    """f* of logreg-convex (cvxpy) against an independent solve: L-BFGS on the same loss."""
    from scipy.optimize import minimize

    data = TASKS["logreg-convex"].data(0)
    x, y = data.x_train.double().numpy(), data.y_train.numpy()
    s = 2 * y - 1

    def loss(wb):
        z = x @ wb[:-1] + wb[-1]
        return np.mean(np.logaddexp(0, -s * z)) + 0.5e-3 * wb[:-1] @ wb[:-1]

    best = minimize(loss, np.zeros(x.shape[1] + 1), method="L-BFGS-B",
                    options={"maxiter": 10000, "ftol": 1e-15, "gtol": 1e-12})  # fmt: skip
    assert abs(best.fun - data.f_star) < 1e-7
    assert data.f_star < loss(np.zeros(x.shape[1] + 1))


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_runs(task):
    rows = train.benchmark([task], ["adam[lr=0.003]", "PSDASGD"], [0], steps=TINY)
    assert {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert math.isfinite(r["train_loss"]) and 0.0 <= r["test_metric"] <= 1.0
    first, last = rows[0], [r for r in rows if r["method"] == "adam[lr=0.003]"][-1]
    assert last["train_loss"] < first["train_loss"]  # Adam makes progress on every task


def test_list_names_every_task_and_method(capsys):
    assert main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    for name in [*TASKS, *(f.name for f in M.FAMILIES.values())]:
        assert name in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tasks", "mnist"], "Unknown task(s) ['mnist'] (expected some of: digits-mlp"),
        (["--methods", "adamw"], "Unknown method 'adamw' (expected one of: adam, amsgrad"),
        (["--methods", "PSDASGD[transfer=median]"], "Invalid transfer: 'median'"),
        (["--methods", "adam[lr]"], "Invalid option 'lr'"),
        (["--methods", "adam[lr=0.1"], "'[' without ']'"),
        (["--seeds", "0"], "invalid --seeds '0'"),
    ],
)
def test_bad_names_are_refused_with_the_valid_ones(argv, message, capsys):
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_method_specs_split_at_top_level_commas_only():
    assert M.split_specs("adam,PSDASGD[transfer=min,scaling=amsgrad],sgd[lr=0.1]") == [
        "adam", "PSDASGD[transfer=min,scaling=amsgrad]", "sgd[lr=0.1]",
    ]  # fmt: skip
    family, options = M.parse("psdasgd[transfer=min,d0=1e-05,momentum=0]")
    assert family.name == "PSDASGD"
    assert options == {"transfer": "min", "d0": 1e-05, "momentum": 0}


def test_a_missing_package_is_skipped_with_its_reason(monkeypatch):
    gone = M.Family("Gone", "needs a package", M.FAMILIES["prodigy"].build, package="no_such_pkg")
    monkeypatch.setitem(M.FAMILIES, "gone", gone)
    rows = train.benchmark(["logreg-convex"], ["Gone", "adam[lr=0.01]"], [0, 1], steps=TINY)
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert len(skipped) == 2 and "no_such_pkg" in skipped[0]["detail"]
    assert "skipped: package 'no_such_pkg'" in report.format_table(report.summarize(rows))


def test_outputs_are_made_from_the_csv(tmp_path):
    rows = train.benchmark(
        ["digits-mlp", "logreg-convex"], ["adam", "PSDASGD", "Prodigy"], [0, 1], steps=TINY
    )
    written = write_outputs(rows, tmp_path)
    table = written["table"].read_text()
    assert "digits-mlp: test accuracy" in table and "vs Adam" in table
    assert "adam (best lr" in table and "f - f*" in table  # logreg-convex knows f*
    assert "the learning-rate grids" in table
    assert written["png"].stat().st_size > 10_000 and written["pdf"].exists()
    # the best Adam is the grid's best mean final metric, whatever order the rows are in
    summaries = report.summarize(runner.read_csv(written["csv"]))
    best = [s for s in report.best_of_grids(summaries) if s.family == "adam"]
    for s in best:
        grid = [g for g in summaries if g.task == s.task and g.family == "adam"]
        assert s.mean == max(g.mean for g in grid)


def test_cli_quick_run_writes_csv_table_and_figure(tmp_path, capsys):
    argv = ["train", "--quick", "--tasks", "logreg-convex", "--methods",
            "adam[lr=0.01],PSDASGD", "--seeds", "1", "--steps", str(TINY), "--out",
            str(tmp_path), "--jobs", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "logreg-convex: test accuracy" in out
    for name in ("train.csv", "table.txt", "train.png", "train.pdf"):
        assert (tmp_path / name).exists()


# the options a family needs to run (``PS`` is any step rule: it needs one)
NEEDED = {"PS": "[step=examples/lowest_loss_polyak.py:lowest_loss_polyak]"}


@pytest.fixture(scope="module")
def every_method_alone():
    """One tiny run of every method of ``paramscale train --list`` on the smallest task
    (one seed), shared by the tests below: rows by family."""
    names = [family.name for family in M.FAMILIES.values() if not family.missing()]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(__import__("pathlib").Path(__file__).parents[1])
        specs = [name + NEEDED.get(name, "") for name in names]
        rows = train.benchmark(["digits-mlp"], specs, [0], steps=TINY)
    return {name: [r for r in rows if r["family"] == name] for name in names}


def test_each_method_alone_gets_its_figure(every_method_alone, tmp_path):
    """``train --methods M`` for each M alone: the CSV, the table and a figure drawing M
    (the fixed set of the figure is absent), its step in the lr panel where it has units."""
    from paramscale.figures.training import shown

    assert set(every_method_alone) == {family.name for family in M.FAMILIES.values()}
    for name, rows in every_method_alone.items():
        written = write_outputs(rows, tmp_path / name)
        assert written["no_figure"] is None, name
        assert written["png"].stat().st_size > 10_000 and written["csv"].exists(), name
        drawn = shown(report.summarize(runner.read_csv(written["csv"])))
        assert {s.family for s in drawn} == {name}


def test_one_logged_step_is_no_figure(every_method_alone, tmp_path):
    """A run that logged its first step only (it diverged there): CSV and table, no figure,
    the reason given."""
    rows = [r for r in every_method_alone["PSDASGD"] if r["step"] == 0]
    written = write_outputs(rows, tmp_path)
    assert written["png"] is None and written["no_figure"].startswith("one step logged")
    assert written["table"].exists()


def test_a_run_with_nothing_to_draw_says_so_and_exits_0(tmp_path, capsys, monkeypatch):
    """Every run skipped (its package missing): no figure; the CLI writes the CSV and the
    table, says why there is no figure in one line, and exits 0."""
    gone = M.Family("Gone", "needs a package", M.FAMILIES["prodigy"].build, package="no_such_pkg")
    monkeypatch.setitem(M.FAMILIES, "gone", gone)
    argv = ["train", "--quick", "--tasks", "digits-mlp", "--methods", "Gone", "--seeds", "1",
            "--steps", str(TINY), "--out", str(tmp_path), "--jobs", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "no figure: no method ran: every run was skipped or failed" in out
    assert (tmp_path / "train.csv").exists() and not (tmp_path / "train.png").exists()


RULE = "examples/max_normalised_adam.py:max_normalised_adam"


def test_a_users_rule_runs_as_psdasgd_and_pssps(monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1])
    specs = [f"PSDASGD[scaling={RULE}]", f"PSSPS[scaling={RULE}]"]
    rows = train.benchmark(["digits-mlp"], specs, [0], steps=TINY)
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["lr_units"] for r in rows} == {"max_normalised_adam"}
    with pytest.raises(ValueError, match="Cannot import 'nope.py'"):
        M.expand(["PSDASGD[scaling=nope.py:rule]"], True)


def test_validate_rule_train_runs_the_quick_benchmark(monkeypatch, tmp_path, capsys):
    """``validate-rule --train``: the rule as PSDASGD and PSSPS next to Adam and AMSGrad
    (shortened here: two tasks, one seed, a few steps, in this process)."""
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[1])
    full = train.benchmark
    seen = {}

    def short(tasks, specs, seeds, *args, **kwargs):
        seen["specs"] = specs
        return full(["logreg-convex", "digits-mlp"], specs, [0], steps=TINY)

    monkeypatch.setattr(train, "benchmark", short)
    argv = ["validate-rule", RULE, "--train", "--iters", "30", "--examples", "5", "--out",
            str(tmp_path)]  # fmt: skip
    assert main(argv) in (0, 1)  # the rule's own verdict
    assert seen["specs"] == [f"PSDASGD[scaling={RULE}]", f"PSSPS[scaling={RULE}]", "adam",
                             "amsgrad"]  # fmt: skip
    out = capsys.readouterr().out
    assert "training table:" in out and "amsgrad (best lr" in out
    assert (tmp_path / "train" / "train.csv").exists()


def test_the_shift_task_changes_the_inputs_halfway():
    """digits-mlp-shift: the same labels, the pixels permuted from step steps // 2 on (train
    and test alike), so a model that learnt the first half loses its test accuracy."""
    from paramscale.train.tasks import permuted_pixels

    data = TASKS["digits-mlp-shift"].data(0)
    moved = permuted_pixels(data)
    assert torch.equal(moved.y_test, data.y_test)
    assert torch.equal(moved.x_test.sort(dim=1).values, data.x_test.sort(dim=1).values)
    assert not torch.equal(moved.x_test, data.x_test)
    rows = train.benchmark(["digits-mlp-shift"], ["adam[lr=0.01]"], [0], steps=40)
    metric = {r["step"]: r["test_metric"] for r in rows}
    before = max(s for s in metric if s <= 20)
    after = min(s for s in metric if s > 20)
    assert metric[before] > 0.6 and metric[after] < metric[before] - 0.2
