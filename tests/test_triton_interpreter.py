"""The CUDA kernels (torch_impl.fused_triton) on a machine without a GPU: their test file,
tests/test_torch_fused_triton.py, runs in a subprocess under TRITON_INTERPRET=1, on CPU
tensors. A file of its own, so that the test runner's two workers (one file each) share
the suite's time evenly."""

import os
import subprocess
import sys

import pytest


def test_triton_kernels_under_the_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    test_file = os.path.join(os.path.dirname(__file__), "test_torch_fused_triton.py")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]
