"""Argument and input checks shared by every optimizer (torch.optim-style messages).

A check names the parameter, shows the value and says what was expected; it never
clamps. Raised before any state is touched, so a rejected call leaves state as it was.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _number(name: str, value: Any, ok: bool, expected: str) -> float:
    """``value`` as a float if it is a Python int or float (not a bool) and ``ok``, else the
    error; a value of another type (NumPy's float32, a tensor) is named with its type, as
    the number itself may look right. The caller stores its argument as given, so a
    float32 would carry its precision into the method's arithmetic: refused, not cast."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"Invalid {name}: {value!r} of type {type(value).__name__} (expected a Python "
            f"float or int, {expected}; pass float(value))"
        )
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")
    return float(value)


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive(name: str, value: float) -> float:
    ok = _real(value) and math.isfinite(value) and value > 0
    return _number(name, value, ok, "a finite number > 0")


def non_negative(name: str, value: float) -> float:
    ok = _real(value) and math.isfinite(value) and value >= 0
    return _number(name, value, ok, "a finite number >= 0")


def positive_or_inf(name: str, value: float) -> float:
    ok = _real(value) and not math.isnan(value) and value > 0
    return _number(name, value, ok, "a number > 0, inf allowed")


def unit_interval(name: str, value: float, *, closed_right: bool = False) -> float:
    ok = _real(value) and (0.0 <= value <= 1.0 if closed_right else 0.0 <= value < 1.0)
    return _number(name, value, ok, f"a number in {'[0, 1]' if closed_right else '[0, 1)'}")


def growth(name: str, value: float) -> float:
    ok = _real(value) and not math.isnan(value) and value >= 1.0
    return _number(name, value, ok, "a number >= 1, inf allowed")


def choice(name: str, value: Any, options: tuple[Any, ...]) -> Any:
    if value not in options:
        raise ValueError(f"Invalid {name}: {value!r} (expected one of {options})")
    return value


def gradient(grad: Any, x: np.ndarray, step: int) -> np.ndarray:
    """Check a gradient for shape, dtype and finiteness; return it as a float array."""
    g = np.asarray(grad)
    if g.shape != np.shape(x):
        raise ValueError(f"Invalid grad at step {step}: shape {g.shape} (expected {np.shape(x)})")
    if not np.issubdtype(g.dtype, np.floating):
        raise TypeError(
            f"Invalid grad at step {step}: dtype {g.dtype} (expected a real floating dtype)"
        )
    if not np.all(np.isfinite(g)):
        bad = int(np.size(g) - np.count_nonzero(np.isfinite(g)))
        raise FloatingPointError(
            f"Non-finite gradient at step {step}: {bad} NaN/Inf entries; step refused, "
            "state unchanged"
        )
    return g


def loss(value: Any, step: int) -> float | None:
    if value is None:
        return None
    f = float(value)
    if not math.isfinite(f):
        raise FloatingPointError(f"Non-finite loss at step {step}: {f!r}; step refused")
    return f
