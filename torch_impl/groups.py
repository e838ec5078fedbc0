"""What a param group of ``ParameterScaled`` may hold, the checks of its values, and the
two per-group options that act outside the step-size math: ``maximize`` and decoupled
``weight_decay``.

Per-group keys (each honoured per group, and tested per group): ``lr``, ``momentum``,
``first_moment``, ``scaling``, ``weight_decay``, ``maximize``; torch's ``params`` and
``param_names``; ``effective_lr``, which the optimizer writes (the step the group took).
An option of the step-size rule or of the optimizer (``d0``, ``f_star``, ``foreach``, ...)
is the whole model's (one ``d``, one path for the model): groups may set it, as code
written for torch's optimizers does (torch's own tests put every option, ``foreach`` and
``fused`` included, into each group), and when every group agrees that value is the
optimizer's (``agreed``); groups that disagree, or a group whose value differs from the
one the other groups take from the constructor, are refused, naming the groups. Any other
key is refused (a misspelt ``weight_decay`` would otherwise be ignored). The keys torch's
LR schedulers write into groups (``initial_lr``, ...) are accepted.
"""

from __future__ import annotations

from typing import Any

import torch

from paramscale.theory import _validate as check

Tensors = list[torch.Tensor]

OWN = ("lr", "momentum", "first_moment", "scaling", "weight_decay", "maximize")
TORCH = ("params", "param_names", "effective_lr")
SCHEDULERS = (  # keys torch.optim.lr_scheduler and swa_utils store in a group
    "initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum", "swa_lr",
)  # fmt: skip
ADDED = {"weight_decay": 0.0, "maximize": False, "effective_lr": 0.0}  # absent: older groups


def check_keys(group: dict[str, Any], gi: int, whole_model: dict[str, Any]) -> None:
    """Every key of group ``gi`` is a per-group option or a whole-model option (one of
    ``whole_model``'s keys: its value is checked by ``agreed``), else ValueError naming it."""
    for key in group:
        if key in OWN or key in TORCH or key in SCHEDULERS or key in whole_model:
            continue
        raise ValueError(
            f"Invalid param group key: {key!r} in group {gi} (expected one of "
            f"{', '.join(OWN)}, or a whole-model option: {', '.join(whole_model)}; an "
            "unknown key would be ignored)"
        )


def agreed(param_groups: list[dict[str, Any]], whole_model: dict[str, Any]) -> dict[str, Any]:
    """The whole-model options that groups set, each at the one value every group has (a
    group that does not set it has ``whole_model``'s, the constructor's); ValueError
    naming the groups and their values where they differ."""
    out = {}
    for key, own in whole_model.items():
        setting = [gi for gi, group in enumerate(param_groups) if key in group]
        if not setting:
            continue
        values: list[tuple[Any, list[int]]] = []  # (value, the groups holding it)
        for gi, group in enumerate(param_groups):
            value = group.get(key, own)
            for seen, holders in values:
                if _same(seen, value):
                    holders.append(gi)
                    break
            else:
                values.append((value, [gi]))
        if len(values) > 1:
            held = "; ".join(
                f"group{'s' * (len(gis) > 1)} {', '.join(map(str, gis))}: {value!r}"
                + ("" if all(key in param_groups[gi] for gi in gis) else " (the constructor's)")
                for value, gis in values
            )
            raise ValueError(
                f"Invalid {key} in param groups ({held}): {key} is the whole model's option, "
                "one value for every group (set it in every group, or in the constructor)"
            )
        out[key] = values[0][0]
    return out


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # a value that does not compare (a tensor, a process group)
        return False


def check_values(group: dict[str, Any], where: str = "") -> None:
    """A group's numbers; checked when it is added and at every step (a scheduler or a
    user may change them: a NaN lr would otherwise turn the parameters into NaN)."""
    if isinstance(group["lr"], torch.Tensor):
        raise ValueError(
            f"Invalid lr{where}: {group['lr']!r} (lr as a Tensor is not supported: the "
            "step size is computed on the host in float64; pass a Python float)"
        )
    check.non_negative(f"lr{where}", group["lr"])
    check.unit_interval(f"momentum{where}", group["momentum"])
    check.unit_interval(f"first_moment{where}", group["first_moment"])
    check.non_negative(f"weight_decay{where}", group["weight_decay"])
    if not isinstance(group["maximize"], bool):
        raise ValueError(f"Invalid maximize{where}: {group['maximize']!r} (expected True or False)")


def ascent(gs: Tensors, maximize: bool) -> Tensors:
    """The gradients the step descends along: ``-g`` to maximise (new tensors: the
    parameters' ``.grad`` are left as they are), ``g`` otherwise."""
    return torch._foreach_neg(gs) if maximize else gs


def decay(group: dict[str, Any], ps: Tensors, states: list[dict], lam: float) -> None:
    """Decoupled weight decay, as ``torch.optim.AdamW``: the iterate the step moves (``z``,
    or the parameter itself where there is no ``z``) times ``1 - lam * weight_decay``,
    ``lam`` the group's step (``effective_lr``), before the step; not part of the
    gradient, so no step-size statistic sees it."""
    rate = lam * group["weight_decay"]
    if rate == 0:
        return
    iterates = [st["z"] if "z" in st else p for p, st in zip(ps, states, strict=True)]
    torch._foreach_mul_(iterates, 1 - rate)
