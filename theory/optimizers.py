"""Named optimizers, each one line of ``parameter_scaled`` (docs/spec.md sections 2, 3, 9).

Hyperparameter defaults are the official ones: ``torch.optim`` for sgd / adam / amsgrad /
adagrad / rmsprop, ``dadaptation.DAdaptSGD`` for dadapt_sgd, Loizou et al. for SPS.
"""

from __future__ import annotations

import math

from paramscale.theory import _validate as check
from paramscale.theory import scaling as rules
from paramscale.theory.baselines import (
    cocob,
    dadapt_adam,
    dog,
    dowg,
    ldog,
    mechanic,
    prodigy,
    schedule_free,
    schedule_free_adam,
    schedule_free_sgd,
)
from paramscale.theory.combinator import ParameterScaled, parameter_scaled
from paramscale.theory.eg import eg_stepsize
from paramscale.theory.scaling import ScalingRule
from paramscale.theory.stepsize import Schedule, constant, dadapt, dog_step, dowg_step, polyak

__all__ = [
    "ParameterScaled",
    "parameter_scaled",
    "constant",
    "polyak",
    "dadapt",
    "sgd",
    "sps",
    "ps_sps",
    "dadapt_sgd",
    "ps_dadapt_sgd",
    "adam",
    "amsgrad",
    "adagrad",
    "rmsprop",
    "dog",
    "dog_step",
    "ps_dog",
    "dowg",
    "dowg_step",
    "ps_dowg",
    "ldog",
    "cocob",
    "dadapt_adam",
    "prodigy",
    "eg_stepsize",
    "schedule_free_sgd",
    "schedule_free_adam",
    "schedule_free",
    "mechanic",
]


def sgd(
    lr: float = 1e-3, momentum: float = 0.0, schedule: Schedule | None = None
) -> ParameterScaled:
    """torch.optim.SGD. Heavy-ball momentum mu is primal averaging with step lr / (1 - mu)
    (docs/baselines.md section 1: ``x_{k+1} = x_k + mu (x_k - x_{k-1}) - (1-mu) lam g_k``)."""
    check.non_negative("lr", lr)
    check.unit_interval("momentum", momentum)
    return parameter_scaled(
        constant(lr / (1 - momentum), schedule), rules.identity(), momentum, name="sgd"
    )


def ps_sps(
    f_star: float,
    c: float = 1.0,
    eta_max: float = math.inf,
    scaling: ScalingRule | str = "adam",
    f_star_tol: float = 0.0,
) -> ParameterScaled:
    """PS-SPS (paper Alg. 1, docs/spec.md 3.1): SPS run in the space scaled by ``scaling``.
    ``c = 1``: the deterministic theorem (claims A2, A5) needs ``c > 1/2`` and its rate
    constant ``kappa = (2c - 1) / c**2`` is largest at 1; on the convex suite (400 steps,
    Adam scaling) it ends 15x closer to f* than ``c = 0.5`` (geometric mean; docs/findings.md).
    Loizou et al.'s stochastic ``c = 0.5`` is ``c=0.5``; ``sps`` keeps their default."""
    rule = rules.by_name(scaling)
    return parameter_scaled(
        polyak(f_star, c, eta_max, f_star_tol), rule, name=f"ps_sps[{rule.name}]"
    )


def sps(
    f_star: float, c: float = 0.5, eta_max: float = math.inf, f_star_tol: float = 0.0
) -> ParameterScaled:
    """SPS_max of Loizou et al. 2021 (``Sps(adapt_flag='constant', eps=0)``): PS-SPS with
    identity scaling."""
    return parameter_scaled(polyak(f_star, c, eta_max, f_star_tol), rules.identity(), name="sps")


def ps_dadapt_sgd(
    d0: float = 1e-6,
    schedule: Schedule | None = None,
    momentum: float = 0.9,
    scaling: ScalingRule | str = "adam",
    growth_rate: float = math.inf,
    dhat: str = "code",
    transfer: str = "min_active",
    normaliser: str = "g0/alpha_0",
) -> ParameterScaled:
    """PS-DA-SGD (paper Alg. 2; docs/spec.md, "PS-DA-SGD"). Defaults: the paper's (Adam
    scaling, momentum 0.9, d0 = 1e-6, constant schedule); ``transfer`` and ``normaliser``
    as ``theory.stepsize.dadapt``."""
    rule = rules.by_name(scaling)
    step = dadapt(d0, schedule, growth_rate, dhat, transfer, normaliser)
    return parameter_scaled(step, rule, momentum, name=f"ps_dadapt_sgd[{rule.name}]")


def ps_dog(
    lr: float = 1.0,
    reps_rel: float = 1e-6,
    eps: float = 1e-8,
    scaling: ScalingRule | str = "adam",
    momentum: float = 0.0,
    transfer: str = "none",
) -> ParameterScaled:
    """PS-DoG: DoG's step size (``theory.stepsize.dog_step``) with distances and gradient
    norms in the scaled metric; ``scaling="identity"`` is DoG (``dog.DoG``)."""
    rule = rules.by_name(scaling)
    step = dog_step(lr, reps_rel, eps, transfer)
    return parameter_scaled(step, rule, momentum, name=f"ps_dog[{rule.name}]")


def ps_dowg(
    eps: float = 1e-4,
    init_sq_dist: float | None = None,
    scaling: ScalingRule | str = "adam",
    momentum: float = 0.0,
    transfer: str = "none",
) -> ParameterScaled:
    """PS-DoWG: DoWG's step size (``theory.stepsize.dowg_step``) with distances and gradient
    norms in the scaled metric; ``scaling="identity"`` is DoWG (optax's ``contrib.dowg``)."""
    rule = rules.by_name(scaling)
    step = dowg_step(eps, init_sq_dist, transfer)
    return parameter_scaled(step, rule, momentum, name=f"ps_dowg[{rule.name}]")


def dadapt_sgd(
    d0: float = 1e-6,
    schedule: Schedule | None = None,
    momentum: float = 0.0,
    growth_rate: float = math.inf,
) -> ParameterScaled:
    """``dadaptation.DAdaptSGD`` (v3.2; defaults momentum 0, d0 1e-6): PS-DA-SGD with
    identity scaling."""
    step = dadapt(d0, schedule, growth_rate)
    return parameter_scaled(step, rules.identity(), momentum, name="dadapt_sgd")


def adam(
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    schedule: Schedule | None = None,
) -> ParameterScaled:
    """torch.optim.Adam: ``x -= lr * mhat / alpha**2``, the Adam rule (docs/spec.md section 2)."""
    b1 = _beta1(betas)
    return parameter_scaled(
        constant(lr, schedule), rules.adam(betas[1], eps), first_moment=b1, name="adam"
    )


def amsgrad(
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    form: str = "monotone",
    schedule: Schedule | None = None,
) -> ParameterScaled:
    """AMSGrad; ``form="torch"`` is ``torch.optim.Adam(amsgrad=True)`` (not monotone),
    ``form="monotone"`` the docs/spec.md's rule (max after bias correction)."""
    b1 = _beta1(betas)
    rule = rules.amsgrad(betas[1], eps, form)
    return parameter_scaled(constant(lr, schedule), rule, first_moment=b1, name=f"amsgrad[{form}]")


def adagrad(
    lr: float = 1e-2,
    eps: float = 1e-10,
    initial_accumulator_value: float = 0.0,
    schedule: Schedule | None = None,
) -> ParameterScaled:
    """torch.optim.Adagrad (lr_decay = 0)."""
    rule = rules.adagrad(eps, initial_accumulator_value)
    return parameter_scaled(constant(lr, schedule), rule, name="adagrad")


def rmsprop(
    lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, schedule: Schedule | None = None
) -> ParameterScaled:
    """torch.optim.RMSprop (not centered, no momentum); ``alpha`` is torch's smoothing
    constant, our ``beta2``."""
    return parameter_scaled(constant(lr, schedule), rules.rmsprop(alpha, eps), name="rmsprop")


def _beta1(betas: tuple[float, float]) -> float:
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise ValueError(f"Invalid betas: {betas!r} (expected a pair (beta1, beta2))")
    return check.unit_interval("beta1", betas[0])
