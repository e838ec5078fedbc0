"""``paramscale study``: both studies run end to end (shortened), their tables come from the
CSVs, and the summaries compute what the table says."""

import math

import pytest

from paramscale import study
from paramscale.cli import main


@pytest.mark.parametrize("which", ["ps-dadapt", "ps-sps"])
def test_a_shortened_study_writes_csvs_table_and_figure(which, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(study, "CONVEX_STEPS", 25)
    monkeypatch.setattr(study, "CONSTANT_GRID", (1e-3, 1e-1))
    argv = ["study", which, "--seeds", "1", "--net-seeds", "1", "--tasks", "logreg-convex",
            "--steps", "8", "--jobs", "1", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    family = study._studies()[which].family
    assert family in out and "gap/base" in out
    for name in ("convex.csv", "nets.csv", "table.txt", which.replace("-", "_") + "_study.png"):
        assert (tmp_path / name).exists()
    rows = study.read_convex(tmp_path / "convex.csv")
    summary = study.convex_summary(rows)
    assert set(summary) == {study.spec(v, family) for v in study._studies()[which].variants}
    default = summary[family]
    mine = [r for r in rows if r["variant"] == family]
    assert default["problems"] == len(mine)
    assert default["worse"] == sum(study._worse(r) for r in mine)
    logs = [math.log(max(r["final_gap"], 1e-16) / max(r["baseline_gap"], 1e-16)) for r in mine]
    assert default["gap_ratio"] == pytest.approx(math.exp(sum(logs) / len(logs)))


def test_a_shortened_eg_study_writes_its_csv_table_and_figure(tmp_path, capsys):
    from paramscale import study_eg
    from paramscale.train import runner

    argv = ["study", "eg", "--net-seeds", "1", "--tasks", "logreg-convex", "--steps", "8",
            "--jobs", "1", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "within 2" in capsys.readouterr().out
    for name in ("eg.csv", "table.txt", "eg_study.png"):
        assert (tmp_path / name).exists()
    rows = runner.read_csv(tmp_path / "eg.csv")
    table = study_eg.summary(rows)
    assert set(table) == {(c, f) for c in study_eg.CANDIDATES for f in study_eg.FACTORS}
    best = max((r for r in rows if r["family"] == "adam" and r["grid_lr"]),
               key=lambda r: r["test_metric"] if r["step"] == 8 else -1)  # fmt: skip
    assert best["grid_lr"] > 0
    for entry in table.values():  # each start's Adam ran at the same base rate
        cell = entry["tasks"]["logreg-convex"]
        assert math.isfinite(cell["vs_same_rate"]) and cell["scale"] > 0
