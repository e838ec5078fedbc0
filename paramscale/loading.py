"""A user's objects named on the command line (``module:attr`` or ``path/to/file.py:attr``):
scaling rules, step-size rules and problems, loaded with one clear error (``RuleInputError``)
whatever went wrong. ``compare``, ``check``, ``plot``, ``validate-rule`` and ``train`` read
them here."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

__all__ = ["RuleInputError", "load_rule", "load_problems"]


class RuleInputError(ValueError):
    """Bad input naming a user's object: unimportable path, not a rule, wrong output shape."""


def load_rule(spec: str) -> Any:
    """A scaling rule or a step-size rule from ``module:attr`` or ``path/to/file.py:attr``;
    a class is instantiated with no arguments. Raises RuleInputError with a clear message."""
    return _load(spec, "rule")


def load_problems(spec: str) -> list[Any]:
    """A user's problems from ``module:attr`` or ``file.py:attr``: a ``synthetic.Problem``,
    a list of them, or a function returning either (called with no arguments; e.g. one
    that calls ``synthetic.from_data``). Raises RuleInputError naming what it got."""
    from paramscale.synthetic import Problem

    obj = _load(spec, "problem")
    if callable(obj) and not isinstance(obj, Problem):
        try:
            obj = obj()
        except Exception as exc:  # the user's code: reported as such
            raise RuleInputError(f"{spec!r} raised {type(exc).__name__}: {exc}") from exc
    problems = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    bad = [p for p in problems if not isinstance(p, Problem)]
    if not problems or bad:
        raise RuleInputError(
            f"Invalid problem {spec!r}: got {bad[0] if bad else 'nothing'!r} (expected a "
            "synthetic.Problem, a list of them, or a function returning them, e.g. via "
            "synthetic.from_data)"
        )
    return problems


def _load(spec: str, what: str) -> Any:
    if ":" not in spec:
        raise RuleInputError(f"Invalid {what} {spec!r}: expected 'module:attr' or 'file.py:attr'")
    mod_name, attr = spec.rsplit(":", 1)
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            if module_spec is None or not path.exists():
                raise FileNotFoundError(mod_name)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
    except Exception as exc:  # any import failure is the user's input, reported as such
        raise RuleInputError(f"Cannot import {mod_name!r}: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        raise RuleInputError(f"Module {mod_name!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    return obj() if isinstance(obj, type) and what == "rule" else obj
