"""What every claim is (``Claim``: statement, kind, assumptions, ``applies``,
``evaluate``), and which runs the PS-SPS and D-Adaptation claims speak of."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from paramscale.proofs_check import quantities
from paramscale.proofs_check.quantities import Result
from paramscale.theory.stepsize import dadapt, polyak


class Claim:
    """A claim of docs/spec.md section 4."""

    id: ClassVar[str]
    kind: ClassVar[str]  # "theorem" | "conjecture"
    assumptions: ClassVar[str]

    @property
    def statement(self) -> str:
        return " ".join((type(self).__doc__ or "").split("\n\n")[0].split())

    def applies(self, traj: Any, problem: Any) -> bool:
        return True

    def evaluate(self, traj: Any, problem: Any, solution: Any) -> Result:
        raise NotImplementedError

    def check(self, trajectory: Any, problem: Any, solution: Any) -> Result:
        if not self.applies(trajectory, problem):
            raise ValueError(
                f"Claim {self.id} does not apply to {trajectory.optimizer!r} on "
                f"{problem.name!r} (assumptions: {self.assumptions})"
            )
        return self.evaluate(trajectory, problem, solution)


def _is_pssps(traj: Any) -> bool:
    """PS-SPS with c > 1/2 and no cap, no momentum (A2, A5, A6, C1)."""
    rule = quantities.step_rule(traj)
    return (
        quantities.is_plain(traj)
        and isinstance(rule, polyak)
        and rule.c > 0.5
        and rule.eta_max == math.inf
    )


def _is_dadapt(traj: Any) -> bool:
    return isinstance(quantities.step_rule(traj), dadapt)
