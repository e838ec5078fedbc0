"""Multi-tensor (``torch._foreach_*``) versions of the element-wise scaling rules.

Each rule is two functions over lists of tensors that together compute exactly what
``theory.scaling`` computes per tensor (SPEC Table 1):

- ``advance(rule, c, states, gs)``: the rule state at step k from the state at k-1 and
  g_k, in place;
- ``alpha(rule, c, states, gs)``: alpha_k as a function of the state at step k alone
  (``gs`` only gives the shape);

where ``c = correction(rule, k)`` holds step k's bias correction (k: the tensor's own step
count, ``scaling.0``; a parameter whose first gradient comes late starts at 0, as in
theory's rule objects and ``torch.optim.Adam``).

Splitting them lets the fused path derive alpha_{k-1} from the state it is about to
advance, in the same pass, instead of storing it. The per-tensor path runs the theory rule
objects themselves (array API), and the two paths are tested against each other. Rules
without an entry here (LARS, LAMB, user rules) always take the per-tensor path.

State layout, shared with the per-tensor path: ``scaling.0`` = k, ``scaling.1`` = v (second
moment / accumulator), ``scaling.2`` = running max (AMSGrad).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from theory import scaling as S

Tensors = list[torch.Tensor]


def _v(states: list[dict], slot: int = 1) -> Tensors:
    return [st[f"scaling.{slot}"] for st in states]


def _alpha_of(div: Tensors, eps: float) -> Tensors:
    torch._foreach_add_(div, eps)
    return torch._foreach_sqrt(div)  # alpha = sqrt(div + eps)


class Correction(NamedTuple):
    """Step k's bias correction ``bc2 = 1 - beta2**(k+1)`` and its square root: floats on
    the foreach path, 0-dim tensors in the compiled kernels (computed once per step, not
    once per element)."""

    bc2: Any
    root: Any


def correction(rule: Any, k: int | list[int]) -> Correction:
    """Step k's correction; for a list of k (each tensor's own step), lists of floats."""
    if isinstance(k, list):
        cs = [correction(rule, i) for i in k]
        return Correction([c.bc2 for c in cs], [c.root for c in cs])
    bc2 = 1 - rule.beta2 ** (k + 1) if hasattr(rule, "beta2") else 1.0
    return Correction(bc2, bc2**0.5)


def _nothing(rule: Any, c: Correction, states: list[dict], gs: Tensors) -> None:
    return None


def _accumulate(rule: S.adagrad, c: Correction, states: list[dict], gs: Tensors) -> None:
    torch._foreach_addcmul_(_v(states), gs, gs)  # v += g^2


def _second_moment(rule: Any, c: Correction, states: list[dict], gs: Tensors) -> None:
    v = _v(states)
    torch._foreach_mul_(v, rule.beta2)
    torch._foreach_addcmul_(v, gs, gs, value=1 - rule.beta2)  # v = beta2 v + (1-beta2) g^2


def _running_max(rule: S.amsgrad, c: Correction, states: list[dict], gs: Tensors) -> None:
    _second_moment(rule, c, states, gs)
    v, vmax = _v(states), _v(states, 2)
    if rule.form == "monotone":
        torch._foreach_maximum_(vmax, torch._foreach_div(v, c.bc2))  # max after bc
    else:
        torch._foreach_maximum_(vmax, v)


def _ones(rule: S.identity, c: Correction, states: list[dict], gs: Tensors) -> Tensors:
    return [torch.ones_like(g) for g in gs]


def _root(rule: Any, c: Correction, states: list[dict], gs: Tensors) -> Tensors:
    return _alpha_of(torch._foreach_sqrt(_v(states)), rule.eps)  # sqrt(sqrt(v) + eps)


def _adam_root(rule: S.adam, c: Correction, states: list[dict], gs: Tensors) -> Tensors:
    div = torch._foreach_sqrt(_v(states))
    torch._foreach_div_(div, c.root)
    return _alpha_of(div, rule.eps)  # sqrt(sqrt(v) / sqrt(bc2) + eps)


def _amsgrad_root(rule: S.amsgrad, c: Correction, states: list[dict], gs: Tensors) -> Tensors:
    div = torch._foreach_sqrt(_v(states, 2))
    if rule.form == "torch":
        torch._foreach_div_(div, c.root)  # bias correction after the max
    return _alpha_of(div, rule.eps)


class ForeachRule(NamedTuple):
    advance: Callable[[Any, Any, list[dict], Tensors], None]
    alpha: Callable[[Any, Any, list[dict], Tensors], Tensors]


FOREACH: dict[type, ForeachRule] = {
    S.identity: ForeachRule(_nothing, _ones),
    S.adagrad: ForeachRule(_accumulate, _root),
    S.rmsprop: ForeachRule(_second_moment, _root),
    S.adam: ForeachRule(_second_moment, _adam_root),
    S.amsgrad: ForeachRule(_running_max, _amsgrad_root),
}


def update(rule: Any, states: list[dict], gs: Tensors) -> Tensors:
    """Advance each tensor's state by one step (at its own step count ``scaling.0``, as
    theory's rule objects and torch.optim count) in place, and return alpha."""
    fr, c = FOREACH[type(rule)], correction(rule, [st["scaling.0"] for st in states])
    fr.advance(rule, c, states, gs)
    alphas = fr.alpha(rule, c, states, gs)
    for st in states:
        st["scaling.0"] += 1
    return alphas
