"""The named methods: ``ParameterScaled`` with a step-size rule of ``theory.stepsize`` and
its options as constructor arguments (docs/spec.md sections 3 and 9). The one place in
``torch_impl`` that names a rule: a new method is a class here, its rule in ``theory``.

    PSSPS    PS-SPS (paper Alg. 1)          polyak;    scaling="identity": SPS
    PSDASGD  PS-DA-SGD (paper Alg. 2)       dadapt;    scaling="identity": D-Adapt SGD
    PSDoG    DoG in the scaled metric       dog_step;  scaling="identity": dog.DoG
    PSDoWG   DoWG in the scaled metric      dowg_step; scaling="identity": optax's DoWG
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

from paramscale.theory.stepsize import dadapt, dog_step, dowg_step, polyak
from paramscale.torch_impl.optimizer import ParameterScaled

__all__ = ["PSSPS", "PSDASGD", "PSDoG", "PSDoWG"]


class PSSPS(ParameterScaled):
    """PS-SPS (paper Alg. 1, docs/spec.md 3.1): ``eta = min((f - f*)/(c ||g/alpha||^2),
    eta_max)``; ``scaling="identity"`` is SPS. Needs the loss: ``step(closure)`` or
    ``step(loss=...)``. ``c = 1`` as ``theory.optimizers.ps_sps`` (the reason there).

    ``eta_max`` (default inf) caps the step, in the units of ``effective_lr`` (Adam's lr
    with Adam scaling). Uncapped, the step is ``(f - f*) / (c ||g'||^2)``: large wherever
    the loss stays far above ``f*`` while the gradient is small (``f* = 0`` for a loss that
    cannot reach 0). A ``RuntimeWarning`` says so when it is left unbounded: on the
    sequence task of ``paramscale train`` the uncapped step reaches 0.1-0.4 and the model
    learns nothing, with ``eta_max=0.01`` it learns the task (docs/findings.md).
    ``options``: ``momentum``, ``first_moment``, ``weight_decay``, ``foreach``, ``fused``,
    ``skip_nonfinite``, ``sharded``, ``process_group`` (docs/torch.md, "Arguments")."""

    def __init__(
        self,
        params: Iterable[Any],
        f_star: float = 0.0,
        c: float = 1.0,
        eta_max: float = math.inf,
        scaling: str | Any = "adam",
        lr: float = 1.0,
        *,
        f_star_tol: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(params, polyak(f_star, c, eta_max, f_star_tol), scaling, lr, **options)
        if self.step_rule.eta_max == math.inf:  # the groups may have set it
            warnings.warn(
                "PSSPS: eta_max=inf leaves the Polyak step unbounded where f - f* stays large "
                "and the gradient small (f* = 0 on a loss that cannot reach 0); pass eta_max, "
                "a cap in the units of effective_lr, to bound it",
                RuntimeWarning,
                stacklevel=2,
            )


class PSDASGD(ParameterScaled):
    """PS-DA-SGD (paper Alg. 2; docs/spec.md, PS-DA-SGD); ``scaling="identity"`` is D-Adapt
    SGD (``dadaptation.DAdaptSGD``). Defaults are the paper's: Adam scaling, momentum 0.9.
    ``transfer`` and ``normaliser``: as ``theory.stepsize.dadapt`` (docs/spec.md).
    ``options``: ``first_moment``, ``weight_decay``, ``maximize``, ``foreach``, ``fused``,
    ``skip_nonfinite``, ``sharded``, ``process_group`` (docs/torch.md, "Arguments")."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        d0: float = 1e-6,
        scaling: str | Any = "adam",
        momentum: float = 0.9,
        growth_rate: float = math.inf,
        *,
        dhat: str = "code",
        transfer: str = "min_active",
        normaliser: str = "g0/alpha_0",
        **options: Any,
    ) -> None:
        step = dadapt(d0, None, growth_rate, dhat, transfer, normaliser)
        super().__init__(params, step, scaling, lr, momentum, **options)


class PSDoG(ParameterScaled):
    """PS-DoG: DoG's step size (Ivgi et al. 2023) with distances and gradient norms in the
    scaled metric (``theory.stepsize.dog_step``); ``scaling="identity"`` is ``dog.DoG``.
    ``lr`` multiplies DoG's step as the group lr (DoG's own ``lr``, default 1); no
    momentum by default, as DoG. ``options``: as ``PSDASGD``'s."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        reps_rel: float = 1e-6,
        eps: float = 1e-8,
        scaling: str | Any = "adam",
        momentum: float = 0.0,
        *,
        transfer: str = "none",
        **options: Any,
    ) -> None:
        step = dog_step(1.0, reps_rel, eps, transfer)
        super().__init__(params, step, scaling, lr, momentum, **options)


class PSDoWG(ParameterScaled):
    """PS-DoWG: DoWG's step size (Khaled et al. 2023) with distances and gradient norms in
    the scaled metric (``theory.stepsize.dowg_step``); ``scaling="identity"`` is optax's
    ``contrib.dowg``. ``lr`` multiplies the step as the group lr. ``options``: as
    ``PSDASGD``'s."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        eps: float = 1e-4,
        init_sq_dist: float | None = None,
        scaling: str | Any = "adam",
        momentum: float = 0.0,
        *,
        transfer: str = "none",
        **options: Any,
    ) -> None:
        step = dowg_step(eps, init_sq_dist, transfer)
        super().__init__(params, step, scaling, lr, momentum, **options)
