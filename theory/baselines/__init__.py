"""The paper's baselines and today's learning-rate-free methods, as the official code
computes them (oracles in tests/test_baselines.py), a module per family: ``distance``
(DoG, DoWG, LDoG), ``coin_betting`` (COCOB), ``d_adaptation`` (D-Adapt Adam, Prodigy),
``averaging`` (schedule-free), ``tuner`` (Mechanic). EG step-size adaptation, the
project's own variants included, is ``theory.eg`` (its ``eg_stepsize`` is importable from
here too).

Every optimizer has ``init(x0) -> state`` and ``step(state, x, loss, grad) -> (x_next,
state, info)``; ``info["lr"]`` is its learning-rate estimate at that step and ``info["d"]``
its distance estimate where it has one. Which ones decompose as a step-size rule in scaled
space, and so are built with ``parameter_scaled``: DoG and DoWG (``theory.stepsize``'s
``dog_step``, ``dowg_step`` + identity) and
schedule-free (its averaging around any scaling rule). The others keep per-layer,
per-coordinate or lambda-weighted state and are plain optimizers.

Edge cases (docs/baselines.md section 14): a zero first gradient is harmless for DoG (``eps``
enters ``G`` once), D-Adapt Adam and Prodigy (no move, ``k`` not advanced, as the official
code does) and COCOB (no move). Weight decay is not offered: the paper runs without it
(Table 3), and an unsupported value is better absent than silently different.
"""

from paramscale.theory.baselines.averaging import (
    schedule_free,
    schedule_free_adam,
    schedule_free_sgd,
)
from paramscale.theory.baselines.coin_betting import cocob
from paramscale.theory.baselines.d_adaptation import dadapt_adam, prodigy
from paramscale.theory.baselines.distance import dog, dowg, ldog
from paramscale.theory.baselines.tuner import mechanic
from paramscale.theory.eg import EG_EXPONENTS, EGState, eg_exponents, eg_stepsize
from paramscale.theory.stepsize import dog_step, dowg_step

__all__ = [
    "dog",
    "ldog",
    "dog_step",
    "dowg",
    "dowg_step",
    "cocob",
    "dadapt_adam",
    "prodigy",
    "schedule_free_sgd",
    "schedule_free_adam",
    "schedule_free",
    "mechanic",
    "eg_stepsize",
    "eg_exponents",
    "EGState",
    "EG_EXPONENTS",
]
