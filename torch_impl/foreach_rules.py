"""Multi-tensor (``torch._foreach_*``) versions of the element-wise scaling rules.

Each computes, for a list of tensors, exactly what ``theory.scaling`` computes per tensor
(SPEC Table 1), updating the rule state in place. The per-tensor path runs the theory rule
objects themselves (array API), and the two paths are tested against each other. Rules
without an entry here (LARS, LAMB, user rules) always take the per-tensor path.

State layout, shared with the per-tensor path: ``scaling.0`` = k, ``scaling.1`` = v (second
moment / accumulator), ``scaling.2`` = running max (AMSGrad).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from theory import scaling as S

Tensors = list[torch.Tensor]


def _second_moment(v: Tensors, gs: Tensors, beta2: float) -> None:
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, gs, gs, value=1 - beta2)  # v = beta2 v + (1-beta2) g^2


def _identity(rule: S.identity, k: int, states: list[dict], gs: Tensors) -> Tensors:
    return [torch.ones_like(g) for g in gs]


def _adagrad(rule: S.adagrad, k: int, states: list[dict], gs: Tensors) -> Tensors:
    v = [st["scaling.1"] for st in states]
    torch._foreach_addcmul_(v, gs, gs)
    div = torch._foreach_sqrt(v)
    torch._foreach_add_(div, rule.eps)  # sqrt(sum g^2) + eps
    return torch._foreach_sqrt(div)


def _rmsprop(rule: S.rmsprop, k: int, states: list[dict], gs: Tensors) -> Tensors:
    v = [st["scaling.1"] for st in states]
    _second_moment(v, gs, rule.beta2)
    div = torch._foreach_sqrt(v)
    torch._foreach_add_(div, rule.eps)
    return torch._foreach_sqrt(div)


def _adam(rule: S.adam, k: int, states: list[dict], gs: Tensors) -> Tensors:
    v = [st["scaling.1"] for st in states]
    _second_moment(v, gs, rule.beta2)
    div = torch._foreach_sqrt(v)
    torch._foreach_div_(div, (1 - rule.beta2 ** (k + 1)) ** 0.5)
    torch._foreach_add_(div, rule.eps)  # sqrt(v) / sqrt(bc2) + eps
    return torch._foreach_sqrt(div)


def _amsgrad(rule: S.amsgrad, k: int, states: list[dict], gs: Tensors) -> Tensors:
    v = [st["scaling.1"] for st in states]
    vmax = [st["scaling.2"] for st in states]
    _second_moment(v, gs, rule.beta2)
    bc2 = 1 - rule.beta2 ** (k + 1)
    if rule.form == "monotone":
        torch._foreach_maximum_(vmax, torch._foreach_div(v, bc2))  # max after bias correction
        div = torch._foreach_sqrt(vmax)
    else:
        torch._foreach_maximum_(vmax, v)
        div = torch._foreach_sqrt(vmax)
        torch._foreach_div_(div, bc2**0.5)
    torch._foreach_add_(div, rule.eps)
    return torch._foreach_sqrt(div)


FOREACH: dict[type, Callable[..., Tensors]] = {
    S.identity: _identity,
    S.adagrad: _adagrad,
    S.rmsprop: _rmsprop,
    S.adam: _adam,
    S.amsgrad: _amsgrad,
}
