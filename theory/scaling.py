"""Scaling rules (docs/spec.md section 2, paper Table 1): the gradient history -> alpha_k > 0.

The adaptive direction is ``u_k = g_k / alpha_k**2``. A rule is a small frozen object with
``init(x0) -> state`` and ``update(state, g, x) -> (alpha, state)``; it never mutates its
inputs and does not know the step-size rule it is composed with. Every rule is written
once against the array-API namespace of its inputs (``array_api_compat``), so the same
object runs on NumPy arrays (the reference) and on torch tensors (``torch_impl``).

``k`` counts from 0 and bias corrections use ``k + 1``. Blocks (LARS, LAMB) default to the
whole vector; on torch a rule is applied per tensor, so there a block is a tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from array_api_compat import array_namespace

from paramscale.theory import _validate as check

__all__ = [
    "ScalingRule",
    "identity",
    "adagrad",
    "rmsprop",
    "adam",
    "amsgrad",
    "lars",
    "lamb",
    "uniformly_scaled",
    "step_scaled",
    "by_name",
]


@runtime_checkable
class ScalingRule(Protocol):
    """What ``parameter_scaled`` needs of a rule. ``monotone`` states the A1/A4 hypothesis."""

    name: str
    monotone: bool

    def init(self, x0: Any) -> Any: ...

    def update(self, state: Any, g: Any, x: Any) -> tuple[Any, Any]: ...


class Moments(NamedTuple):
    """State of the moment-based rules: step count, second moment (and first, for LAMB)."""

    k: int
    v: Any
    m: Any = None


def _alpha(xp: Any, divisor: Any) -> Any:
    # alpha_k = sqrt(alpha_k**2): rules are specified by their divisor (docs/spec.md section 2)
    return xp.sqrt(divisor)


@dataclass(frozen=True)
class identity:
    """alpha_k**2 = 1: plain SGD direction (docs/spec.md section 2, row Identity)."""

    name: str = "identity"
    monotone: bool = True

    def init(self, x0: Any) -> Moments:
        return Moments(0, None)

    def update(self, state: Moments, g: Any, x: Any) -> tuple[Any, Moments]:
        return array_namespace(g).ones_like(g), Moments(state.k + 1, None)


@dataclass(frozen=True)
class adagrad:
    """alpha_k**2 = sqrt(sum_{i<=k} g_i**2 + v_init) + eps (docs/spec.md section 2, row AdaGrad)."""

    eps: float = 1e-8
    initial_accumulator_value: float = 0.0
    name: str = "adagrad"
    monotone: bool = True

    def __post_init__(self) -> None:
        check.positive("eps", self.eps)
        check.non_negative("initial_accumulator_value", self.initial_accumulator_value)

    def init(self, x0: Any) -> Moments:
        xp = array_namespace(x0)
        return Moments(0, xp.zeros_like(x0) + self.initial_accumulator_value)

    def update(self, state: Moments, g: Any, x: Any) -> tuple[Any, Moments]:
        xp = array_namespace(g)
        v = state.v + g * g
        return _alpha(xp, xp.sqrt(v) + self.eps), Moments(state.k + 1, v)


@dataclass(frozen=True)
class _second_moment:
    """What RMSProp, Adam and AMSGrad share: ``v_k = beta2 v_{k-1} + (1-beta2) g_k**2``."""

    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        check.unit_interval("beta2", self.beta2)
        check.positive("eps", self.eps)

    def init(self, x0: Any) -> Moments:
        return Moments(0, array_namespace(x0).zeros_like(x0))

    def _ema(self, state: Moments, g: Any) -> Any:
        return self.beta2 * state.v + (1 - self.beta2) * (g * g)


@dataclass(frozen=True)
class rmsprop(_second_moment):
    """alpha_k**2 = sqrt(v_k) + eps (docs/spec.md section 2, row RMSProp)."""

    name: str = "rmsprop"
    monotone: bool = False

    def update(self, state: Moments, g: Any, x: Any) -> tuple[Any, Moments]:
        xp = array_namespace(g)
        v = self._ema(state, g)
        return _alpha(xp, xp.sqrt(v) + self.eps), Moments(state.k + 1, v)


@dataclass(frozen=True)
class adam(_second_moment):
    """alpha_k**2 = sqrt(v_k / (1-beta2**(k+1))) + eps (docs/spec.md section 2, row Adam)."""

    name: str = "adam"
    monotone: bool = False

    def update(self, state: Moments, g: Any, x: Any) -> tuple[Any, Moments]:
        xp = array_namespace(g)
        v = self._ema(state, g)
        bc2 = 1 - self.beta2 ** (state.k + 1)
        # torch's order: sqrt(v) / sqrt(bc2) + eps
        return _alpha(xp, xp.sqrt(v) / bc2**0.5 + self.eps), Moments(state.k + 1, v)


@dataclass(frozen=True)
class amsgrad(_second_moment):
    """AMSGrad (docs/spec.md section 2). ``form="monotone"`` (default): the max is taken after bias
    correction, ``vhat_k = max(vhat_{k-1}, v_k / (1-beta2**(k+1)))``, ``alpha**2 =
    sqrt(vhat_k) + eps`` -- non-decreasing, the hypothesis of claims A1/A4.
    ``form="torch"``: ``torch.optim.Adam(amsgrad=True)``, max over raw ``v`` then bias
    correction, which is *not* monotone (docs/baselines.md section 8)."""

    form: str = "monotone"
    name: str = "amsgrad"
    monotone: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check.choice("form", self.form, ("monotone", "torch"))
        if self.form == "torch":
            object.__setattr__(self, "monotone", False)

    def init(self, x0: Any) -> Moments:
        xp = array_namespace(x0)
        return Moments(0, xp.zeros_like(x0), xp.zeros_like(x0))  # m slot: the running max

    def update(self, state: Moments, g: Any, x: Any) -> tuple[Any, Moments]:
        xp = array_namespace(g)
        v = self._ema(state, g)
        bc2 = 1 - self.beta2 ** (state.k + 1)
        if self.form == "monotone":
            vmax = xp.maximum(state.m, v / bc2)
            divisor = xp.sqrt(vmax) + self.eps
        else:
            vmax = xp.maximum(state.m, v)
            divisor = xp.sqrt(vmax) / bc2**0.5 + self.eps
        return _alpha(xp, divisor), Moments(state.k + 1, v, vmax)


def _block_ratio(xp: Any, num: Any, den: Any, blocks: tuple[int, ...] | None) -> Any:
    """Per element, ``||num_B|| / ||den_B||`` of its block B; 1 where either norm is 0."""
    sizes = blocks if blocks is not None else (num.shape[0],)
    parts, start = [], 0
    for size in sizes:
        a = xp.linalg.vector_norm(num[start : start + size])
        b = xp.linalg.vector_norm(den[start : start + size])
        ok = (a > 0) & (b > 0)
        ratio = xp.where(ok, a / xp.where(ok, b, xp.ones_like(b)), xp.ones_like(a))
        parts.append(xp.ones_like(num[start : start + size]) * ratio)
        start += size
    return parts[0] if len(parts) == 1 else xp.concat(parts)


def _check_blocks(blocks: tuple[int, ...] | None) -> None:
    if blocks is not None and (
        len(blocks) == 0 or any(not isinstance(b, int) or b <= 0 for b in blocks)
    ):
        raise ValueError(f"Invalid blocks: {blocks!r} (expected a tuple of positive ints)")


def _check_block_sizes(blocks: tuple[int, ...] | None, x: Any) -> None:
    if blocks is not None and sum(blocks) != x.shape[0]:
        raise ValueError(f"Invalid blocks: {blocks!r} sum to {sum(blocks)} (expected {x.shape[0]})")


@dataclass(frozen=True)
class lars:
    """Per block B: alpha**2 = ||g_B|| / ||x_B|| (inverse trust ratio), 1 where either
    norm is 0 (docs/spec.md section 2, row LARS; You et al. 2017 at weight decay 0)."""

    blocks: tuple[int, ...] | None = None
    name: str = "lars"
    monotone: bool = False

    def __post_init__(self) -> None:
        _check_blocks(self.blocks)

    def init(self, x0: Any) -> Moments:
        _check_block_sizes(self.blocks, x0)
        return Moments(0, None)

    def update(self, state: Moments, g: Any, x: Any) -> tuple[Any, Moments]:
        xp = array_namespace(g)
        return _alpha(xp, _block_ratio(xp, g, x, self.blocks)), Moments(state.k + 1, None)


@dataclass(frozen=True)
class lamb:
    """Per block B: alpha**2 = (sqrt(vhat)+eps) * ||r_B|| / ||x_B||, r = mhat/(sqrt(vhat)+eps),
    the block factor 1 where either norm is 0 (docs/spec.md section 2, LAMB; You et al. 2020)."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    blocks: tuple[int, ...] | None = None
    name: str = "lamb"
    monotone: bool = False

    def __post_init__(self) -> None:
        check.unit_interval("beta1", self.beta1)
        check.unit_interval("beta2", self.beta2)
        check.positive("eps", self.eps)
        _check_blocks(self.blocks)

    def init(self, x0: Any) -> Moments:
        _check_block_sizes(self.blocks, x0)
        xp = array_namespace(x0)
        return Moments(0, xp.zeros_like(x0), xp.zeros_like(x0))

    def update(self, state: Moments, g: Any, x: Any) -> tuple[Any, Moments]:
        xp = array_namespace(g)
        k = state.k
        m = self.beta1 * state.m + (1 - self.beta1) * g
        v = self.beta2 * state.v + (1 - self.beta2) * (g * g)
        denom = xp.sqrt(v / (1 - self.beta2 ** (k + 1))) + self.eps
        r = m / (1 - self.beta1 ** (k + 1)) / denom
        divisor = denom * _block_ratio(xp, r, x, self.blocks)
        return _alpha(xp, divisor), Moments(k + 1, v, m)


@dataclass(frozen=True)
class uniformly_scaled:
    """``rule`` with every alpha multiplied by one constant ``t > 0``: the transformation
    under which PS-SPS and PS-DA-SGD must be invariant (docs/spec.md 3.1, 3.2)."""

    rule: Any
    t: float

    def __post_init__(self) -> None:
        check.positive("t", self.t)

    @property
    def name(self) -> str:
        return f"{self.rule.name}*{self.t:g}"

    @property
    def monotone(self) -> bool:
        return self.rule.monotone

    def init(self, x0: Any) -> Any:
        return self.rule.init(x0)

    def update(self, state: Any, g: Any, x: Any) -> tuple[Any, Any]:
        alpha, state = self.rule.update(state, g, x)
        return self.t * alpha, state


@dataclass(frozen=True)
class step_scaled:
    """``rule`` with alpha_k multiplied by ``factors[k % len(factors)]``: a uniform scale
    that changes from step to step (principle (i) of docs/spec.md allows it)."""

    rule: Any
    factors: tuple[float, ...]

    def __post_init__(self) -> None:
        for t in self.factors:
            check.positive("factors", t)

    @property
    def name(self) -> str:
        return f"{self.rule.name}*t_k"

    @property
    def monotone(self) -> bool:
        return False

    def init(self, x0: Any) -> tuple[int, Any]:
        return 0, self.rule.init(x0)

    def update(self, state: tuple[int, Any], g: Any, x: Any) -> tuple[Any, tuple[int, Any]]:
        k, inner = state
        alpha, inner = self.rule.update(inner, g, x)
        return self.factors[k % len(self.factors)] * alpha, (k + 1, inner)


_BY_NAME = {
    "identity": identity,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
    "amsgrad": amsgrad,
    "lars": lars,
    "lamb": lamb,
}


def by_name(name: str | ScalingRule, **hyper: Any) -> ScalingRule:
    """A rule from its name (``"adam"``, ...) or a rule object passed through."""
    if not isinstance(name, str):
        if not isinstance(name, ScalingRule):
            raise TypeError(
                f"Invalid scaling: {name!r} (expected a rule name or an object with "
                "name, monotone, init(x0) and update(state, g, x))"
            )
        return name
    if name not in _BY_NAME:
        raise ValueError(f"Invalid scaling: {name!r} (expected one of {tuple(_BY_NAME)})")
    return _BY_NAME[name](**hyper)
