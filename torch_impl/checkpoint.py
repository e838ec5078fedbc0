"""Loading a checkpoint into ``ParameterScaled``: checked before anything is loaded, and
cast to the dtypes the optimizer keeps its state in.

torch's loader checks only the number of parameters per group, and casts floating state
to each parameter's dtype. Here every parameter-sized state tensor must have its
parameter's shape (a checkpoint of another model is refused by name, with nothing
loaded), and floating state is cast to the state dtype: float32 for bf16/fp16 parameters,
whose masters and moments stay float32 (so a resumed run continues bit-identically), and a
float64 checkpoint loaded into a float32 model is cast, not misread by the fused kernels.
The state of a user's rule keeps its saved dtype. A checkpoint of format 1 named the
rule state by position (``scaling.0``, ...): it is read under the names
``torch_impl.state`` gives them, and its global state gains the entries it lacks at their
starting values.

A checkpoint holds only tensors and plain Python values, so that
``torch.load(weights_only=True)`` reads it: a built-in scaling rule is saved as its name
and hyperparameters (``{"rule": "adam", "beta2": 0.999, "eps": 1e-08}``) and made again on
loading. A user's rule object is saved as it is (loading it then needs
``weights_only=False`` or ``torch.serialization.add_safe_globals``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from paramscale.theory import scaling as rules
from paramscale.torch_impl import plan as plans
from paramscale.torch_impl import state as keys
from paramscale.torch_impl.foreach_rules import FOREACH

LOW_PRECISION = (torch.bfloat16, torch.float16)
RULE_SLOTS = frozenset(k for k in plans.STATE_KEYS if k.startswith(keys.PREFIX))  # built-in rules'
# the state entries shaped as their parameter, whatever the rule
PARAM_SIZED = frozenset(plans.STATE_KEYS) - RULE_SLOTS | {keys.G0, keys.ALPHA, keys.X0, keys.ANCHOR}


def state_dtype(p: torch.Tensor) -> torch.dtype:
    """The dtype a parameter's optimizer state is kept in."""
    return torch.float32 if p.dtype in LOW_PRECISION else p.dtype


def state_grad(g: torch.Tensor, p: torch.Tensor, name: str) -> torch.Tensor:
    """``p``'s gradient in its state dtype (float32 for low precision), or a TypeError."""
    if g.layout is not torch.strided:
        raise TypeError(
            f"Sparse gradient for {name} (layout {g.layout}): ParameterScaled needs dense gradients"
        )
    if g.is_complex():
        raise TypeError(f"Complex gradient for {name}")
    dtype = state_dtype(p)
    return g if g.dtype == dtype else g.to(dtype)


def param_sized(group: dict[str, Any]) -> frozenset[str]:
    """The state keys of a group's parameters that hold parameter-shaped tensors in the state
    dtype: s, m, z, g0, alpha, x0, and the rule state of the built-in element-wise rules."""
    return PARAM_SIZED | RULE_SLOTS if type(group["scaling"]) in FOREACH else PARAM_SIZED


def saved_states(groups: list[dict], state_dict: dict[str, Any]) -> list[tuple]:
    """(group, parameter, its index, group index, its saved state) for each parameter with
    a saved state, the rule state named (format 1's positions read as names); none where
    the groups do not match (torch's loader then says so)."""
    saved_groups = state_dict["param_groups"]
    if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in groups]:
        return []
    out = []
    for gi, (group, saved) in enumerate(zip(groups, saved_groups, strict=True)):
        for pi, (p, saved_id) in enumerate(zip(group["params"], saved["params"], strict=True)):
            st = state_dict["state"].get(saved_id)
            if st:
                template = group["scaling"].init(p.detach().reshape(-1)[:0])
                st = state_dict["state"][saved_id] = keys.positional_to_named(st, template)
                out.append((group, p, pi, gi, st))
    return out


def checked(
    groups: list[dict], state_dict: dict[str, Any], whole_model: dict[str, Any]
) -> tuple[dict, list[tuple]]:
    """A copy of ``state_dict`` fit to load (rules made, the rule state named) and its
    ``saved_states``, after every check (shapes; the groups' keys, a whole-model option
    only at the optimizer's value): nothing of the optimizer is changed yet."""
    from paramscale.torch_impl import groups as checks

    state_dict = rules_made(state_dict)
    state_dict["state"] = dict(state_dict["state"])
    pairs = saved_states(groups, state_dict)
    check_shapes(pairs)
    for gi, group in enumerate(state_dict["param_groups"]):
        checks.check_keys(group, gi, whole_model)
        checks.check_saved(group, gi, whole_model)
    return state_dict, pairs


def check_shapes(pairs: list[tuple]) -> None:
    """Each saved parameter-sized state tensor has its parameter's shape, else ValueError."""
    for group, p, pi, gi, saved in pairs:
        sized = param_sized(group)
        for key, value in saved.items():
            if key in sized and isinstance(value, torch.Tensor) and value.shape != p.shape:
                raise ValueError(
                    f"Invalid state_dict: state {key!r} of parameter {pi} of group {gi} "
                    f"has shape {tuple(value.shape)} (expected {tuple(p.shape)}, the "
                    "parameter's: a checkpoint of another model?); nothing loaded"
                )


def cast_loaded(state: dict, pairs: list[tuple], fresh: dict[str, Any]) -> None:
    """After torch's loader: floating state in the state dtype (``param_sized``) or in its
    saved dtype (any other state); global estimates saved as 0-dim tensors read as floats,
    and the entries a checkpoint lacks at their starting values (``fresh``)."""
    for group, p, _, _, saved in pairs:
        sized = param_sized(group)
        for key, value in saved.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                dtype = state_dtype(p) if key in sized else value.dtype
                if dtype != state[p][key].dtype:
                    state[p][key] = value.to(device=p.device, dtype=dtype).clone()
    if "global" in state:
        loaded = {
            key: (value.item() if isinstance(value, torch.Tensor) else value)
            for key, value in state["global"].items()
        }
        state["global"] = {**fresh, **loaded}


def plain_rule(rule: Any) -> Any:
    """A built-in rule as its name and hyperparameters (plain values); a user's as it is."""
    name = next((key for key, cls in rules._BY_NAME.items() if type(rule) is cls), None)
    if name is None:
        return rule
    hyper = {
        f.name: getattr(rule, f.name)
        for f in dataclasses.fields(rule)
        if f.init and f.name not in ("name", "monotone")
    }
    return {"rule": name, **hyper}


def rule_of(saved: Any) -> Any:
    """The rule a checkpoint's ``scaling`` entry describes (``plain_rule`` undone)."""
    if isinstance(saved, dict) and "rule" in saved:
        hyper = {key: value for key, value in saved.items() if key != "rule"}
        return rules.by_name(saved["rule"], **hyper)
    return saved


def plain(state_dict: dict[str, Any]) -> dict[str, Any]:
    """``state_dict`` with each group's rule as plain values (torch's groups are copies)."""
    for group in state_dict["param_groups"]:
        group["scaling"] = plain_rule(group["scaling"])
    return state_dict


def rules_made(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``state_dict`` whose groups hold rule objects again (the caller's dict and
    its groups are left as they are)."""
    return {
        **state_dict,
        "param_groups": [
            {**group, "scaling": rule_of(group["scaling"])} for group in state_dict["param_groups"]
        ],
    }
