"""The host side of a step: the one synchronisation that reads the device's partial
reductions (reduced over the ranks when the parameters are sharded), the checks made
before anything changes, and the step size from theory's scalar functions.

The step-size math is not here: ``rule.needs``, ``rule.host_step``,
``rule.transfer_scalars`` and ``rule.estimate`` (``theory.stepsize``) and
``theory.transfer.TRANSFERS[...].rho`` are the very functions the NumPy reference runs;
this module only feeds them floats. The global estimates are float64 Python floats in
``optimizer.state["global"]``: a handful of scalar operations cost nothing on the host and
~10 us each as device operations.

Partial reductions are named: the ``StepStats`` fields (``scaled_grad_sq``, ``grad_sq``,
``alpha_max``, ``g0_scaled_sq``), the transfer statistics (``theory.transfer.STATISTICS``),
D-Adaptation's pending sums (``dot.i``, ``s_sq``) and, when sharded, the loss verdicts
(``loss_bad``, ``below``). Each combines over tensors and ranks by its own operation.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import torch

from paramscale.theory.stepsize import StepStats
from paramscale.theory.transfer import HOST_STATISTICS, STATISTICS, TRANSFERS
from paramscale.torch_impl import distributed

F64 = torch.float64
Tensors = list[torch.Tensor]
MAX_KEYS = frozenset({"alpha_max", "loss_bad", "below", "moved"})  # by max; sums otherwise
NEUTRAL = {"sum": 0.0, "max": -math.inf, "min": math.inf}  # a rank with nothing to reduce
STUCK_STEPS = 100  # steps after which a d that dhat never raised is warned about (once)
SKIP_RUN = 10  # skipped steps in a row after which skip_nonfinite=True warns (once a run)
SCALAR_KEYS = ("d", "numerator", "g0_norm")  # D-Adaptation's scalars in state["global"]


def new_global() -> dict[str, Any]:
    """``optimizer.state["global"]`` before the first step."""
    return {
        "k": 0,
        "d": 0.0,
        "numerator": 0.0,
        "g0_norm": 0.0,
        "dhat": 0.0,
        "lr": 0.0,
        "rho": 1.0,
        "amax": 0.0,  # max(alpha) of the last step (0: none yet)
        "d_growths": 0,  # steps at which dhat raised d
        "skipped": 0,  # steps skipped for a non-finite value (skip_nonfinite=True)
        "skip_run": 0,  # of them, the latest in a row
    }


def op(key: str) -> str:
    """How a partial reduction ``key`` combines over tensors and ranks."""
    if key in STATISTICS:
        return STATISTICS[key].op
    return "max" if key in MAX_KEYS else "sum"


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


def with_host_statistics(glob: dict[str, Any], values: dict[str, float]) -> dict[str, float]:
    """``values`` with the largest alphas of this step and the last (``HOST_STATISTICS``),
    which the host keeps instead of a sweep reducing them again."""
    if "alpha_max" not in values:
        return values
    last = glob.get("amax", 0.0) or values["alpha_max"]  # unknown: a checkpoint without it
    return values | dict(zip(HOST_STATISTICS, (values["alpha_max"], last), strict=True))


def rho(transfer: str, values: dict[str, float]) -> float:
    """rho_k of ``transfer`` from the fetched statistics (``theory.transfer``, the same
    function as the NumPy reference); 1 where no tensor had an alpha_{k-1} or the rule
    keeps no scaled state."""
    needs = TRANSFERS[transfer].needs
    if not all(key in values for key in needs):
        return 1.0
    return TRANSFERS[transfer].rho({key: values[key] for key in needs})


def scalars(rule: Any, glob: dict[str, Any]) -> Any:
    """The rule's scalar state (``theory.stepsize``) from ``state["global"]`` (None for a
    rule without one)."""
    init = rule.scalars_init()
    if init is None:
        return None
    return type(init)(*(float(glob[key]) for key in SCALAR_KEYS))


def scalar_entries(sc: Any) -> dict[str, float]:
    """The entries of ``state["global"]`` holding the scalar state ``sc``."""
    return {} if sc is None else dict(zip(SCALAR_KEYS, sc, strict=True))


def step_stats(k: int, values: dict[str, float]) -> StepStats:
    """The rule's ``StepStats`` from the fetched reductions (NaN where not reduced)."""
    rest = (values.get(name, math.nan) for name in StepStats._fields[2:])
    return StepStats(k, values.get("loss"), *rest)


def host_step(rule: Any, glob: dict[str, Any], values: dict[str, float]) -> dict[str, float]:
    """The new entries of ``state["global"]`` for this step, not stored (a step refused for
    a non-finite value must change nothing): ``rho``, ``lr`` (lam_k), ``amax`` and the
    rule's scalars, moved to the new metric and stepped."""
    k = glob["k"]
    values = with_host_statistics(glob, values)
    rho_k = rho(rule.transfer, values) if k > 0 else 1.0
    sc = scalars(rule, glob)
    if sc is not None and k > 0:
        sc = rule.transfer_scalars(sc, rho_k)
    lam, sc = rule.host_step(sc, step_stats(k, values))
    new = {"rho": rho_k, "lr": lam, **scalar_entries(sc)}
    if "alpha_max" in values:
        new["amax"] = values["alpha_max"]
    return new


def finish(rule: Any, glob: dict[str, Any], values: dict[str, float]) -> None:
    """The end of D-Adaptation's pending last step from its fetched sums (``rule.estimate``:
    N += rho sum_groups lam <g', s_{k-1}>; dhat = 2 N / ||s||; d = max(d, min(dhat, ...)))."""
    pending = glob.pop("pending")
    dot = sum(lam * values[f"dot.{j}"] for j, lam in enumerate(_step_sizes(pending)))
    moved = values.get("moved", pending["moved"])  # sharded: any rank's
    s_sq = values["s_sq"] if moved else 0.0  # no move: dhat undefined, d stays
    sc, dhat = rule.estimate(scalars(rule, glob), dot * pending["rho"], s_sq)
    d = glob["d"]
    glob.update(scalar_entries(sc))
    if not math.isnan(dhat):
        glob["dhat"] = dhat
        glob["d_growths"] += int(rule.grew(d, glob["d"]))


def _step_sizes(pending: dict[str, Any]) -> list[float]:
    """The distinct group steps lam of the pending step: of every group (the same list on
    every rank), or of those that stepped here."""
    return pending.get("lams") or sorted({lam for lam, _ in pending["dot"]})


def pending_sums(pending: dict[str, Any], sharded: bool = False) -> dict[str, Tensors]:
    """A pending D-Adaptation step's partial sums, for ``fetch``: <g', s_{k-1}> per distinct
    group step lam (the host weights each by its lam; the same keys on every rank, each
    with its parts on this rank), ||s_k||^2, and, when sharded, whether any rank moved."""
    sums = {
        f"dot.{j}": [dot for lam_i, dot in pending["dot"] if lam_i == lam]
        for j, lam in enumerate(_step_sizes(pending))
    }
    sums["s_sq"] = pending["s_sq"]
    if sharded:
        sums["moved"] = [torch.tensor(float(pending["moved"]), dtype=F64, device=pending["device"])]
    return sums


def stuck_warning(name: str, glob: dict[str, Any], d0: float) -> str:
    return (
        f"{name}: d has not grown in {glob['k']} steps: dhat = 2 N / ||s|| never exceeded it "
        f"(the last dhat: {glob['dhat']!r}, d: {glob['d']!r}), so the step is still set by "
        f"d0 = {d0!r}. If the loss does not fall, raise d0; opt.stats() shows d, dhat and the "
        "numerator N"
    )


def overflow(batches: list, lams: list[float]) -> str:
    """A group step ``lam`` beyond the largest value of its state dtype (float32's 3.4e38),
    described; "" if none: the kernels could not even take it as a scalar."""
    for (_, _, gs, _), lam in zip(batches, lams, strict=True):
        for dtype in {g.dtype for g in gs}:
            if math.isfinite(lam) and abs(lam) > torch.finfo(dtype).max:
                return f"effective_lr = {lam!r} overflows {dtype}"
    return ""


def blown_up(k: int, values: dict[str, float], keeps_sum: bool, overflow: str = "") -> str:
    """The error of a step whose step size blew up: which quantity, the step, what to try."""
    bad = ", ".join(f"{key} = {v!r}" for key, v in values.items() if not math.isfinite(v))
    what = "Non-finite step size" if bad else "Step size out of range"
    bad = ", ".join(filter(None, (bad, overflow)))
    shown = ", ".join(f"{key} = {v!r}" for key, v in values.items() if math.isfinite(v))
    advice = (
        "The step size diverged: with PSDASGD try the default transfer='min_active' and "
        "normaliser='g0/alpha_0' (docs/findings.md), a finite growth_rate or a smaller d0"
        if keeps_sum
        else "The step size diverged: check f_star and c, or bound it with eta_max (PSSPS)"
    )
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
