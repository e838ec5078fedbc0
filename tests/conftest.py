import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("PARAMSCALE_CACHE", tempfile.mkdtemp(prefix="paramscale-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")

settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# CI: derandomized, so a green run is reproducible; locally hypothesis keeps exploring
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _compiles(item: pytest.Item) -> bool:
    """Whether a test builds compiled kernels: the fused paths (a ``fused`` or ``triton``
    test, a parameter that is ``"fused"`` or a dict with ``fused=True``), ``torch.compile``,
    the Triton interpreter, the files of the fused paths, and the docs examples (a shell
    block may run anything)."""
    if item.path.name in ("test_torch_fused.py", "test_torch_fused_triton.py", "test_docs.py"):
        return True
    if any(word in item.name for word in ("fused", "triton", "compiled")):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(
        value == "fused" or (isinstance(value, dict) and value.get("fused"))
        for value in params.values()
    )


# the files that take longest, longest first (measured on 2 cores, a fresh clone): the
# test runner hands whole files to its two workers in collection order
# (scripts/test: --dist loadfile --no-loadscope-reorder), so that no long file starts last
LONGEST_FIRST = (
    "test_torch_fused.py",
    "test_torch_conformance.py",
    "test_docs.py",
    "test_portability.py",
    "test_torch_engines.py",
    "test_triton_interpreter.py",
    "test_torch_optimizer.py",
    "test_torch_distributed.py",
    "test_train.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files in ``LONGEST_FIRST`` order, then the others as collected; ``compiles`` on
    every test that builds kernels: tests/test_portability.py's second run of the torch
    tests, under ATEN_CPU_CAPABILITY=default (ATen's scalar kernels), deselects them, since
    inductor writes its own vector code and its cache does not key on that variable."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable
    for item in items:
        if _compiles(item):
            item.add_marker(pytest.mark.compiles)
