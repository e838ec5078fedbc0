"""Devices the torch tests run on: CPU always, CUDA when present (marked ``cuda``)."""

import pytest
import torch


def needs_cuda(value: str, reason: str = "no CUDA device"):
    """``value`` as a pytest parameter marked ``cuda``, skipped where there is none."""
    marks = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=reason)]
    return pytest.param(value, marks=marks)


DEVICES = ["cpu", needs_cuda("cuda")]
