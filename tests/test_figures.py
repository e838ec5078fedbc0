"""paramscale plot: files are written, each figure shows exactly its CSV's data, and the
rate-curve CSV has every theorem bound above the observed curve."""

import numpy as np
import pytest

import paramscale.figures.rates as R
from paramscale.cli import main
from paramscale.figures.style import METHOD_COLOURS, on_log_axis
from paramscale.figures.tidy import read_csv


@pytest.fixture(scope="module")
def figdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("figs")
    assert main(["plot", "--quick", "--out", str(out)]) == 0
    return out


NAMES = ["rate_curves", "learning_rates", "tightness", "invariance", "rule_grid"]


@pytest.mark.parametrize("name", NAMES)
def test_files_are_written_and_valid(figdir, name):
    png, pdf, csv = (figdir / f"{name}.{ext}" for ext in ("png", "pdf", "csv"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert len(read_csv(csv)) > 0


def test_rate_curve_lines_are_the_csv_data(figdir, monkeypatch):
    captured = {}
    monkeypatch.setattr(
        R, "save_figure", lambda fig, out, name: captured.setdefault("fig", fig) and []
    )
    rows = read_csv(figdir / "rate_curves.csv")
    R.rate_curve_plot(rows, figdir)
    ax = captured["fig"].axes[0]
    family = rows[0]["family"]
    for line in ax.get_lines():
        label = line.get_label()
        if label not in METHOD_COLOURS:
            continue
        m = [r for r in rows if r["family"] == family and r["method"] == label]
        expected = on_log_axis(np.maximum([r["observed"] for r in m], 1e-16))
        np.testing.assert_array_equal(np.asarray(line.get_ydata(), float), expected)
        np.testing.assert_array_equal(line.get_xdata(), [r["k"] for r in m])


def test_bounds_lie_above_observed_where_the_theorem_applies(figdir):
    rows = read_csv(figdir / "rate_curves.csv")
    checked = 0
    for r in rows:
        if np.isfinite(r["bound"]) and np.isfinite(r["observed"]):
            assert r["observed"] <= r["bound"] * (1 + 1e-9) + 1e-12, r
            checked += 1
    # claim L1 on Nesterov's function itself (n = p = 20, M = R = 1): for k <= n - 1, no
    # method beats M R / (2 (2 + sqrt(n))), and the CSV's dotted line is that level
    nest = [r for r in rows if r["family"] == "nesterov_worst" and r["k"] <= 19]
    level = 1.0 / (2 * (2 + np.sqrt(20)))
    assert nest and all(r["lower_bound"] == pytest.approx(level, rel=1e-12) for r in nest)
    assert all(r["observed"] >= level * (1 - 1e-9) for r in nest)
    later = [r for r in rows if r["family"] == "nesterov_worst" and r["k"] > 19]
    assert later and all(np.isnan(r["lower_bound"]) for r in later)
    assert checked > 100


def test_bound_check_catches_a_planted_error(figdir):
    """The check above can fail: a bound shrunk 100x falls below the observed curve."""
    rows = read_csv(figdir / "rate_curves.csv")
    shrunk = [r["bound"] / 100 for r in rows if np.isfinite(r["bound"])]
    observed = [r["observed"] for r in rows if np.isfinite(r["bound"])]
    assert any(o > b for o, b in zip(observed, shrunk, strict=True))


def test_a_users_problems_and_rule_are_plotted(tmp_path):
    """plot --problem / --rule (by module path): the user's problems replace the suite in
    every figure, and the user's rule is a column of the rule grid."""
    rule = "examples/max_normalised_adam.py:max_normalised_adam"
    args = ["plot", "--iters", "20", "--out", str(tmp_path), "--rule", rule]
    assert main([*args, "--problem", "examples/my_data.py:problems"]) == 0
    rates = read_csv(tmp_path / "rate_curves.csv")
    assert {r["problem"] for r in rates} == {
        "lad(m=442,n=11,dataset=user:diabetes)",
        "huber(m=442,n=11,dataset=user:diabetes,delta=10)",
    }
    grid = read_csv(tmp_path / "rule_grid.csv")
    assert {r["scaling"] for r in grid} >= {"identity", "adam", rule}
    assert all(r["problems"] == 2 for r in grid)
    assert main([*args, "--problem", "examples/my_data.py:nothing"]) == 2  # named, refused
