"""Any step-size rule written for SGD runs in the scaled space on every torch path, through
one declared interface (``theory.stepsize.StepRule``), with no edit under ``torch_impl``:

- a rule defined in this file only (Polyak's step with f* estimated by the lowest loss seen,
  less a margin) equals its NumPy run on the per-tensor, foreach and fused paths;
- PS-DoG and PS-DoWG equal their NumPy references on every path; with identity scaling
  PS-DoG is ``dog.DoG`` on an MLP, and DoWG is optax's ``scale_by_dowg`` (written out here
  from optax's code; docs/baselines.md section 15 has the run against optax itself).

The Triton path runs the same comparisons in tests/test_torch_fused_triton.py.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pytest
import torch

from paramscale import synthetic, theory
from paramscale import torch_impl as T
from paramscale.theory import optimizers as O
from paramscale.theory import scaling as S
from paramscale.theory.stepsize import StepRule, dog_step, dowg_step
from tests.oracle import max_rel_dev, oracle_trajectory
from tests.test_torch_optimizer import digits_mlp, flat


class LowestLoss(NamedTuple):
    low: float = math.inf  # the lowest loss seen


@dataclass(frozen=True)
class lowest_loss_polyak(StepRule):
    """Polyak's step with f* unknown: estimated as the lowest loss seen so far, less
    ``margin`` times its size, capped at ``eta_max`` (a user's rule: nothing of it is in
    the library)."""

    margin: float = 0.5
    eta_max: float = 1.0
    needs_loss = True

    def init_scalars(self) -> LowestLoss:
        return LowestLoss()

    def reductions(self, scalars, k):
        return frozenset({"scaled_grad_sq"})

    def step(self, scalars, sums):
        low = min(scalars.low, sums["loss"])
        f_star = low - self.margin * abs(low)
        gsq = sums["scaled_grad_sq"]
        lam = 0.0 if gsq == 0 else min((sums["loss"] - f_star) / gsq, self.eta_max)
        return lam, LowestLoss(low)


PATHS = {"per-tensor": {"foreach": False}, "foreach": {}, "fused": {"fused": True}}
RULES = {
    "lowest-loss-polyak": lambda: lowest_loss_polyak(),
    "ps-dog": lambda: dog_step(reps_rel=1e-3),  # moves within the test's steps
    "ps-dowg": lambda: dowg_step(),
}
PROBLEM = synthetic.logistic(m=30, n=7, scale=1.0, seed=2)
X0 = np.linspace(-0.5, 0.5, PROBLEM.n)
STEPS = 60


def numpy_and_torch(rule, path, scaling="adam", momentum=0.9, device="cpu"):
    """(NumPy trajectory, torch trajectory) of ``rule`` in ``scaling``'s space, float64, the
    torch gradients computed at its own iterates (``tests.oracle``)."""
    ours = theory.run(theory.optimizers.parameter_scaled(rule, S.by_name(scaling), momentum),
                      PROBLEM, x0=X0, iters=STEPS).x  # fmt: skip
    got = oracle_trajectory(
        lambda ps: T.ParameterScaled(ps, rule, scaling, momentum=momentum, **path),
        PROBLEM, X0, STEPS, needs_loss=True, device=device,
    )  # fmt: skip
    return ours, got


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name", list(RULES))
def test_a_step_rule_equals_its_numpy_run_on_every_path(name, path):
    """1e-9 relative in float64 (measured: 1e-15 to 1e-13); the rule moves the iterate (a
    frozen step would agree trivially)."""
    ours, got = numpy_and_torch(RULES[name](), PATHS[path])
    assert max_rel_dev(got, ours) <= 1e-9
    assert np.linalg.norm(ours[-1] - ours[0]) > 1e-2


def test_a_planted_difference_in_the_rule_is_caught():
    """The comparison above is not vacuous: the rule with another margin on the torch side
    moves it far beyond the tolerance."""
    ours, _ = numpy_and_torch(lowest_loss_polyak(), {})
    _, other = numpy_and_torch(lowest_loss_polyak(margin=0.6), {})
    assert max_rel_dev(other, ours) > 1e-4


def test_psdog_with_identity_scaling_is_the_official_dog_on_an_mlp():
    """``PSDoG(scaling="identity")`` against ``dog.DoG`` (dog-optimizer 1.0.3, defaults) on
    the digits MLP, 200 steps in float64: 1e-6 relative (measured ~1e-14)."""
    dog = pytest.importorskip("dog")
    runs = []
    for make in (lambda ps: T.PSDoG(ps, scaling="identity"), lambda ps: dog.DoG(ps)):
        model, X, y = digits_mlp(torch.float64)
        opt = make(model.parameters())
        gen = torch.Generator().manual_seed(0)
        for _ in range(200):
            idx = torch.randint(0, len(y), (64,), generator=gen)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
        runs.append(flat(model))
    assert max_rel_dev(runs[0], runs[1]) <= 1e-6
    assert np.linalg.norm(runs[0]) > 0


def optax_dowg(problem, x0, steps, eps=1e-4):
    """optax 0.2's ``scale_by_dowg`` (contrib/_dowg.py, ``init_estim_sq_dist=None``) with
    ``learning_rate=1``, written out: estim_sq_dist = max(estim, ||x0 - x||^2); weighted +=
    estim ||g||^2; x -= estim / (sqrt(weighted) + eps) g."""
    x, estim, weighted, xs = x0.copy(), eps, 0.0, [x0.copy()]
    for _ in range(steps):
        g = problem.grad(x)
        estim = max(estim, float(np.sum((x0 - x) ** 2)))
        weighted = estim * float(g @ g) + weighted
        x = x - estim / (math.sqrt(weighted) + eps) * g
        xs.append(x.copy())
    return np.array(xs)


def test_dowg_with_identity_scaling_is_optax_dowg():
    ours = theory.run(O.dowg(), PROBLEM, x0=X0, iters=STEPS).x
    assert max_rel_dev(ours, optax_dowg(PROBLEM, X0, STEPS)) <= 1e-12


def test_the_thesis_step_rules_keep_uniform_scale_invariance():
    """Principle (i) for the new rules: every alpha times 1000 leaves the iterates of PS-DoG
    and PS-DoWG unchanged (their starting values are measured in the scaled metric)."""
    for make in (dog_step, dowg_step):
        runs = [
            theory.run(theory.optimizers.parameter_scaled(make(), rule), PROBLEM, x0=X0,
                       iters=STEPS).x
            for rule in (S.adam(), S.step_scaled(S.adam(), (1000.0,)))
        ]  # fmt: skip
        assert max_rel_dev(runs[1], runs[0]) <= 1e-9, make.__name__
