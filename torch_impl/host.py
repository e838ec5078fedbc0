"""The host side of a step: the one synchronisation that reads the device's partial
reductions (reduced over the ranks when the parameters are sharded), the checks made
before anything changes, and the step size from the step rule's scalar functions.

The step-size math is not here: ``rule.step``, ``rule.transfer_scalars`` and
``rule.settle`` (``theory.stepsize``) and ``theory.transfer.TRANSFERS[...].rho`` are the
very functions the NumPy reference runs; this module only feeds them floats. The global
state is float64 Python floats in ``optimizer.state["global"]``: the step count ``k``, the
last step ``lr`` (lam_k) and ``rho``, ``amax`` (max alpha of the last step, for the
transfers), the skip counters, and the rule's scalars by their field names. A handful of
scalar operations cost nothing on the host and ~10 us each as device operations.

Partial reductions are named (``theory.reductions.REDUCTIONS``, and, when sharded, the
loss verdicts ``loss_bad`` and ``below``); each combines over tensors and ranks by its own
operation. Those of the move (the rule's move and moved stages) wait in
``state["global"]["pending"]`` until the next synchronisation (``settle``).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

from paramscale.theory.reductions import REDUCTIONS
from paramscale.theory.transfer import HOST_STATISTICS, REANCHOR, TRANSFERS
from paramscale.torch_impl import distributed

F64 = torch.float64
Tensors = list[torch.Tensor]
NEUTRAL = {"sum": 0.0, "max": -math.inf, "min": math.inf}  # a rank with nothing to reduce
SKIP_RUN = 10  # skipped steps in a row after which skip_nonfinite=True warns (once a run)
HOST_KEYS = ("k", "lr", "rho", "amax", "skipped", "skip_run")  # besides the rule's scalars


def new_global(rule: Any) -> dict[str, Any]:
    """``optimizer.state["global"]`` before the first step."""
    return {
        "k": 0,
        "lr": 0.0,  # lam_k of the last step
        "rho": 1.0,
        "amax": 0.0,  # max(alpha) of the last step (0: none yet)
        "skipped": 0,  # steps skipped for a non-finite value (skip_nonfinite=True)
        "skip_run": 0,  # of them, the latest in a row
        **rule.init_scalars()._asdict(),
    }


def op(key: str) -> str:
    """How a partial reduction ``key`` combines over tensors and ranks."""
    return REDUCTIONS[key].op if key in REDUCTIONS else "max"  # the loss verdicts: any rank


def reduce(ts: Tensors, how: str, device: Any = None) -> torch.Tensor:
    """The maximum, minimum or sum of 0-dim tensors (one: itself, no launch; none: the
    neutral value, on ``device``)."""
    if not ts:
        return torch.tensor(NEUTRAL[how], dtype=F64, device=device)
    if len(ts) == 1:
        return ts[0]
    return getattr(torch.stack(ts), how)()


def fetch(
    part: dict[str, Tensors],
    loss: Any = None,
    sharded: bool = False,
    group: Any = None,
    device: Any = None,
    step: int = -1,
) -> dict[str, float]:
    """The host synchronisation: each partial reduction of ``part`` reduced over its entries
    (tensors, groups) and, when ``sharded``, over the ranks of ``group`` (one collective per
    operation, after the ranks agreed on the statistics: ``distributed.agreed_keys``), and
    this rank's loss, as floats (one copy)."""
    keys = distributed.agreed_keys(list(part), group, step) if sharded else list(part)
    values = [reduce(part.get(key, []), op(key), device) for key in keys]
    if sharded and values:  # two all-reduces: the sums, and the maxima with min(x) = -max(-x)
        ops = torch.distributed.ReduceOp
        sign = {"max": 1.0, "min": -1.0}
        for how, names in ((ops.MAX, ("max", "min")), (ops.SUM, ("sum",))):
            at = [i for i, key in enumerate(keys) if op(key) in names]
            if at:
                flips = [sign.get(op(keys[i]), 1.0) for i in at]
                both = torch.stack([f * values[i] for f, i in zip(flips, at, strict=True)])
                torch.distributed.all_reduce(both, how, group)
                for i, f, value in zip(at, flips, both.unbind(), strict=True):
                    values[i] = f * value  # negation is exact
    if isinstance(loss, torch.Tensor):
        keys.append("loss")
        values.append(loss)
    out = dict(zip(keys, torch.stack(values).tolist(), strict=True)) if values else {}
    if loss is not None and "loss" not in out:
        out["loss"] = loss
    return out


def loss_value(loss: Any, device: torch.device, sharded: bool) -> float | torch.Tensor:
    """The loss: a float (a Python number), or a float64 0-dim tensor on ``device`` (a
    tensor, which keeps its value; any loss when sharded: the ranks agree on its checks)."""
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(f"Invalid loss: shape {tuple(loss.shape)} (expected a scalar)")
        return loss.detach().reshape(()).to(device=device, dtype=F64)
    try:
        value = float(loss)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Invalid loss: {loss!r} (expected a number or a 0-dim tensor)") from exc
    return torch.tensor(value, dtype=F64, device=device) if sharded else value


def step_loss(rule: Any, loss: Any, k: int, name: str, device: torch.device, sharded: bool,
              reduce_loss: bool | None, group: Any) -> tuple[Any, Any]:  # fmt: skip
    """The loss as given and as the step reads it: refused when the rule reads it and none
    came, averaged over the ranks where it should be (``reduces_loss``), then a float or a
    float64 0-dim tensor (``loss_value``)."""
    if rule.needs_loss and loss is None:
        raise ValueError(
            f"{name} needs the loss at step {k} (its step rule reads it): pass "
            "step(closure) or step(loss=...)"
        )
    if loss is not None and rule.needs_loss and reduces_loss(reduce_loss):
        loss = distributed.mean_over_ranks(loss, device, group)
    return loss, None if loss is None else loss_value(loss, device, sharded)


def reduces_loss(reduce_loss: bool | None) -> bool:
    """Whether the loss is averaged over the ranks: ``reduce_loss``, by default when
    ``torch.distributed`` runs with more than one rank."""
    return distributed.running() if reduce_loss is None else reduce_loss


def culprit(batches: list, glob: dict[str, Any], describe: Any, advice: str) -> str:
    """Where the non-finite values are, for the error (runs only on that path): the first
    parameter with a non-finite gradient, and whether the parameter itself is non-finite
    (an earlier step blew up: its step size is named)."""
    for group, ps, gs, _ in batches:
        for p, g in zip(ps, gs, strict=True):
            if bool(torch.isfinite(g).all()):
                continue
            where = describe(group)(p)
            if bool(torch.isfinite(p).all()):
                return f"; first non-finite gradient: {where}"
            shown = ", ".join(f"{key} = {glob[key]!r}" for key in glob if key not in HOST_KEYS)
            return (
                f"; {where} itself holds non-finite values: an earlier step diverged (the "
                f"last step size lr = {glob['lr']!r}, rho = {glob['rho']!r}"
                + (f", {shown}" if shown else "")
                + f"). {advice}"
            )
    return "; the gradients are finite: the loss is not"


def with_host_statistics(glob: dict[str, Any], values: dict[str, float]) -> dict[str, float]:
    """``values`` with the largest alphas of this step and the last (``HOST_STATISTICS``),
    which the host keeps instead of a sweep reducing them again."""
    if "alpha_max" not in values:
        return values
    last = glob.get("amax", 0.0) or values["alpha_max"]  # unknown: a checkpoint without it
    return values | dict(zip(HOST_STATISTICS, (values["alpha_max"], last), strict=True))


def rho(transfer: str, values: dict[str, float], reanchor: bool = False) -> float:
    """rho_k of ``transfer`` from the fetched reductions (``theory.transfer``, the same
    function as the NumPy reference; ``reanchor``: an anchored one's anchor moves now); 1
    where no tensor had an alpha_{k-1}."""
    needs = TRANSFERS[transfer].needs
    if not all(key in values for key in needs):
        return 1.0
    return TRANSFERS[transfer].rho({**{key: values[key] for key in needs}, REANCHOR: reanchor})


def anchored(rule: Any) -> bool:
    """Whether the rule's transfer keeps an anchor (``theory.transfer``)."""
    return TRANSFERS[rule.transfer].anchored


def scalars(rule: Any, glob: dict[str, Any]) -> Any:
    """The rule's scalar state (``theory.stepsize``) from ``state["global"]``."""
    init = rule.init_scalars()
    return type(init)(*(glob.get(key, value) for key, value in init._asdict().items()))


def host_step(rule: Any, glob: dict[str, Any], values: dict[str, float]) -> dict[str, float]:
    """The new entries of ``state["global"]`` for this step, not stored (a step refused for
    a non-finite value must change nothing): ``rho``, ``lr`` (lam_k), ``amax`` and the
    rule's scalars, moved to the new metric and stepped; an anchored transfer's
    ``reanchor``: whether the step raised the rule's estimate (settle may too)."""
    k = glob["k"]
    values = with_host_statistics(glob, values)
    moving = k > 0 and rule.transfer != "none"
    rho_k = rho(rule.transfer, values, glob.get(REANCHOR, False)) if moving else 1.0
    sc = scalars(rule, glob)
    if moving:
        sc = rule.transfer_scalars(sc, rho_k)
    lam, stepped = rule.step(sc, {"k": k, **values})
    new = {"rho": rho_k, "lr": lam, **stepped._asdict()}
    if anchored(rule):
        new[REANCHOR] = rule.raised(sc, stepped)
    if "alpha_max" in values:
        new["amax"] = values["alpha_max"]
    return new


def settle(rule: Any, glob: dict[str, Any], values: dict[str, float]) -> None:
    """The end of the last step from its move's fetched reductions (``rule.settle``)."""
    pending = glob.pop("pending")
    sums = {"k": pending["k"], "lr": pending["lr"], "rho": pending["rho"]}
    sums.update({key: values[key] for key in pending["parts"]})
    before = scalars(rule, glob)
    sc, _ = rule.settle(before, sums)
    glob.update(sc._asdict())
    if anchored(rule):
        glob[REANCHOR] = glob.get(REANCHOR, False) or rule.raised(before, sc)


class NonFinite(FloatingPointError):
    """A step with a non-finite gradient or loss (refused, or skipped by the caller)."""


def preflight(
    rule: Any,
    glob: dict[str, Any],
    part: dict[str, Tensors],
    loss: Any,
    fetch: Callable[..., dict[str, float]],
    sharded: bool,
) -> dict[str, float]:
    """The one host synchronisation, before anything changes: every partial reduction of
    ``part`` and the pending move's, fetched (``fetch``) in one copy; the last step settled;
    then is every gradient (and the loss) finite (``NonFinite`` if not), does the rule
    accept the loss (ValueError if not)? A gradient norm is non-finite exactly when an
    entry is (ATen accumulates float32 squares in double, so no finite float32 gradient
    overflows)."""
    pending = glob.get("pending")  # dropped once settled: a failed sync loses nothing
    if pending is not None:
        part.update(pending["parts"])
    reads_loss = rule.needs_loss and loss is not None
    if sharded and loss is not None:  # any rank's verdict on its loss is every rank's
        part["loss_bad"] = [(~torch.isfinite(loss)).to(F64)]
        if reads_loss:
            part["below"] = [torch.as_tensor(rule.refuses_loss(loss)).to(F64)]
    values = fetch(part, loss)
    if pending is not None:
        settle(rule, glob, values)
    f = values.get("loss", 0.0)
    if values.get("loss_bad", 0.0) > 0 or not (
        math.isfinite(values["grad_sq"]) and math.isfinite(f)
    ):
        raise NonFinite(
            f"Non-finite gradient or loss at step {glob['k']}: step refused, parameters and "
            "state unchanged (skip_nonfinite=True skips an occasional bad batch; it cannot "
            "repair a model whose own output is non-finite)"
        )
    if reads_loss and (values.get("below", 0.0) > 0 or rule.refuses_loss(f)):
        raise ValueError(rule.loss_error(f, glob["k"]))  # this rank's or another's
    return values


def pending(want: Any, moved: dict[str, Tensors], k: int, lam: float, rho: float,
            top_lr: float) -> dict[str, Any]:  # fmt: skip
    """The move's reductions, read at the next synchronisation: their parts by name (every
    name, with parts or none: the same keys on every rank), the step, its lam times the
    largest group lr (0: nothing moved) and rho."""
    names = want.move + want.moved
    parts = {name: moved.get(name, []) for name in names}
    return {"parts": parts, "k": k, "lr": lam * top_lr, "rho": rho}


def health(rule: Any, glob: dict[str, Any]) -> str | None:
    """The rule's warning about the run so far (``StepRule.health``), or None."""
    return rule.health(scalars(rule, glob), glob["k"])


def skip_warning(name: str, glob: dict[str, Any], why: str) -> str:
    return (
        f"{name}: {SKIP_RUN} steps in a row skipped for {why} (step {glob['k']}, "
        f"{glob['skipped']} skipped in all): the model's own loss or gradients are "
        "non-finite, which skipping cannot repair; restore a checkpoint, or lower lr (or the "
        "step rule's own bounds)"
    )


def float_entries(glob: dict[str, Any]) -> bool:
    """Whether every estimate is a Python float or int (not a tensor, not pending)."""
    return all(isinstance(v, (float, int)) for key, v in glob.items() if key != "pending")


def overflow(batches: list, lams: list[float]) -> str:
    """A group step ``lam`` beyond the largest value of its state dtype (float32's 3.4e38),
    described; "" if none: the kernels could not even take it as a scalar."""
    for (_, _, gs, _), lam in zip(batches, lams, strict=True):
        for dtype in {g.dtype for g in gs}:
            if math.isfinite(lam) and abs(lam) > torch.finfo(dtype).max:
                return f"effective_lr = {lam!r} overflows {dtype}"
    return ""


def blown_up(k: int, values: dict[str, float], advice: str, overflow: str = "") -> str:
    """The error of a step whose step size blew up: which quantity, the step, what to try
    (the rule's ``advice``)."""
    bad = ", ".join(f"{key} = {v!r}" for key, v in values.items() if not math.isfinite(v))
    what = "Non-finite step size" if bad else "Step size out of range"
    bad = ", ".join(filter(None, (bad, overflow)))
    shown = ", ".join(f"{key} = {v!r}" for key, v in values.items() if math.isfinite(v))
    return (
        f"{what} at step {k}: {bad} ({shown}); step refused, parameters and "
        f"state unchanged (skip_nonfinite=True skips such steps). {advice}"
    )


_INTERNAL = (os.path.dirname(__file__), os.path.dirname(torch.__file__))


def outside_stacklevel() -> int:
    """For ``warnings.warn`` in the caller: the level of the first frame outside torch_impl
    and torch (the user's ``step()`` or ``stats()`` call, whatever wrappers torch adds)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    return level
