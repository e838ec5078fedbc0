"""What a method of ``paramscale train`` is: ``Method`` (one configured method: how to build
its optimizer, how to read its effective learning rate, and in which units) and ``Family``
(the methods one name builds from its options), with the two builders every family uses:
a tuned grid of learning rates (``grid_builder``) and one method (``single_builder``).

Units of the effective learning rate: ``adam`` (a coordinate moves by it times an Adam-like
normalised direction ``mhat / (sqrt(vhat) + eps)``: comparable with Adam's lr), ``sgd``
(times the raw gradient) or ``none`` (no single step size: COCOB's per-coordinate bets).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

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


def group_lr(opt: Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def d_times_lr(opt: Optimizer) -> float:
    group = opt.param_groups[0]
    return float(group["d"]) * float(group["lr"])


def spec_name(name: str, options: dict[str, Any]) -> str:
    """A method spec as the CSV writes it: ``name[key=value,...]``."""
    if not options:
        return name
    return f"{name}[{','.join(f'{k}={_fmt(v)}' for k, v in options.items())}]"


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def grid_builder(
    name: str,
    make: Callable[[Any, float, dict], Optimizer],
    units: str,
    grid: tuple[float, ...],
    quick_grid: tuple[float, ...] | None = None,
    effective_lr: Callable[[Optimizer], float] = group_lr,
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


def single_builder(
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
