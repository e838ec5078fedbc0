"""Multi-tensor (``torch._foreach_*``) versions of the element-wise scaling rules.

Each rule is two functions over lists of tensors that together compute exactly what
``theory.scaling`` computes per tensor (docs/spec.md section 2):

- ``advance(rule, c, states, gs)``: the rule state at step k from the state at k-1 and
  g_k, as new tensors (one dict of slots per tensor; ``states`` is left as it was);
- ``alpha(rule, c, states, gs)``: alpha_k as a function of the state at step k alone
  (``gs`` only gives the shape);

where ``c = correction(rule, k)`` holds step k's bias correction (k: the tensor's own step
count, ``scaling.k``; a parameter whose first gradient comes late starts at 0, as in
theory's rule objects and ``torch.optim.Adam``).

Splitting them lets the fused path derive alpha_{k-1} from the state it is about to
advance, in the same pass, instead of storing it. Advancing into new tensors lets the
foreach path store the new state only once the step's host sync has succeeded (a step
refused or failed there changes nothing), at no extra pass over memory. The per-tensor path
runs the theory rule objects themselves (array API), and the two paths are tested against
each other. Rules without an entry here (LARS, LAMB, user rules) always take the per-tensor
path.

State layout, shared with the per-tensor path (``torch_impl.state``): ``scaling.k`` = k,
``scaling.v`` = v (second moment / accumulator), ``scaling.m`` = running max (AMSGrad).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from paramscale.theory import scaling as rules
from paramscale.torch_impl.state import SECOND, STEP, THIRD

Tensors = list[torch.Tensor]


def _v(states: list[dict], key: str = SECOND) -> Tensors:
    return [st[key] for st in states]


def _alpha_of(div: Tensors, eps: float) -> Tensors:
    torch._foreach_add_(div, eps)
    torch._foreach_sqrt_(div)  # alpha = sqrt(div + eps), in the temporary ``div``
    return div


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


def _slots(*slots: Tensors) -> list[dict]:
    """Per tensor, its state entries ``scaling.v`` (and ``scaling.m``) from lists of
    tensors."""
    per_tensor = zip(*slots, strict=True)
    return [dict(zip((SECOND, THIRD), ts, strict=False)) for ts in per_tensor]


def _nothing(rule: Any, c: Correction, states: list[dict], gs: Tensors) -> list[dict]:
    return [{} for _ in states]


def _accumulate(rule: rules.adagrad, c: Correction, states: list[dict], gs: Tensors) -> list[dict]:
    return _slots(torch._foreach_addcmul(_v(states), gs, gs))  # v + g^2


def _moment(rule: Any, states: list[dict], gs: Tensors) -> Tensors:
    v = torch._foreach_mul(_v(states), rule.beta2)
    torch._foreach_addcmul_(v, gs, gs, value=1 - rule.beta2)  # beta2 v + (1-beta2) g^2
    return v


def _second_moment(rule: Any, c: Correction, states: list[dict], gs: Tensors) -> list[dict]:
    return _slots(_moment(rule, states, gs))


def _running_max(rule: rules.amsgrad, c: Correction, states: list[dict], gs: Tensors) -> list[dict]:
    v = _moment(rule, states, gs)
    if rule.form == "monotone":
        vmax = torch._foreach_maximum(_v(states, THIRD), torch._foreach_div(v, c.bc2))  # after bc
    else:
        vmax = torch._foreach_maximum(_v(states, THIRD), v)
    return _slots(v, vmax)


def _ones(rule: rules.identity, c: Correction, states: list[dict], gs: Tensors) -> Tensors:
    return [torch.ones_like(g) for g in gs]


def _root(rule: Any, c: Correction, states: list[dict], gs: Tensors) -> Tensors:
    return _alpha_of(torch._foreach_sqrt(_v(states)), rule.eps)  # sqrt(sqrt(v) + eps)


def _adam_root(rule: rules.adam, c: Correction, states: list[dict], gs: Tensors) -> Tensors:
    div = torch._foreach_sqrt(_v(states))
    torch._foreach_div_(div, c.root)
    return _alpha_of(div, rule.eps)  # sqrt(sqrt(v) / sqrt(bc2) + eps)


def _amsgrad_root(rule: rules.amsgrad, c: Correction, states: list[dict], gs: Tensors) -> Tensors:
    div = torch._foreach_sqrt(_v(states, THIRD))
    if rule.form == "torch":
        torch._foreach_div_(div, c.root)  # bias correction after the max
    return _alpha_of(div, rule.eps)


class ForeachRule(NamedTuple):
    advance: Callable[[Any, Any, list[dict], Tensors], list[dict]]
    alpha: Callable[[Any, Any, list[dict], Tensors], Tensors]


FOREACH: dict[type, ForeachRule] = {
    rules.identity: ForeachRule(_nothing, _ones),
    rules.adagrad: ForeachRule(_accumulate, _root),
    rules.rmsprop: ForeachRule(_second_moment, _root),
    rules.adam: ForeachRule(_second_moment, _adam_root),
    rules.amsgrad: ForeachRule(_running_max, _amsgrad_root),
}


def update(rule: Any, states: list[dict], gs: Tensors) -> tuple[Tensors, list[dict]]:
    """alpha_k and each tensor's rule state one step on (at its own step count
    ``scaling.k``, as theory's rule objects and torch.optim count), as new tensors:
    ``states`` is left as it was, for the caller to update once the step goes ahead."""
    fr, c = FOREACH[type(rule)], correction(rule, [st[STEP] for st in states])
    new = fr.advance(rule, c, states, gs)
    alphas = fr.alpha(rule, c, new, gs)
    for st, ahead in zip(states, new, strict=True):
        ahead[STEP] = st[STEP] + 1
    return alphas, new
