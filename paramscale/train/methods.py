"""The methods of ``paramscale train``: tuned baselines (a learning-rate grid), this
project's optimizers, and the official packages of the learning-rate-free baselines.

A method spec is a name with optional options in brackets: ``adam`` (its whole grid),
``adam[lr=0.003]`` (one point), ``PSDASGD[transfer=min,scaling=amsgrad]`` (keyword
arguments of the constructor; values that parse as numbers are numbers). Names are
matched without regard to case.

The methods themselves are ``train.catalogue`` (``FAMILIES``); what a method is,
``train.family``; this module reads the specs.
"""

from __future__ import annotations

from typing import Any

import torch

from paramscale.loading import RuleInputError
from paramscale.train.catalogue import DEFAULT, FAMILIES
from paramscale.train.family import ADAM_GRID, SGD_GRID, Family, Method, spec_name

__all__ = [
    "Method",
    "Family",
    "FAMILIES",
    "DEFAULT",
    "parse",
    "split_specs",
    "expand",
    "rebuild",
    "ADAM_GRID",
    "SGD_GRID",
]


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
