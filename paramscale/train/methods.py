"""The methods of ``paramscale train``: tuned baselines (a learning-rate grid), this
project's optimizers, and the official packages of the learning-rate-free baselines.

A method spec is a name with optional options in brackets: ``adam`` (its whole grid),
``adam[lr=0.003]`` (one point), ``PSDASGD[transfer=min,scaling=amsgrad]`` (keyword
arguments of the constructor; values that parse as numbers are numbers). Names are
matched without regard to case.

Each method reports its effective learning rate at every logged step, with its units:
``adam`` (a coordinate moves by it times an Adam-like normalised direction
``mhat / (sqrt(vhat) + eps)``: comparable with Adam's lr), ``sgd`` (times the raw
gradient) or ``none`` (no single step size: COCOB's per-coordinate bets).

Longer than the project's ~400 lines: the catalogue of every method (``FAMILIES``), each a
few declarative lines, beside the spec parser that reads it; split, the two would only
import each other.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from paramscale.loading import RuleInputError

__all__ = ["Method", "Family", "FAMILIES", "parse", "expand", "rebuild", "ADAM_GRID", "SGD_GRID"]

Optimizer = torch.optim.Optimizer
ADAM_GRID = tuple(10 ** (e / 2) for e in range(-8, -1))  # 1e-4 ... 1e-1, half decades
SGD_GRID = tuple(10 ** (e / 2) for e in range(-6, 1))  # 1e-3 ... 1, half decades
QUICK_SGD_GRID = SGD_GRID[::2]  # 1e-3, 1e-2, 1e-1, 1: decades


@dataclass(frozen=True)
class Method:
    """One configured method: ``name`` (its spec, as written in the CSV), its ``family``,
    ``make(params) -> optimizer``, ``effective_lr(optimizer) -> float``, its ``units``,
    whether ``step`` needs the loss, whether it is schedule-free (``train()``/``eval()``),
    and ``grid_lr``: its constant learning rate when it is a point of a tuned grid."""

    name: str
    family: str
    options: dict[str, Any]
    make: Callable[[Iterable[torch.nn.Parameter]], Optimizer]
    effective_lr: Callable[[Optimizer], float]
    units: str
    needs_loss: bool = False
    schedule_free: bool = False
    grid_lr: float | None = None

    @property
    def key(self) -> tuple[str, tuple]:
        """What rebuilds it in another process (``rebuild``): family and options."""
        return self.family, tuple(self.options.items())


@dataclass(frozen=True)
class Family:
    """A method family of ``--list``: ``build(options, quick) -> [Method]`` (a grid family
    builds one method per learning rate), the package it needs, and one line of help."""

    name: str
    what: str
    build: Callable[[dict[str, Any], bool], list[Method]]
    package: str = ""
    options: tuple[str, ...] = field(default=())

    def missing(self) -> str:
        """Why the family cannot run here ('' when it can)."""
        if not self.package:
            return ""
        try:
            importlib.import_module(self.package)
        except ImportError:
            return f"package {self.package!r} not installed (pip install paramscale[test])"
        return ""


def _group_lr(opt: Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def _d_times_lr(opt: Optimizer) -> float:
    group = opt.param_groups[0]
    return float(group["d"]) * float(group["lr"])


def spec_name(name: str, options: dict[str, Any]) -> str:
    """A method spec as the CSV writes it: ``name[key=value,...]``."""
    if not options:
        return name
    return f"{name}[{','.join(f'{k}={_fmt(v)}' for k, v in options.items())}]"


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _grid(
    name: str,
    make: Callable[[Any, float, dict], Optimizer],
    units: str,
    grid: tuple[float, ...],
    quick_grid: tuple[float, ...] | None = None,
    effective_lr: Callable[[Optimizer], float] = _group_lr,
) -> Callable[[dict[str, Any], bool], list[Method]]:
    """A tuned family: one method per lr of ``grid`` (``quick_grid`` in quick mode), or the
    one ``lr=`` given."""

    def build(options: dict[str, Any], quick: bool) -> list[Method]:
        rest = {k: v for k, v in options.items() if k != "lr"}
        points = quick_grid if quick and quick_grid else grid
        lrs = [float(options["lr"])] if "lr" in options else list(points)
        return [
            Method(
                spec_name(name, {"lr": lr, **rest}),
                name,
                {"lr": lr, **rest},
                lambda ps, lr=lr: make(ps, lr, rest),
                effective_lr,
                units,
                grid_lr=lr,
            )  # fmt: skip
            for lr in lrs
        ]

    return build


def _one(
    name: str,
    make: Callable[[Any, dict], Optimizer],
    effective_lr: Callable[[Optimizer], float],
    units: str | Callable[[dict], str],
    **flags: Any,
) -> Callable[[dict[str, Any], bool], list[Method]]:
    def build(options: dict[str, Any], quick: bool) -> list[Method]:
        unit = units(options) if callable(units) else units
        return [
            Method(
                spec_name(name, options),
                name,
                dict(options),
                lambda ps: make(ps, options),
                effective_lr,
                unit,
                **flags,
            )  # fmt: skip
        ]

    return build


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
    from paramscale.loading import RuleInputError, load_rule
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
    return scale * _group_lr(opt)


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
            _grid("adam", lambda ps, lr, o: torch.optim.Adam(ps, lr=lr, **o), "adam", ADAM_GRID),
        ),
        Family(
            "amsgrad",
            "torch.optim.Adam(amsgrad=True) over the same grid (for validate-rule --train)",
            _grid(
                "amsgrad",
                lambda ps, lr, o: torch.optim.Adam(ps, lr=lr, amsgrad=True, **o),
                "adam",
                ADAM_GRID,
            ),
        ),
        Family(
            "sgd",
            "torch.optim.SGD(momentum=0.9) over its lr grid 1e-3..1 (half decades; quick: decades)",
            _grid(
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
            _grid("PSconst", _psconst, "adam", ADAM_GRID, effective_lr=_effective_lr),
        ),
        Family(
            "PSSPS",
            "this project's PS-SPS (torch_impl.PSSPS, f*=0, Adam scaling)",
            _one("PSSPS", _pssps, _effective_lr, _ps_units, needs_loss=True),
        ),
        Family(
            "PSDASGD",
            "this project's PS-DA-SGD (torch_impl.PSDASGD, defaults; variants by options, "
            "e.g. PSDASGD[transfer=max])",
            _one("PSDASGD", _psdasgd, _effective_lr, _ps_units),
        ),
        Family(
            "PSDoG",
            "DoG's step in the scaled metric (torch_impl.PSDoG, Adam scaling; "
            "PSDoG[scaling=identity] is DoG)",
            _one("PSDoG", _psdog, _effective_lr, _ps_units),
        ),
        Family(
            "PSDoWG",
            "DoWG's step in the scaled metric (torch_impl.PSDoWG, Adam scaling; "
            "PSDoWG[scaling=identity] is optax's DoWG)",
            _one("PSDoWG", _psdowg, _effective_lr, _ps_units),
        ),
        Family(
            "PS",
            "any step-size rule in any scaling: PS[step=module:attr,scaling=adam] (a "
            "theory.stepsize.StepRule; validate-rule --train)",
            _one("PS", _ps, _effective_lr, _ps_units, needs_loss=True),  # if the rule reads it
        ),
        Family(
            "DAdaptAdam",
            "dadaptation.DAdaptAdam (official package, defaults)",
            _one(
                "DAdaptAdam",
                lambda ps, o: importlib.import_module("dadaptation").DAdaptAdam(ps, **o),
                _d_times_lr,
                "adam",
            ),
            package="dadaptation",
        ),
        Family(
            "Prodigy",
            "prodigyopt.Prodigy (official package, defaults)",
            _one(
                "Prodigy",
                lambda ps, o: importlib.import_module("prodigyopt").Prodigy(ps, **o),
                _d_times_lr,
                "adam",
            ),
            package="prodigyopt",
        ),
        Family(
            "DoG",
            "dog.DoG (official package, defaults, last iterate: no averaging)",
            _one("DoG", lambda ps, o: importlib.import_module("dog").DoG(ps, **o), _dog_lr, "sgd"),
            package="dog",
        ),
        Family(
            "LDoG",
            "dog.LDoG (official package, defaults; lr: geometric mean over layers)",
            _one(
                "LDoG", lambda ps, o: importlib.import_module("dog").LDoG(ps, **o), _dog_lr, "sgd"
            ),
            package="dog",
        ),
        Family(
            "SFAdamW",
            "schedulefree.AdamWScheduleFree (official package, defaults: lr 0.0025)",
            _one(
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
            _one("Mechanic", _mechanic, _mechanic_lr, "adam"),
            package="mechanic_pytorch",
        ),
        Family(
            "COCOB",
            "parameterfree.COCOB (official package, defaults; no step size to report)",
            _one(
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
            _one("EGAdam", _eg, _eg_lr, "adam"),
        ),
    )
}
DEFAULT = (
    "adam", "sgd", "PSSPS", "PSDASGD", "DAdaptAdam", "Prodigy", "DoG", "LDoG", "SFAdamW",
    "Mechanic", "COCOB", "EGAdam",
)  # fmt: skip


def split_specs(text: str) -> list[str]:
    """Comma-separated specs, where commas inside brackets belong to a spec's options."""
    out, depth, current = [], 0, ""
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth < 0:
            raise ValueError(f"Invalid method list {text!r}: ']' without '['")
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += ch
    if depth:
        raise ValueError(f"Invalid method list {text!r}: '[' without ']'")
    out.append(current.strip())
    return [s for s in out if s]


def parse(spec: str) -> tuple[Family, dict[str, Any]]:
    """``name[key=value,...]`` -> (family, options); an unknown name is a ValueError that
    lists the known ones."""
    name, _, rest = spec.partition("[")
    family = FAMILIES.get(name.strip().lower())
    if family is None:
        known = ", ".join(f.name for f in FAMILIES.values())
        raise ValueError(f"Unknown method {name.strip()!r} (expected one of: {known})")
    options: dict[str, Any] = {}
    if rest:
        if not rest.endswith("]"):
            raise ValueError(f"Invalid method spec {spec!r} (expected name[key=value,...])")
        for item in split_specs(rest[:-1]):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"Invalid option {item!r} in {spec!r} (expected key=value)")
            options[key.strip()] = _value(value.strip())
    return family, options


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def rebuild(key: tuple[str, tuple]) -> Method:
    """The method of ``Method.key`` (in a worker process: methods hold functions)."""
    family, options = key
    (method,) = FAMILIES[family.lower()].build(dict(options), False)
    return method


def expand(specs: list[str], quick: bool) -> tuple[list[Method], dict[str, str]]:
    """The methods of ``specs`` (grids expanded) and the skipped ones with the reason. Each
    method is built once on a throw-away parameter, so a bad option fails here, by name,
    before anything runs."""
    methods, skipped = [], {}
    for spec in specs:
        family, options = parse(spec)
        reason = family.missing()
        if reason:
            skipped[spec_name(family.name, options)] = reason
            continue
        for method in family.build(options, quick):
            try:
                method.make([torch.nn.Parameter(torch.zeros(2))])
            except (TypeError, ValueError, RuleInputError) as exc:
                raise ValueError(f"Invalid method {method.name!r}: {exc}") from exc
            methods.append(method)
    names = [m.name for m in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"Method(s) given twice: {dupes}")
    return methods, skipped
