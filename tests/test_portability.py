"""The torch tests once more with ATen's scalar kernels (``ATEN_CPU_CAPABILITY=default``),
which round differently from the vectorised ones: a test that passes with one kernel family
only asserts one CPU's rounding. A subprocess (the variable is read when torch loads), run
by one of the test runner's workers while the other runs the rest of the suite. The tests
that build compiled kernels (``compiles``, tests/conftest.py) are left out: inductor writes
its own vector code whatever the variable says."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TORCH_FILES = (
    "test_torch_vs_theory.py",
    "test_torch_optimizer.py",
    "test_torch_conformance.py",
    "test_oracle_torch.py",
    "test_eg.py",
)


def on_scalar_kernels(*files: Path) -> subprocess.CompletedProcess:
    """pytest on ``files`` in a subprocess under ATEN_CPU_CAPABILITY=default, without the
    tests that compile kernels."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-m", "not compiles and not cuda", *map(str, files)],
        cwd=HERE.parent, env=env, capture_output=True, text=True,
    )  # fmt: skip


def test_the_torch_tests_pass_with_atens_scalar_kernels():
    if os.environ.get("ATEN_CPU_CAPABILITY") == "default":
        pytest.skip("this run is on ATen's scalar kernels already")
    run = on_scalar_kernels(*(HERE / name for name in TORCH_FILES))
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout, run.stdout[-2000:]


def test_a_test_that_holds_on_the_vectorised_kernels_only_fails_there(tmp_path):
    """Planted: a test true only where ATen dispatches to its vector kernels fails in the
    second run (the variable reaches torch; a failure fails the check)."""
    planted = tmp_path / "test_planted.py"
    planted.write_text(
        "import torch\n\n\ndef test_vectorised():\n"
        "    assert torch.backends.cpu.get_cpu_capability() != 'DEFAULT'\n"
    )
    run = on_scalar_kernels(planted)
    assert run.returncode == 1 and "1 failed" in run.stdout, run.stdout[-2000:]
