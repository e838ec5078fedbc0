"""The catalogue of ``paramscale train --list`` (``FAMILIES``): the tuned baselines (a
learning-rate grid), this project's optimizers and the official packages of the
learning-rate-free baselines, each a few declarative lines, with how each builds its
optimizer and reads its effective learning rate; ``DEFAULT``, the methods of a run that
names none."""

from __future__ import annotations

import importlib
import math
from typing import Any

import torch

from paramscale.loading import RuleInputError
from paramscale.train.family import (
    ADAM_GRID,
    QUICK_SGD_GRID,
    SGD_GRID,
    Family,
    Optimizer,
    d_times_lr,
    grid_builder,
    group_lr,
    single_builder,
)


def _ps_units(options: dict[str, Any]) -> str:
    """PS-* steps are in Adam units when the scaling rule is Adam-like (alpha**2 =
    sqrt(v) + eps), in SGD's with identity scaling, else in the rule's own units."""
    rule = str(options.get("scaling", "adam"))
    if rule in ("adam", "amsgrad", "rmsprop", "adagrad"):
        return "adam"
    if rule == "identity":
        return "sgd"
    return rule.rsplit(":", 1)[-1]  # a user's rule: its own units


def _effective_lr(opt: Optimizer) -> float:
    return float(opt.param_groups[0]["effective_lr"])


def _with_rule(options: dict[str, Any]) -> dict[str, Any]:
    """``scaling=module:attr`` or ``scaling=path/to/file.py:attr``: a user's rule object
    (``paramscale validate-rule --train``); a name stays a name."""
    rule = options.get("scaling")
    if isinstance(rule, str) and ":" in rule:
        from paramscale.loading import load_rule

        return {**options, "scaling": load_rule(rule)}
    return options


def _pssps(ps: Any, options: dict[str, Any]) -> Optimizer:
    from paramscale import torch_impl

    return torch_impl.PSSPS(ps, **{"f_star": 0.0, **_with_rule(options)})


def _psdasgd(ps: Any, options: dict[str, Any]) -> Optimizer:
    from paramscale import torch_impl

    return torch_impl.PSDASGD(ps, **_with_rule(options))


def _psdog(ps: Any, options: dict[str, Any]) -> Optimizer:
    from paramscale import torch_impl

    return torch_impl.PSDoG(ps, **_with_rule(options))


def _psdowg(ps: Any, options: dict[str, Any]) -> Optimizer:
    from paramscale import torch_impl

    return torch_impl.PSDoWG(ps, **_with_rule(options))


def _ps(ps: Any, options: dict[str, Any]) -> Optimizer:
    """Any step-size rule (``step=module:attr``, a ``theory.stepsize.StepRule``) in any
    scaling (default Adam), no momentum: a user's rule on the networks."""
    from paramscale import torch_impl
    from paramscale.loading import load_rule
    from paramscale.theory.stepsize import StepRule

    options = _with_rule({"scaling": "adam", **options})
    if "step" not in options:
        raise ValueError("PS needs step=module:attr (a theory.stepsize.StepRule)")
    step = load_rule(str(options.pop("step")))
    if not isinstance(step, StepRule):
        raise RuleInputError(f"{step!r} is not a theory.stepsize.StepRule")
    return torch_impl.ParameterScaled(ps, step, **options)


def _psconst(ps: Any, lr: float, options: dict[str, Any]) -> Optimizer:
    """PS-DA-SGD's update with a constant step: the reference its step estimate is judged
    against (the best of this grid)."""
    from paramscale import torch_impl
    from paramscale.theory.stepsize import constant

    opts = {"scaling": "adam", "momentum": 0.9, **options}
    return torch_impl.ParameterScaled(ps, constant(lr), **opts)


def _dog_lr(opt: Optimizer) -> float:
    eta = opt.param_groups[0].get("eta")
    if not eta:
        return math.nan
    values = torch.stack([torch.as_tensor(e, dtype=torch.float64).reshape(()) for e in eta])
    return float(values.log().mean().exp())  # LDoG: geometric mean over layers


def _mechanic(ps: Any, options: dict[str, Any]) -> Optimizer:
    from mechanic_pytorch import mechanize

    return mechanize(torch.optim.Adam)(ps, **{"lr": 1.0, **options})


def _mechanic_lr(opt: Optimizer) -> float:
    state = opt.state.get("_mechanic")
    scale = 0.0 if state is None else float(state["s"].sum())
    return scale * group_lr(opt)


def _eg(ps: Any, options: dict[str, Any]) -> Optimizer:
    from paramscale import torch_impl

    return torch_impl.EGStepSize(ps, **{"base": "adam", "lr": 1e-3, **options})


def _eg_lr(opt: Optimizer) -> float:
    return float(opt.stats()["lr"])


def _sf_lr(opt: Optimizer) -> float:
    group = opt.param_groups[0]
    return float(group.get("scheduled_lr", group["lr"]))


FAMILIES: dict[str, Family] = {
    f.name.lower(): f
    for f in (
        Family(
            "adam",
            "torch.optim.Adam over its lr grid 1e-4..1e-1 (half decades): the tuned baseline",
            grid_builder(
                "adam", lambda ps, lr, o: torch.optim.Adam(ps, lr=lr, **o), "adam", ADAM_GRID
            ),
        ),
        Family(
            "amsgrad",
            "torch.optim.Adam(amsgrad=True) over the same grid (for validate-rule --train)",
            grid_builder(
                "amsgrad",
                lambda ps, lr, o: torch.optim.Adam(ps, lr=lr, amsgrad=True, **o),
                "adam",
                ADAM_GRID,
            ),
        ),
        Family(
            "sgd",
            "torch.optim.SGD(momentum=0.9) over its lr grid 1e-3..1 (half decades; quick: decades)",
            grid_builder(
                "sgd",
                lambda ps, lr, o: torch.optim.SGD(ps, lr=lr, **{"momentum": 0.9, **o}),
                "sgd",
                SGD_GRID,
                QUICK_SGD_GRID,
            ),
        ),
        Family(
            "PSconst",
            "PS-DA-SGD's update (Adam scaling, momentum 0.9) with a constant step, over the "
            "Adam grid: the reference for PS-DA-SGD's estimated step (paramscale study)",
            grid_builder("PSconst", _psconst, "adam", ADAM_GRID, effective_lr=_effective_lr),
        ),
        Family(
            "PSSPS",
            "this project's PS-SPS (torch_impl.PSSPS, f*=0, Adam scaling)",
            single_builder("PSSPS", _pssps, _effective_lr, _ps_units, needs_loss=True),
        ),
        Family(
            "PSDASGD",
            "this project's PS-DA-SGD (torch_impl.PSDASGD, defaults; variants by options, "
            "e.g. PSDASGD[transfer=max])",
            single_builder("PSDASGD", _psdasgd, _effective_lr, _ps_units),
        ),
        Family(
            "PSDoG",
            "DoG's step in the scaled metric (torch_impl.PSDoG, Adam scaling; "
            "PSDoG[scaling=identity] is DoG)",
            single_builder("PSDoG", _psdog, _effective_lr, _ps_units),
        ),
        Family(
            "PSDoWG",
            "DoWG's step in the scaled metric (torch_impl.PSDoWG, Adam scaling; "
            "PSDoWG[scaling=identity] is optax's DoWG)",
            single_builder("PSDoWG", _psdowg, _effective_lr, _ps_units),
        ),
        Family(
            "PS",
            "any step-size rule in any scaling: PS[step=module:attr,scaling=adam] (a "
            "theory.stepsize.StepRule; validate-rule --train)",
            # the loss goes to the step: the rule may read it
            single_builder("PS", _ps, _effective_lr, _ps_units, needs_loss=True),
        ),
        Family(
            "DAdaptAdam",
            "dadaptation.DAdaptAdam (official package, defaults)",
            single_builder(
                "DAdaptAdam",
                lambda ps, o: importlib.import_module("dadaptation").DAdaptAdam(ps, **o),
                d_times_lr,
                "adam",
            ),
            package="dadaptation",
        ),
        Family(
            "Prodigy",
            "prodigyopt.Prodigy (official package, defaults)",
            single_builder(
                "Prodigy",
                lambda ps, o: importlib.import_module("prodigyopt").Prodigy(ps, **o),
                d_times_lr,
                "adam",
            ),
            package="prodigyopt",
        ),
        Family(
            "DoG",
            "dog.DoG (official package, defaults, last iterate: no averaging)",
            single_builder(
                "DoG", lambda ps, o: importlib.import_module("dog").DoG(ps, **o), _dog_lr, "sgd"
            ),
            package="dog",
        ),
        Family(
            "LDoG",
            "dog.LDoG (official package, defaults; lr: geometric mean over layers)",
            single_builder(
                "LDoG", lambda ps, o: importlib.import_module("dog").LDoG(ps, **o), _dog_lr, "sgd"
            ),
            package="dog",
        ),
        Family(
            "SFAdamW",
            "schedulefree.AdamWScheduleFree (official package, defaults: lr 0.0025)",
            single_builder(
                "SFAdamW",
                lambda ps, o: importlib.import_module("schedulefree").AdamWScheduleFree(ps, **o),
                _sf_lr,
                "adam",
                schedule_free=True,
            ),
            package="schedulefree",
        ),
        Family(
            "Mechanic",
            "mechanic_pytorch.mechanize(torch.optim.Adam) (official package, lr 1)",
            single_builder("Mechanic", _mechanic, _mechanic_lr, "adam"),
            package="mechanic_pytorch",
        ),
        Family(
            "COCOB",
            "parameterfree.COCOB (official package, defaults; no step size to report)",
            single_builder(
                "COCOB",
                lambda ps, o: importlib.import_module("parameterfree").COCOB(ps, **o),
                lambda opt: math.nan,
                "none",
            ),
            package="parameterfree",
        ),
        Family(
            "EGAdam",
            "EG step-size adaptation (Amid et al.) on top of Adam (torch_impl.EGStepSize, "
            "base='adam', lr 1e-3; unverified equations, docs/spec.md)",
            single_builder("EGAdam", _eg, _eg_lr, "adam"),
        ),
    )
}
DEFAULT = (
    "adam", "sgd", "PSSPS", "PSDASGD", "DAdaptAdam", "Prodigy", "DoG", "LDoG", "SFAdamW",
    "Mechanic", "COCOB", "EGAdam",
)  # fmt: skip
