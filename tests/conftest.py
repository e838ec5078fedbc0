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
