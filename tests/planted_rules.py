"""Planted bad scaling rules for the validate-rule tests."""

from dataclasses import dataclass

import numpy as np

from paramscale.theory import scaling as S


@dataclass(frozen=True)
class negative(S.adam):
    """alpha with a negative entry."""

    name: str = "negative"

    def update(self, state, g, x):
        alpha, state = super().update(state, g, x)
        return -alpha, state


@dataclass(frozen=True)
class adam_claimed_monotone(S.adam):
    """Adam (not monotone) declaring itself monotone."""

    name: str = "adam_claimed_monotone"
    monotone: bool = True


@dataclass(frozen=True)
class nan_after_100(S.adam):
    """Adam that returns NaN from step 100 on."""

    name: str = "nan_after_100"

    def update(self, state, g, x):
        alpha, state = super().update(state, g, x)
        return (alpha * np.nan if state.k > 100 else alpha), state


@dataclass(frozen=True)
class wrong_shape(S.adam):
    name: str = "wrong_shape"

    def update(self, state, g, x):
        alpha, state = super().update(state, g, x)
        return alpha[:-1], state


not_a_rule = object()
