"""proofs_check.pep: the claims with a fixed-metric form against certified worst cases
(PEPit): each holds, the subgradient method's worst case is the known tight value, a
planted bound (halved) is refuted with a counterexample, a failed solve is never used."""

import math

import pytest

from paramscale.cli import main
from paramscale.proofs_check import pep


@pytest.fixture(scope="module")
def quick_rows():
    return pep.rows(n_max=4)


def test_every_fixed_metric_claim_holds_against_its_worst_case(quick_rows):
    assert {r.claim for r in quick_rows} == set(pep.PEP_CLAIMS)
    assert len({r.claim for r in quick_rows}) >= 4
    assert all(r.status == "optimal" and r.holds for r in quick_rows)


def test_the_subgradient_worst_case_is_drori_teboulle_tight_value(quick_rows):
    """eta = R / (G sqrt(N+1)): the worst case of min_k f(x_k) - f* is R G / sqrt(N+1)."""
    for r in (r for r in quick_rows if r.claim == "C2"):
        assert r.worst == pytest.approx(1 / math.sqrt(r.n + 1), rel=1e-6)
        assert abs(r.worst - r.primal) < 1e-6  # the solver's duality gap


def test_the_one_step_polyak_bound_is_attained(quick_rows):
    """A2 at c = 1 (kappa = 1): max ||x_1 - x*||**2 = 1 - t**2, attained by a linear f."""
    for r in (r for r in quick_rows if r.claim == "A2"):
        assert r.worst == pytest.approx(1 - r.param**2, rel=1e-6)


def test_a_halved_bound_is_refuted_with_a_counterexample():
    row = pep.solve(pep.PEP_CLAIMS["C2"], 3, 0.5, scale=0.5)
    assert not row.holds and row.status == "optimal"
    assert len(row.counterexample) == 4  # f(x_k) - f* at the 4 iterates of the worst case
    assert min(row.counterexample) > row.bound  # every iterate above the planted bound
    assert "counterexample" in pep.format_table([row])


def test_the_lower_bound_fails_when_it_exceeds_the_worst_case():
    assert not pep.solve(pep.PEP_CLAIMS["L1"], 3, 0.5, scale=5.0).holds


def test_a_failed_solve_is_reported_and_never_used(monkeypatch):
    import cvxpy
    from PEPit import PEP

    def broken(self, **kwargs):
        raise cvxpy.error.SolverError("planted")

    monkeypatch.setattr(PEP, "solve", broken)
    row = pep.solve(pep.PEP_CLAIMS["C2"], 2, 1 / math.sqrt(3))
    assert not row.holds and row.status.startswith("failed") and math.isnan(row.worst)
    assert "FAIL (1 solve(s) failed" in pep.format_table([row])


def test_cli_check_pep(tmp_path, capsys):
    out = tmp_path / "pep.csv"
    argv = ["check", "--pep", "--quick", "--claims", "C2,A2", "--pep-csv", str(out)]
    assert main(argv) == 0
    assert "C2" in capsys.readouterr().out and out.read_text().startswith("claim,n,param")
    assert main(["check", "--pep", "--claims", "B6"]) == 2  # no fixed-metric form


def test_plot_pep_draws_bound_and_worst_case_from_the_csv(tmp_path):
    from paramscale.figures.pep import pep_plot
    from paramscale.figures.tidy import read_csv, write_csv

    write_csv([r.as_dict() for r in pep.rows(("C2", "L1"), n_max=2)], tmp_path / "pep.csv")
    paths = pep_plot(read_csv(tmp_path / "pep.csv"), tmp_path)
    assert [p.name for p in paths] == ["pep_worst_cases.png", "pep_worst_cases.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)
