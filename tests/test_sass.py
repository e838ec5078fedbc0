"""``paramscale bench --kernels``: the CUDA sweeps compiled offline for sm_90 and counted.

The expected special-function (MUFU) counts come from the formulas, not from a run: each
correctly rounded square root or division is one MUFU instruction (RSQ or RCP) plus its
refinement. With Adam scaling, alpha = sqrt(sqrt(v) / sqrt(bc2) + eps) is 3 of them.
"""

import importlib.util

import pytest

from paramscale import sass
from paramscale.cli import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="Triton is not installed"
)

EXPECTED_MUFU = {
    "PS-DA-SGD sweep 1": 7,  # alpha_{k-1} 3, alpha_k 3, alpha_k / alpha_{k-1} 1
    "PS-SPS sweep 1": 4,  # alpha_k 3, g / alpha_k 1 (no rho: no alpha_{k-1})
    "PS-DA-SGD sweep 2": 5,  # alpha_k 3, g' = g / alpha 1, g' / alpha 1
    "PS-SPS sweep 2": 5,  # the same direction
}


def test_kernel_counts_match_the_formulas(capsys):
    assert main(["bench", "--kernels"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    counts = {row[:30].strip(): row.split()[-2:] for row in rows}
    assert set(counts) == set(EXPECTED_MUFU)
    for name, (instructions, mufu) in counts.items():
        assert float(mufu) == EXPECTED_MUFU[name], name
        assert float(instructions) > 10 * float(mufu)  # a loop body, not one instruction


def test_the_count_sees_a_planted_alpha_k_minus_1():
    """PS-SPS's sweep 1 made to compute the ratio it does not need: 4 more MUFU."""
    name, kernel, constexprs = next(v for v in sass.variants() if v[0] == "PS-SPS sweep 1")
    planted = sass.loop_count(name, kernel, {**constexprs, "RATIO": 1})
    assert planted.mufu == EXPECTED_MUFU[name] + 4
