"""The paper's convergence claims (docs/spec.md section 4), one class each, PEPit style: the
statement in the docstring's first line (in the spec's notation), its assumptions, its
kind (``theorem``: must hold, a violation is a bug or a false proof; ``conjecture``:
measured and reported), ``applies(trajectory, problem)`` and ``evaluate(trajectory,
problem, solution) -> Result``; a rate claim also has ``series``, the bound per step for the
figures. The quantities and the bounds, each written once, are ``proofs_check.quantities``.

A module per family of the spec: ``pssps`` (A), ``psdasgd`` (B), ``baselines`` (C, L), each
claim a class on ``base.Claim``; this module is the registry (``CLAIMS``, ``check``,
``bound_series``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paramscale.proofs_check.claims.base import Claim
from paramscale.proofs_check.claims.baselines import (
    NesterovLowerBound,
    SPSRateIdentity,
    SubgradientRate,
)
from paramscale.proofs_check.claims.psdasgd import (
    CodeDistanceEstimate,
    DBounded,
    DecayingScheduleRate,
    DistanceLowerBound,
    DNonDecreasing,
    TransportedLowerBound,
    WeightedAverageRate,
)
from paramscale.proofs_check.claims.pssps import (
    AMSGradMonotoneBounded,
    MetricChange,
    NonMonotoneGrowth,
    ProductBound,
    SPSOneStep,
    SPSRate,
)
from paramscale.proofs_check.quantities import Result

__all__ = ["Claim", "Result", "CLAIMS", "check", "bound_series"]

CLAIMS: dict[str, Claim] = {
    c.id: c
    for c in (
        AMSGradMonotoneBounded(),
        SPSOneStep(),
        MetricChange(),
        ProductBound(),
        SPSRate(),
        NonMonotoneGrowth(),
        DNonDecreasing(),
        WeightedAverageRate(),
        DBounded(),
        DistanceLowerBound(),
        CodeDistanceEstimate(),
        TransportedLowerBound(),
        DecayingScheduleRate(),
        SPSRateIdentity(),
        SubgradientRate(),
        NesterovLowerBound(),
    )  # fmt: skip
}


def check(claim_id: str, trajectory: Any, problem: Any, solution: Any) -> Result:
    """Evaluate one claim on a recorded trajectory (docs/spec.md section 9)."""
    if claim_id not in CLAIMS:
        raise ValueError(f"Invalid claim_id: {claim_id!r} (expected one of {tuple(CLAIMS)})")
    return CLAIMS[claim_id].check(trajectory, problem, solution)


def bound_series(claim_id: str, traj: Any, problem: Any, solution: Any) -> dict[str, np.ndarray]:
    """The quantity a rate claim bounds and its bound, per step K = 1.. (for figures): A5
    and C1 bound the best-so-far gap, B2 the weighted average's gap, C2 the best gap at the
    final K only."""
    claim = CLAIMS.get(claim_id)
    if not hasattr(claim, "series"):
        rates = [c.id for c in CLAIMS.values() if hasattr(c, "series")]
        raise ValueError(f"Invalid claim_id: {claim_id!r} (expected one of {', '.join(rates)})")
    return claim.series(traj, problem, solution)
