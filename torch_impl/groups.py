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

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from paramscale.theory import _validate as check
from paramscale.theory import scaling as rules

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


def check_saved(group: dict[str, Any], gi: int, whole_model: dict[str, Any]) -> None:
    """A checkpoint's group ``gi`` holds a whole-model option only at the optimizer's own
    value, else ValueError naming it (nothing is loaded)."""
    for key, own in whole_model.items():
        if key in group and not _same(group[key], own):
            raise ValueError(
                f"Invalid param group key: {key!r} in group {gi} of the state_dict: "
                f"{group[key]!r} ({key} is the whole model's option, here {own!r}: pass it "
                "to the constructor)"
            )


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


def check_group(group: dict[str, Any], gi: int, device: Any, needs_loss: bool) -> None:
    """A group's values and parameters (``device``: the other parameters'; one ``d`` for
    the whole model: its reductions meet on one device); ``scaling`` made a rule."""
    check_values(group)
    if group["maximize"] and needs_loss:
        raise ValueError(
            f"Invalid maximize: True in group {gi} with a step rule that reads the loss "
            "(PS-SPS) (expected False: the step reads f - f* of a minimisation; pass the "
            "negated loss)"
        )
    group.setdefault("effective_lr", 0.0)  # lam_k * lr of the group's last step
    group["scaling"] = rules.by_name(group["scaling"])
    for pi, p in enumerate(group["params"]):
        if p.is_complex():
            raise TypeError(f"Invalid parameter: complex dtype {p.dtype} is not supported")
        if p.device != device:
            raise ValueError(
                f"Invalid parameter device: {p.device} for parameter {pi} of group {gi} "
                f"(expected {device}, the other parameters' device: the global estimates "
                "reduce over every parameter on one device; for a model split across "
                "devices, run a process per device with sharded=True)"
            )


def check_options(fused: bool, foreach: bool | None, sharded: bool) -> None:
    """The implementation options together."""
    if fused and foreach:
        raise ValueError("Invalid foreach: True with fused=True (expected at most one)")
    if sharded and not torch.distributed.is_initialized():
        raise ValueError("Invalid sharded: True (expected an initialised torch.distributed)")


def check_fused(group: dict[str, Any], elementwise: tuple[type, ...], check_device: Any) -> None:
    """``fused=True``: parameters where the fused kernels run (``check_device``; a meta
    model is checked again at the step) and an element-wise built-in rule."""
    for p in group["params"]:
        if p.device.type != "meta":
            check_device(p.device)
    if type(group["scaling"]) not in elementwise:
        raise ValueError(
            f"Invalid scaling: {group['scaling']!r} with fused=True (expected an element-wise "
            f"built-in rule: {', '.join(r.__name__ for r in elementwise)})"
        )


def check_made(group: dict[str, Any], gi: int, states: list[dict]) -> None:
    """``momentum`` and ``first_moment`` need state made at a parameter's first step (the
    averaged iterate z, the first moment m): switching one on later is refused before
    anything changes (it would otherwise be ignored, or fail mid-step)."""
    for key, slot in (("momentum", "z"), ("first_moment", "m")):
        if group[key] > 0 and not all(slot in st for st in states):
            raise ValueError(
                f"Invalid {key}: {group[key]!r} in group {gi}, whose parameters took steps "
                f"with {key}=0 (expected 0: set {key} before the group's first step)"
            )


def rule_options(rule: Any) -> tuple[str, ...]:
    """A step rule's whole-model options: its dataclass fields but its schedule (the group
    lr is) and a name a group holds as its own (``constant``'s lr: the group lr
    multiplies it)."""
    if not dataclasses.is_dataclass(rule):
        return ()
    fields = dataclasses.fields(rule)
    return tuple(f.name for f in fields if f.init and f.name != "schedule" and f.name not in OWN)


def adopted(rule: Any, agreed_options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The step rule with the agreed options that are its own, and the other options."""
    names = rule_options(rule)
    own = {key: agreed_options[key] for key in names if key in agreed_options}
    rest = {key: value for key, value in agreed_options.items() if key not in own}
    return (dataclasses.replace(rule, **own) if own else rule), rest


def index(items: list, item: Any, local: Callable[[Any], Any] = lambda t: t) -> int:
    """The position of ``item`` itself, or of the parameter whose local shard it is, in
    ``items`` (``list.index`` compares tensors by value), for error messages."""
    return next(i for i, x in enumerate(items) if x is item or local(x) is item)
