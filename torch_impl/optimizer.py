"""``ParameterScaled``, ``PSSPS``, ``PSDASGD``: the theory combinator as torch optimizers.

The same algorithm as ``theory.combinator.parameter_scaled`` (SPEC 3.1, 3.2, 9), on lists
of tensors, with global reductions over every parameter of every group (one ``d`` for the
whole model):

    alpha_k  = scaling rule, per tensor (theory's rule objects, or their foreach versions)
    rho_k    = max over all tensors of max(alpha_k / alpha_{k-1})     (dadapt only)
    lam_k    = step-size rule on the global reductions, times the group's ``lr``
    z_{k+1}  = z_k - lam_k * u_k,  u_k = mhat_k / alpha_k**2
    x_{k+1}  = beta x_k + (1 - beta) z_{k+1}

Conventions (README, "torch_impl"):
- a group's ``lr`` multiplies the step-size rule's step: it is the schedule ``gamma_k``,
  so ``torch.optim.lr_scheduler`` works unchanged;
- the global estimates (``d``, the numerator, ``||g_0||``, ``lr``, ``rho``) are float64
  Python floats in ``optimizer.state["global"]``: the step-size rule runs on the host, from
  reductions (sums of squares, inner products, maxima) made on the device;
- bfloat16 / float16 parameters keep their optimizer state in float32, with a float32
  master copy ``z`` of the parameter (the parameter is its rounding);
- one host synchronisation per step on the fused paths (two on the others: their sweep 1
  computes the new rule state, so it runs after the check, and stores it only once the
  second sync has succeeded): the finiteness of the gradients (and of the
  loss, and ``f >= f*`` for PS-SPS) is checked before anything is changed, so a refused
  step leaves parameters and state untouched; ``skip_nonfinite=True`` skips such a step
  instead of raising (for use with GradScaler-style loops). The same copy brings the
  reductions the step size needs and the last step's D-Adaptation sums, finished then (or
  by ``stats()`` / ``state_dict()``);
- three paths compute the same step: foreach (default, ``torch._foreach_*``), per tensor
  (theory's rule objects through the array API; any rule) and fused (``fused=True``: on
  the CPU compiled sweeps, ``torch_impl.fused``; on CUDA one Triton launch per sweep,
  ``torch_impl.fused_triton``).
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any

import torch

from theory import _validate as check
from theory import scaling as S
from theory.stepsize import constant, dadapt, polyak
from theory.transfer import HOST_STATISTICS, STATISTICS, TRANSFERS, MetricChange
from torch_impl import fused as F
from torch_impl import fused_triton as FT
from torch_impl import plan as P
from torch_impl.foreach_rules import FOREACH, correction, update

Tensors = list[torch.Tensor]
Batch = tuple[dict[str, Any], Tensors, Tensors, list[dict[str, Any]]]  # group, ps, gs, states
LOW_PRECISION = (torch.bfloat16, torch.float16)
STRIDED = torch.strided  # dense layout
CPU_CHUNK = 1 << 16  # elements per foreach chunk on the CPU: temporaries stay cache-sized
F64 = torch.float64
STUCK_STEPS = 100  # steps after which a d that dhat never raised is warned about (once)
MAX_KEYS = frozenset({"amax", "loss_bad", "below"})  # reduced by max; others by sum, but
# a transfer's statistics, reduced by their own op (theory.transfer.STATISTICS)
FUSED_DADAPT = {  # the transfers and normalisers whose statistics the fused kernels compute
    "transfer": ("min_active", "max", "shrink", "none"),
    "normaliser": ("g0/alpha_0", "max_alpha"),
}
RULE_SLOTS = frozenset(k for k in P.STATE_KEYS if k.startswith("scaling."))  # built-in rules'
# shaped as the parameter
PARAM_SIZED = frozenset(P.STATE_KEYS) - RULE_SLOTS | {"g0", "alpha", "x0"}


def _state_dtype(p: torch.Tensor) -> torch.dtype:
    return torch.float32 if p.dtype in LOW_PRECISION else p.dtype


def _state_grad(g: torch.Tensor, p: torch.Tensor, name: str) -> torch.Tensor:
    """``p``'s gradient in its state dtype (float32 for low precision), or a TypeError."""
    if g.layout is not STRIDED:
        raise TypeError(
            f"Sparse gradient for {name} (layout {g.layout}): ParameterScaled needs dense gradients"
        )
    if g.is_complex():
        raise TypeError(f"Complex gradient for {name}")
    dtype = _state_dtype(p)
    return g if g.dtype == dtype else g.to(dtype)


class ParameterScaled(torch.optim.Optimizer):
    """A step-size rule written for SGD, run in the space scaled by ``scaling``.

    Args:
        params: parameters or parameter groups (a group may set ``lr``, ``momentum``,
            ``first_moment`` and ``scaling``).
        step: a ``theory.stepsize`` rule object: ``constant(lr)``, ``polyak(f_star, c,
            eta_max, f_star_tol)`` or ``dadapt(d0, growth_rate=..., dhat=...,
            transfer=..., normaliser=...)``. Its ``schedule`` must be None: in torch the
            schedule is the group ``lr`` (use an LR scheduler).
        scaling: a rule name (``"adam"``, ``"amsgrad"``, ``"adagrad"``, ``"rmsprop"``,
            ``"identity"``, ``"lars"``, ``"lamb"``) or a rule object.
        lr: the multiplier ``gamma_k`` of the step (default 1). The step a group took at its
            last step, ``lam_k * lr`` (a coordinate moved by it times ``mhat / alpha**2``),
            is its ``effective_lr``, for logging (``opt.param_groups[i]["effective_lr"]``).
        momentum: primal averaging ``beta`` (D-Adapt SGD's momentum).
        first_moment: Adam's ``beta1`` for the direction (0: none).
        foreach: use the multi-tensor path where the rule has one (default: yes).
        fused: run each of the two sweeps as fused kernels (element-wise built-in rules;
            the transfers and normalisers of ``FUSED_DADAPT``): on the CPU compiled loops on
            packs of tensors (``torch_impl.fused``: a C++ compiler must be installed; the first step
            compiles for ~20 s), on CUDA one Triton launch per sweep over all tensors
            (``torch_impl.fused_triton``; dense parameters).
        skip_nonfinite: skip (instead of raising on) a step with a NaN/Inf gradient.
        sharded: the parameters are split across the ranks of ``process_group`` (each rank
            passes only its own shard): every global statistic (sums of squares, inner
            products, maxima, the finite check) is all-reduced, so every rank computes the
            unsharded step. Requires an initialised ``torch.distributed``.
        process_group: the group to reduce over (default: the world).
    """

    def __init__(
        self,
        params: Iterable[Any],
        step: Any,
        scaling: str | Any = "identity",
        lr: float = 1.0,
        momentum: float = 0.0,
        first_moment: float = 0.0,
        *,
        foreach: bool | None = None,
        fused: bool = False,
        skip_nonfinite: bool = False,
        sharded: bool = False,
        process_group: Any = None,
    ) -> None:
        if sharded and not torch.distributed.is_initialized():
            raise ValueError("Invalid sharded: True (expected an initialised torch.distributed)")
        if not isinstance(step, (constant, polyak, dadapt)):
            raise TypeError(
                f"Invalid step: {step!r} (expected theory.stepsize.constant, polyak or dadapt)"
            )
        if getattr(step, "schedule", None) is not None:
            raise ValueError(
                "Invalid step: a schedule on the step rule (expected None: in torch the "
                "schedule is the group lr; use torch.optim.lr_scheduler)"
            )
        if fused and foreach:
            raise ValueError("Invalid foreach: True with fused=True (expected at most one)")
        if fused and isinstance(step, dadapt):
            for key, allowed in FUSED_DADAPT.items():
                if getattr(step, key) not in allowed:
                    raise ValueError(
                        f"Invalid {key}: {getattr(step, key)!r} with fused=True (expected one "
                        f"of {allowed}; the others run on the foreach and per-tensor paths)"
                    )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "first_moment": first_moment,
            "scaling": S.by_name(scaling),
        }
        self.step_rule = step
        self.foreach = foreach
        self.fused = fused
        self._plans: dict[int, P.Plan] = {}  # fused path: per group
        self._fused_step: dict[int, tuple] = {}  # fused path: sweep 1 -> sweep 2, per group
        self.skip_nonfinite = skip_nonfinite
        self._warned_stuck = False
        self.sharded = sharded
        self.process_group = process_group
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's, then this optimizer's checks: a refused group is taken out again, so the
        optimizer is left as it was."""
        super().add_param_group(param_group)
        try:
            self._check_group(len(self.param_groups) - 1)
        except Exception:
            self.param_groups.pop()
            raise

    @staticmethod
    def _check_values(group: dict[str, Any], where: str = "") -> None:
        """A group's numbers; checked when it is added and at every step (a scheduler or a
        user may change them: a NaN lr would otherwise turn the parameters into NaN)."""
        check.non_negative(f"lr{where}", group["lr"])
        check.unit_interval(f"momentum{where}", group["momentum"])
        check.unit_interval(f"first_moment{where}", group["first_moment"])

    def _check_group(self, gi: int) -> None:
        group = self.param_groups[gi]
        self._check_values(group)
        group.setdefault("effective_lr", 0.0)  # lam_k * lr of the group's last step
        group["scaling"] = S.by_name(group["scaling"])
        device = next((p.device for g in self.param_groups for p in g["params"]), None)
        for pi, p in enumerate(group["params"]):
            if p.is_complex():
                raise TypeError(f"Invalid parameter: complex dtype {p.dtype} is not supported")
            if p.device != device:  # one d for the whole model: its reductions meet on one
                raise ValueError(
                    f"Invalid parameter device: {p.device} for parameter {pi} of group {gi} "
                    f"(expected {device}, the other parameters' device: the global estimates "
                    "reduce over every parameter on one device; for a model split across "
                    "devices, run a process per device with sharded=True)"
                )
            if self.fused and p.device.type != "cpu" and not FT.available(p.device):
                raise ValueError(
                    f"Invalid parameter device: {p.device} with fused=True (expected cpu, or "
                    "cuda with Triton installed)"
                )
        if self.fused and type(group["scaling"]) not in FOREACH:
            raise ValueError(
                f"Invalid scaling: {group['scaling']!r} with fused=True (expected an "
                f"element-wise built-in rule: {', '.join(r.__name__ for r in FOREACH)})"
            )

    # -- bookkeeping ---------------------------------------------------------------------
    @property
    def _global(self) -> dict[str, Any]:
        return self.state["global"]

    def _init_global(self) -> None:
        if "global" not in self.state:
            self.state["global"] = {
                "k": 0,
                "d": 0.0,
                "numerator": 0.0,
                "g0_norm": 0.0,
                "dhat": 0.0,
                "lr": 0.0,
                "rho": 1.0,
                "amax": 0.0,  # max(alpha) of the last step (0: none yet)
                "d_growths": 0,  # steps at which dhat raised d
            }

    def _needs_rho(self) -> bool:
        return self.step_rule.transfer != "none"

    def _init_param(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        st = self.state[p]
        if st:
            return st
        dt = _state_dtype(p)
        x = p.detach().to(dt)
        st.update(_rule_slots(group["scaling"].init(x)))
        if group["momentum"] > 0 or p.dtype in LOW_PRECISION:
            st["z"] = x.clone()
        if group["first_moment"] > 0:
            st["m"] = torch.zeros_like(x)
        if isinstance(self.step_rule, dadapt):
            st["s"] = torch.zeros_like(x)
            if self.step_rule.normaliser == "g0/alpha_k":
                st["g0"] = torch.zeros_like(x)
            if self.step_rule.transfer == "displacement":
                st["x0"] = x.clone()  # the start: the distance travelled is x - x0
        return st

    def _states(self, group: dict[str, Any], ps: Tensors) -> list[dict[str, Any]]:
        """The state dicts of ``ps``, made where a parameter has none yet."""
        sts = list(map(self.state.__getitem__, ps))  # no Python loop on the common path
        return sts if all(sts) else [self._init_param(p, group) for p in ps]

    def _index(self, group: dict[str, Any]) -> int:
        return _index(self.param_groups, group)

    def _check_state_made(self, group: dict[str, Any], sts: list[dict]) -> None:
        """``momentum`` and ``first_moment`` need state made at a parameter's first step
        (the averaged iterate z, the first moment m): switching one on later is refused
        before anything changes (it would otherwise be ignored, or fail mid-step)."""
        for key, slot in (("momentum", "z"), ("first_moment", "m")):
            if group[key] > 0 and not all(map(dict.__contains__, sts, repeat(slot))):
                raise ValueError(
                    f"Invalid {key}: {group[key]!r} in group {self._index(group)}, whose "
                    f"parameters took steps with {key}=0 (expected 0: set {key} before the "
                    "group's first step)"
                )

    @staticmethod
    def _rule_state(rule: Any, st: dict[str, Any], template: Any) -> Any:
        if "scaling" in st:
            return st["scaling"]
        fields = [st[f"scaling.{i}"] for i in range(len(template))]
        return type(template)._make(fields) if hasattr(template, "_make") else tuple(fields)

    # -- global reductions and the host sync: the one place that knows about sharding -----
    def _fetch(self, part: dict[str, list[torch.Tensor]], loss: Any = None) -> dict[str, float]:
        """The host synchronisation: each partial reduction of ``part`` reduced over its
        entries (tensors, groups) and, when sharded, over the ranks (a maximum for
        ``MAX_KEYS``, a transfer statistic by its own op, a sum otherwise), and this rank's
        loss, as floats (one copy)."""
        keys = list(part)
        values = [_reduce(ts, _op(key)) for key, ts in part.items()]
        if self.sharded and values:
            ops = torch.distributed.ReduceOp
            for op, name in ((ops.MAX, "max"), (ops.MIN, "min"), (ops.SUM, "sum")):
                at = [i for i, key in enumerate(keys) if _op(key) == name]
                if at:
                    both = torch.stack([values[i] for i in at])
                    torch.distributed.all_reduce(both, op, self.process_group)
                    for i, value in zip(at, both.unbind(), strict=True):
                        values[i] = value
        if isinstance(loss, torch.Tensor):
            keys.append("loss")
            values.append(loss)
        out = dict(zip(keys, torch.stack(values).tolist(), strict=True)) if values else {}
        if loss is not None and "loss" not in out:
            out["loss"] = loss
        return out

    # -- the step ------------------------------------------------------------------------
    def _collect(self) -> list[tuple[dict[str, Any], Tensors, Tensors]]:
        out = []
        for gi, group in enumerate(self.param_groups):
            ps, gs = [], []
            for pi, p in enumerate(group["params"]):
                g = p.grad
                if g is None or p.numel() == 0:  # an empty tensor has nothing to update
                    continue
                if g.layout is not STRIDED or g.dtype is not p.dtype or p.dtype in LOW_PRECISION:
                    g = _state_grad(g, p, f"parameter {pi} of group {gi}")
                ps.append(p)  # the step runs under no_grad: no detach needed
                gs.append(g)
            if ps:
                out.append((group, ps, gs))
        return out

    def _preflight(self, batches: list[Batch], loss: Any, part: dict) -> dict[str, float] | None:
        """The one host synchronisation before anything changes: are gradients (and loss)
        finite, and is f >= f* - tol? A gradient norm is non-finite exactly when an entry is
        (ATen accumulates float32 squares in double, so no finite float32 gradient
        overflows); one pass (on the fused path, sweep 1's ``part["gradsq"]``). The same
        copy brings the last step's D-Adaptation sums (finished here) and, on the fused
        path, sweep 1's reductions. Returns the fetched values, or None: a skipped step."""
        if "gradsq" not in part:
            part["gradsq"] = [
                torch.stack(torch._foreach_norm(gs)).to(F64).square().sum()
                for _, _, gs, _ in batches
            ]
        glob, rule = self._global, self.step_rule
        pending = glob.get("pending")  # dropped once finished: a failed sync loses nothing
        if pending is not None:
            part.update(_pending_sums(pending))
        tests_f = isinstance(rule, polyak) and loss is not None
        if self.sharded and loss is not None:  # any rank's verdict on its loss is every rank's
            part["loss_bad"] = [(~torch.isfinite(loss)).to(F64)]
            if tests_f:
                part["below"] = [(loss - rule.f_star < -rule.f_star_tol).to(F64)]
        values = self._fetch(part, loss)
        if pending is not None:
            self._dadapt_finish(values)
        f = values.get("loss", 0.0)
        k = glob["k"]
        finite = math.isfinite(values["gradsq"]) and math.isfinite(f)
        if values.get("loss_bad", 0.0) > 0 or not finite:
            if self.skip_nonfinite:
                return None
            raise FloatingPointError(
                f"Non-finite gradient or loss at step {k}: step refused, parameters and "
                f"state unchanged (skip_nonfinite=True skips such steps){self._culprit(batches)}"
            )
        if tests_f and (values.get("below", 0.0) > 0 or f - rule.f_star < -rule.f_star_tol):
            raise ValueError(
                f"Loss below f_star at step {k}: f = {f!r} < f_star = "
                f"{rule.f_star!r} (f_star must be a lower bound of the loss)"
            )
        return values

    def _culprit(self, batches: list[Batch]) -> str:
        """Where the non-finite values are, for the error (runs only on that path): the first
        parameter with a non-finite gradient, and whether the parameter itself is non-finite
        (an earlier step blew up: its step size is named)."""
        for group, ps, gs, _ in batches:
            for p, g in zip(ps, gs, strict=True):
                if bool(torch.isfinite(g).all()):
                    continue
                where = f"parameter {_index(group['params'], p)} of group {self._index(group)}"
                if bool(torch.isfinite(p).all()):
                    return f"; first non-finite gradient: {where}"
                glob = self._global
                return (
                    f"; {where} itself holds non-finite values: an earlier step diverged "
                    f"(the last step size lr = {glob['lr']!r}, d = {glob['d']!r}, rho = "
                    f"{glob['rho']!r}); with PSDASGD try the default transfer and normaliser "
                    "(docs/findings.md) or a finite growth_rate"
                )
        return "; the gradients are finite: the loss is not"

    def _rule_per_tensor(
        self, rule: Any, ps: Tensors, gs: Tensors, states: list[dict]
    ) -> tuple[Tensors, list[dict]]:
        """The generic path: theory's rule object on each tensor (array API); alpha_k and
        the new rule states (the rule objects never mutate theirs)."""
        alphas, new = [], []
        for p, g, st in zip(ps, gs, states, strict=True):
            x = p.detach().to(g.dtype)
            template = rule.init(x[:0]) if "scaling" not in st else None
            alpha, new_state = rule.update(self._rule_state(rule, st, template), g, x)
            alphas.append(alpha)
            new.append(_rule_slots(new_state))
        return alphas, new

    def _chunks(self, group: dict[str, Any], ps: Tensors, gs: Tensors, sts: list[dict]):
        """(fast, chunks of (params, grads, states)). The fast path runs the foreach kernels
        on the whole list on CUDA (one launch per op) and on one tensor at a time on the CPU,
        where list-at-a-time temporaries cost a page fault per fresh page (measured: 4x
        slower at 10M params)."""
        fast = self.foreach is not False and type(group["scaling"]) in FOREACH
        if fast and ps[0].is_cuda:
            return fast, [(ps, gs, sts)]
        budget = CPU_CHUNK if fast else 1  # elements per chunk; generic path: per tensor
        chunks, start, size = [], 0, 0
        for i, p in enumerate(ps):
            size += p.numel()
            if size >= budget or i == len(ps) - 1:
                chunks.append((ps[start : i + 1], gs[start : i + 1], sts[start : i + 1]))
                start, size = i + 1, 0
        return fast, chunks

    def _sweep_rule(
        self, batches: list[Batch], k: int, g0_unset: bool
    ) -> tuple[dict[str, Tensors], list[tuple[dict, dict]]]:
        """Sweep 1: the partial reductions the step-size rule needs, chunk by chunk, and
        (foreach and per-tensor paths) each tensor's new state (the rule state at step k,
        alpha_k, g_0), staged as (state, new entries): stored once the host sync that
        reads the reductions has succeeded, so a failed sync changes nothing."""
        rule_is = self.step_rule
        rho_needed = self._needs_rho() and k > 0
        part: dict[str, Tensors] = {}
        staged: list[tuple[dict, dict]] = []

        def add(key: str, value: torch.Tensor) -> None:
            part.setdefault(key, []).append(value.to(F64))

        for group, ps, gs, states in batches:
            if self.fused:
                self._fused_rule(group, ps, gs, states, k, add)
                continue
            fast, chunks = self._chunks(group, ps, gs, states)
            for cp, cg, sts in chunks:
                if rho_needed:
                    _derive_alpha(group["scaling"], sts, cg)
                if fast:
                    alphas, new = update(group["scaling"], sts, cg)
                else:
                    alphas, new = self._rule_per_tensor(group["scaling"], cp, cg, sts)
                # rho_k's statistics, over tensors that had an alpha_{k-1} (a parameter whose
                # first gradient comes at this step has none)
                if rho_needed:
                    _transfer_statistics(rule_is.transfer, cp, cg, sts, alphas, add)
                first = g0_unset and _normalised_by(rule_is, "g0/alpha_0")
                if isinstance(rule_is, polyak) or first:
                    gp = torch._foreach_div(cg, alphas)  # g' = g / alpha
                    add("gsq", torch.stack(torch._foreach_norm(gp)).square().sum())
                if isinstance(rule_is, dadapt):
                    add("amax", torch.stack(torch._foreach_max(alphas)).max())
                    if rule_is.normaliser == "g0/alpha_k":
                        if g0_unset:
                            for ahead, g in zip(new, cg, strict=True):
                                ahead["g0"] = g.clone()
                        g0 = [ahead.get("g0", st["g0"]) for st, ahead in zip(sts, new, strict=True)]
                        g0s = torch._foreach_div(g0, alphas)
                        add("g0s", torch.stack(torch._foreach_norm(g0s)).square().sum())
                for st, ahead, a in zip(sts, new, alphas, strict=True):
                    ahead["alpha"] = a
                    staged.append((st, ahead))
        return part, staged

    def _plan(self, group, ps: Tensors, sts: list[dict], layout: Callable) -> P.Plan:
        """The group's plan (``torch_impl.plan``), rebuilt with the path's ``layout(ps, sts,
        _state_dtype)`` only when its parameters or state moved."""
        plan = self._plans.get(id(group))
        if not P.current(plan, ps, sts):
            self._check_kernel_state(group, ps, sts)
            plan = self._plans[id(group)] = P.build(ps, sts, layout(ps, sts, _state_dtype))
        return plan

    def _check_kernel_state(self, group, ps: Tensors, sts: list[dict]) -> None:
        """Every state tensor the kernels address has its parameter's shape and device and
        the state dtype (the kernels read memory as that dtype: a state tensor replaced by
        hand, or a parameter cast by ``model.double()`` after its state was made, would be
        misread, or read out of bounds), else ``ValueError`` naming it, before any change."""
        for p, st in zip(ps, sts, strict=True):
            want = (p.shape, _state_dtype(p), p.device)
            for key in P.STATE_KEYS:
                t = st.get(key)
                if t is None or (t.shape, t.dtype, t.device) == want:
                    continue
                raise ValueError(
                    f"Invalid state {key!r} of parameter {_index(group['params'], p)} of "
                    f"group {self._index(group)}: shape "
                    f"{tuple(t.shape)}, {t.dtype} on {t.device} (expected {tuple(p.shape)}, "
                    f"{want[1]} on {p.device}, as the optimizer makes it for the parameter: "
                    "was the state replaced, or the parameter cast or moved, after its first "
                    "step?)"
                )

    def _fused_rule(self, group, ps: Tensors, gs: Tensors, sts: list[dict], k: int, add) -> None:
        """Sweep 1 of the fused path: Triton on CUDA, compiled C++ kernels on the CPU. Either
        leaves in ``self._fused_step`` the function and tables of its sweep 2."""
        if FT.available(ps[0].device):
            self._triton_rule(group, ps, gs, sts, k, add)
        else:
            self._inductor_rule(group, ps, gs, sts, k, add)

    def _ratio_stats(self) -> tuple[str, ...]:
        """The transfer's statistics a fused sweep 1 computes (fixed for a run: the
        kernel's variant)."""
        return tuple(
            key for key in TRANSFERS[self.step_rule.transfer].needs if key not in HOST_STATISTICS
        )

    def _first_normaliser_step(self) -> bool:
        """Whether this step sets D-Adaptation's normaliser ``g0/alpha_0`` (its first nonzero
        gradient): the one step at which it needs ||g'||^2."""
        return _normalised_by(self.step_rule, "g0/alpha_0") and self._global["g0_norm"] == 0

    def _add_partials(self, add, with_ratio: bool, ratios: dict, amax, gsq, gradsq) -> None:
        """A fused sweep 1's partial reductions, as the step-size rule needs them; the
        transfer's statistics only where the tensors have an alpha_{k-1} (not at their
        first step); ||g'||^2 where the sweep computed it (``gsq`` not None)."""
        add("gradsq", gradsq)
        if with_ratio:
            for key, value in ratios.items():
                add(key, value)
        if gsq is not None:
            add("gsq", gsq)
        if isinstance(self.step_rule, dadapt):
            add("amax", amax)

    def _inductor_rule(self, group, ps: Tensors, gs: Tensors, sts: list[dict], k: int, add) -> None:
        """Sweep 1 as compiled kernels (``torch_impl.fused.rule_sweep``): reductions only
        (the state is advanced in sweep 2), with <g', s_{k-1}> (multiplied by the group's
        lam in sweep 2) and ||g||^2 (the finite check)."""
        rule = group["scaling"]
        with_gsq = isinstance(self.step_rule, polyak)  # the kernel's variants: fixed for a run
        first = self._first_normaliser_step()  # ||g'||^2 eagerly, once: no variant for it
        is_dadapt = isinstance(self.step_rule, dadapt)
        stats = self._ratio_stats()
        plan = self._plan(group, ps, sts, F.packs)
        packs = []
        for (dtype, has_z, _), pack in plan.layout:
            # (state, views, g as a view like x's, unless g is strided), at the step count the
            # pack's tensors share now (the plan's is the count when it was built)
            items = [(plan.states[i], v, gs[i].reshape(v["x"].shape)) for i, v in pack]
            packs.append(((dtype, has_z, items[0][0]["scaling.0"]), items))
        sdots = []
        counts = {n for (_, _, count), _ in packs for n in (count - 1, count)}
        corrections = {n: F.tensor_correction(rule, n) for n in counts}  # once per step count
        for (dtype, _, count), pack in packs:
            c_prev, c = corrections[count - 1], corrections[count]
            variant = (type(rule), dtype, with_gsq, is_dadapt, stats, len(pack))
            run = F.kernel(F.rule_sweep, *variant)
            ratios, amax, gsq, sdot, gradsq = run(
                rule, c_prev, c, [g for _, _, g in pack], [v["rule"] for _, v, _ in pack],
                [v["s"] for _, v, _ in pack] if is_dadapt else None, with_gsq, stats,
            )  # fmt: skip
            ratios = dict(zip(stats, ratios, strict=True))
            if first:
                gsq = F.scaled_gradient_sq(rule, c, [g for _, _, g in pack],
                                           [v["rule"] for _, v, _ in pack])  # fmt: skip
            gsq = gsq if with_gsq or first else None
            self._add_partials(add, k > 0 and count > 0, ratios, amax, gsq, gradsq)
            if is_dadapt:
                sdots.append(sdot)
        self._fused_step[id(group)] = (self._inductor_move, (plan, packs, sdots, corrections))

    def _inductor_move(self, group, lam, dots, s_parts, sweep1) -> None:
        """Sweep 2 as compiled kernels (``torch_impl.fused.move_sweep``) over sweep 1's packs."""
        rule, b1, beta = group["scaling"], group["first_moment"], group["momentum"]
        is_dadapt = isinstance(self.step_rule, dadapt)
        rho = self._rho_s if is_dadapt else 1.0
        # step scalars as 0-dim tensors: kernel arguments, so one kernel serves every step
        lam_t, rho_t = (torch.tensor(x, dtype=F64) for x in (lam, rho))
        plan, packs, sdots, corrections = sweep1
        dots.extend((lam, sdot) for sdot in sdots)  # lam <g', s_{k-1}>
        for st in plan.stale_alpha:
            st.pop("alpha", None)  # left by the foreach path: the fused path derives it
        # 1 - b1^n, n the tensors' own steps (this one included), per step count
        bc1s = {n: torch.tensor(1 - b1 ** (n + 1), dtype=F64) for (_, _, n), _ in packs}
        for (dtype, has_z, count), pack in packs:
            c = corrections[count]  # sweep 1's
            for st, _, _ in pack:
                st["scaling.0"] += 1
            views = {key: [v[key] for _, v, _ in pack] for key in ("x", "rule", "s", "m", "z")}
            present = {key: None if views[key][0] is None else views[key] for key in "smz"}
            x_dtype = views["x"][0].dtype
            run = F.kernel(
                F.move_sweep, type(rule), x_dtype, dtype, is_dadapt, b1 > 0, has_z, len(pack)
            )
            ssq = run(
                rule, c, [g for _, _, g in pack], views["rule"], present["s"], present["m"],
                present["z"], views["x"], lam_t, rho_t, b1, bc1s[count], beta,
            )  # fmt: skip
            if is_dadapt:
                s_parts.append(ssq)

    def _triton_rule(self, group, ps: Tensors, gs: Tensors, sts: list[dict], k: int, add) -> None:
        """Sweep 1 as one Triton launch per kind of tensor (``torch_impl.fused_triton``):
        reductions only, ||g||^2 among them (the finite check). The group's plan
        (``torch_impl.plan``) is rebuilt only when its parameters or state moved."""
        rule, b1, beta = group["scaling"], group["first_moment"], group["momentum"]
        # ||g'||^2: PS-SPS's every step, the g0/alpha_0 normaliser's first (a Triton
        # variant is cheap to build, unlike a CPU kernel: sweep 1 then has no division more)
        with_gsq = isinstance(self.step_rule, polyak) or self._first_normaliser_step()
        stats = self._ratio_stats()  # the kernel's variant: fixed for a run
        plan = self._plan(group, ps, sts, FT.layout)
        gs = FT.laid_out(plan.layout, ps, gs)
        launches = []
        for kind in plan.layout.kinds:
            dtype = kind.key[1]
            count = plan.states[kind.indices[0]]["scaling.0"]  # shared by the kind
            launch = FT.launch(kind, gs)
            consts = FT.consts(rule, count, b1, beta)
            ratios, amax, gsq, gradsq = FT.rule_sweep(
                rule, launch, consts, dtype, with_gsq, stats
            )
            gsq = gsq if with_gsq else None
            self._add_partials(add, k > 0 and count > 0, ratios, amax, gsq, gradsq)
            launches.append((kind, launch, consts))
        # the gradients copied into their parameters' layout must live until sweep 2
        self._fused_step[id(group)] = (self._triton_move, (plan, gs, launches))

    def _triton_move(self, group, lam, dots, s_parts, sweep1) -> None:
        """Sweep 2 as one Triton launch per kind of tensor, with <g', s_{k-1}> and ||s_k||^2."""
        rule, b1, beta = group["scaling"], group["first_moment"], group["momentum"]
        is_dadapt = isinstance(self.step_rule, dadapt)
        rho = self._rho_s if is_dadapt else 1.0
        plan, _, launches = sweep1
        states = plan.states
        for kind, launch, consts in launches:
            _, dtype, x_dtype, has_z, _ = kind.key
            sums = FT.move_sweep(
                rule, launch, consts, dtype, x_dtype, lam, rho, is_dadapt, b1 > 0, has_z, beta > 0
            )
            if is_dadapt:
                dot, ssq = sums
                dots.append((lam, dot))  # lam <g', s_{k-1}>
                s_parts.append(ssq)
            for i in kind.indices:  # after the launch: the GPU need not wait for this loop
                states[i]["scaling.0"] += 1
        for st in plan.stale_alpha:
            st.pop("alpha", None)  # left by the foreach path: the fused path derives it

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, loss: Any = None) -> Any:
        """One step. PS-SPS needs the loss: pass ``closure`` or ``loss=`` (a float or a
        0-dim tensor). Returns the loss."""
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        batches = self._collect()
        if not batches:
            return loss
        for gi, group in enumerate(self.param_groups):
            self._check_values(group, f" of group {gi}")
        self._init_global()
        if isinstance(self.step_rule, polyak) and loss is None:
            raise ValueError(
                f"PS-SPS needs the loss at step {self._global['k']}: pass step(closure) "
                "or step(loss=...)"
            )
        f = None if loss is None else _loss_value(loss, batches[0][1][0].device, self.sharded)
        # zeros: a refused step leaves them as they were
        batches = [(gr, ps, gs, self._states(gr, ps)) for gr, ps, gs in batches]
        for group, _, _, sts in batches:
            self._check_state_made(group, sts)
        part = {}
        if self.fused:  # sweep 1 changes nothing there, and it yields ||g||^2 for the check
            part, _ = self._sweep_rule(batches, self._global["k"], False)
        values = self._preflight(batches, f, part)
        if values is not None:
            self._update(batches, values)
        return loss

    def _update(self, batches: list[Batch], values: dict[str, float]) -> None:
        """The step after the check: sweep 1 (unless fused), the step-size rule on the host
        (float64, from the fetched reductions), sweep 2."""
        glob = self._global
        k = glob["k"]
        staged: list[tuple[dict, dict]] = []
        if not self.fused:  # the second host sync of these paths: sweep 1's reductions
            part, staged = self._sweep_rule(batches, k, glob["g0_norm"] == 0)
            values = values | self._fetch(part)
        rule = self.step_rule
        if "amax" in values:  # the largest alphas of steps k and k-1: kept on the host
            last = glob.get("amax", 0.0) or values["amax"]  # unknown (a checkpoint without it)
            values = values | {"alpha_max": values["amax"], "alpha_prev_max": last}
        rho = _rho(rule.transfer, values) if k > 0 else 1.0
        new = {"rho": rho, **({"amax": values["amax"]} if "amax" in values else {})}
        if isinstance(rule, constant):
            base = rule.lr
        elif isinstance(rule, polyak):
            gsq, h = values["gsq"], values["loss"] - rule.f_star  # gsq: ||g / alpha||^2
            base = 0.0 if h <= 0 or gsq == 0 else min(h / (rule.c * gsq), rule.eta_max)
        else:
            base, moved = self._dadapt_lam(k, rho, values)
            new.update(moved)
        new["lr"] = base
        if not all(map(math.isfinite, new.values())):  # before anything is stored
            if self.skip_nonfinite:
                self._fused_step.clear()
                return
            raise FloatingPointError(_blown_up(k, new, self.step_rule))
        for st, ahead in staged:
            st.update(ahead)
        glob.update(new)
        self._rho_s = rho  # applied to s in sweep 2
        self._sweep_move(batches, base, k)
        glob["k"] = k + 1

    def _dadapt_lam(
        self, k: int, rho: float, values: dict[str, float]
    ) -> tuple[float, dict[str, float]]:
        """lam_k of D-Adaptation in the scaled space (docs/spec.md, PS-DA-SGD), and its global
        state moved to the new metric (``theory.stepsize.dadapt.transfer_state``): returned,
        not stored, so that a step refused for a non-finite value changes nothing."""
        rule: dadapt = self.step_rule
        glob = self._global
        d = glob["d"] * rho
        numerator = glob["numerator"] * (rho * rho)
        g0 = glob["g0_norm"]
        if rule.normaliser == "g0/alpha_0":
            g0 = g0 / rho  # a scaled gradient norm (0 stays 0)
        amax = values["amax"]
        if k == 0:
            d = rule.d0 * amax  # d = d0 * max(alpha_0): d lives in scaled units
        if g0 == 0:
            first = values["gsq"] if rule.normaliser == "g0/alpha_0" else values["gradsq"]
            g0 = math.sqrt(first)
        moved = {"d": d, "numerator": numerator, "g0_norm": g0}
        if g0 == 0:  # no gradient yet: no step
            return 0.0, moved
        if rule.normaliser == "g0/alpha_0":
            return d / g0, moved  # ||g_0 / alpha_0||, moved with the metric
        if rule.normaliser == "max_alpha":
            return d * amax / g0, moved  # ||g_0|| / max(alpha_k)
        norm = math.sqrt(values["g0s"])
        return d / (norm if norm > 0 else 1.0), moved

    def _sweep_move(self, batches: list[Batch], base: float, k: int) -> None:
        """Sweep 2: s = rho s + lam g' (D-Adaptation), then z -= lam mhat / alpha**2 and
        x = beta x + (1 - beta) z. D-Adaptation's sums lam <g', s_{k-1}> and ||s_k||^2 stay
        on the device, pending: the next step's host sync brings them (``_dadapt_finish``)."""
        is_dadapt = isinstance(self.step_rule, dadapt)
        s_parts, dots = [], []
        for group, ps, gs, states in batches:
            lam = group["effective_lr"] = base * group["lr"]  # the step this group took
            if self.fused:
                move, sweep1 = self._fused_step.pop(id(group))
                move(group, lam, dots, s_parts, sweep1)
                continue
            b1 = group["first_moment"]
            own_steps = b1 > 0 and _counts_own_steps(group["scaling"], gs[0])
            _, chunks = self._chunks(group, ps, gs, states)
            for cp, cg, sts in chunks:
                alphas = [st["alpha"] for st in sts]
                u = torch._foreach_div(cg, alphas)  # g' = g / alpha
                if is_dadapt:
                    ss = [st["s"] for st in sts]
                    dots.append((lam, _dot(u, ss)))  # lam <g', s_{k-1}> (times rho later)
                    if k > 0:
                        torch._foreach_mul_(ss, self._rho_s)
                    torch._foreach_add_(ss, torch._foreach_mul(u, lam))  # s += lam g'
                    s_parts.append(torch.stack(torch._foreach_norm(ss)).to(F64).square().sum())
                if b1 > 0:
                    ms = [st["m"] for st in sts]
                    torch._foreach_lerp_(ms, cg, 1 - b1)  # m = b1 m + (1-b1) g
                    # mhat = m / (1 - b1^n), n the tensor's own steps, as torch.optim.Adam
                    n = [st["scaling.0"] for st in sts] if own_steps else [k + 1] * len(sts)
                    u = torch._foreach_div(ms, [1 - b1**i for i in n])
                    torch._foreach_div_(u, alphas)
                torch._foreach_div_(u, alphas)  # u = mhat / alpha**2
                torch._foreach_mul_(u, -lam)
                self._apply(group, cp, sts, u)
        if is_dadapt:
            moved = base * max(group["lr"] for group, *_ in batches) > 0
            self._global["pending"] = {
                "dot": dots, "ssq": s_parts, "rho_s": self._rho_s, "moved": moved
            }  # fmt: skip

    def _apply(self, group, ps: Tensors, sts: list[dict], step: Tensors) -> None:
        """z += step; x = beta x + (1 - beta) z (z is the parameter itself when beta = 0
        and the parameter is full precision)."""
        beta = group["momentum"]
        if "z" not in sts[0]:
            torch._foreach_add_(list(ps), step)
            return
        zs = [st["z"] for st in sts]
        torch._foreach_add_(zs, step)
        if beta == 0:
            for p, z in zip(ps, zs, strict=True):
                p.copy_(z)
            return
        if ps[0].dtype == zs[0].dtype:
            torch._foreach_lerp_([p.detach() for p in ps], zs, 1 - beta)  # x = b x + (1-b) z
            return
        xs = [p.detach().to(z.dtype) for p, z in zip(ps, zs, strict=True)]
        torch._foreach_lerp_(xs, zs, 1 - beta)  # low precision: in float32, then round
        for p, x in zip(ps, xs, strict=True):
            p.copy_(x)

    def _dadapt_finish(self, values: dict[str, float]) -> None:
        """The end of D-Adaptation's pending last step, from its fetched sums: N += lam
        <g', rho s_{k-1}>; dhat = 2 N / ||s||; d = max(d, min(dhat, d growth))."""
        rule: dadapt = self.step_rule
        glob = self._global
        pending = glob.pop("pending")
        dot = sum(lam * values[f"dot.{i}"] for i, (lam, _) in enumerate(pending["dot"]))
        numerator = glob["numerator"] + dot * pending["rho_s"]
        s_norm = math.sqrt(values["ssq"])
        if pending["moved"] and s_norm > 0:  # else dhat is not defined and d stays
            factor = 2.0 if rule.dhat == "code" else 1.0
            dhat = factor * numerator / s_norm
            d = glob["d"]
            glob["d"] = max(
                d, dhat if rule.growth_rate == math.inf else min(dhat, d * rule.growth_rate)
            )
            glob["dhat"] = dhat
            glob["d_growths"] += int(glob["d"] > d)
        glob["numerator"] = numerator
        if glob["d_growths"] == 0 and glob["k"] >= STUCK_STEPS and not self._warned_stuck:
            self._warned_stuck = True
            warnings.warn(
                f"{type(self).__name__}: d has not grown in {glob['k']} steps: dhat = 2 N / "
                f"||s|| never exceeded it (the last dhat: {glob['dhat']!r}, d: {glob['d']!r}), "
                f"so the step is still set by d0 = {rule.d0!r}. If the loss does not fall, "
                "raise d0; opt.stats() shows d, dhat and the numerator N",
                RuntimeWarning,
                stacklevel=_outside_stacklevel(),
            )

    def _settle(self) -> None:
        """Finish a pending D-Adaptation step now (one host sync): before the global
        estimates are read or saved."""
        pending = self.state.get("global", {}).get("pending")
        if pending is not None:
            self._dadapt_finish(self._fetch(_pending_sums(pending)))

    # -- diagnostics and checkpoints -------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """The global diagnostics: k, d, dhat, lr (the scaled-space step lam_k of the last
        step, before the group lr), rho, g0_norm, numerator (floats), d_growths (the steps at
        which dhat raised d); one host sync to finish the last step's D-Adaptation sums."""
        if "global" not in self.state:
            return {"k": 0}
        self._settle()
        return dict(self._global)

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, with the last step's D-Adaptation sums finished first."""
        self._settle()
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's loader, checked first and cast differently. Every state tensor this
        optimizer keeps the size of a parameter (the built-in element-wise rules' state, s,
        m, z, g0, alpha) must have that parameter's shape, else ``ValueError`` names it and
        nothing is loaded (a checkpoint of another model; torch loads it silently). torch
        casts floating state tensors to the parameter's dtype; this loader casts those to
        the state dtype (float32 for bf16/fp16 parameters, whose masters and moments stay
        float32, so a resumed run continues bit-identically; a float64 checkpoint loaded
        into a float32 model is cast, not misread by the fused kernels) and keeps the saved
        dtype of any other state (user rules). Global estimates saved as 0-dim tensors (by
        earlier versions) are read as floats."""
        pairs = self._saved_states(state_dict)
        for group, p, pi, gi, saved in pairs:  # every check before anything is loaded
            self._check_saved_shapes(group, p, pi, gi, saved)
        super().load_state_dict(state_dict)
        for group, p, _, _, saved in pairs:
            sized = _param_sized(group)
            for key, value in saved.items():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    dtype = _state_dtype(p) if key in sized else value.dtype
                    if dtype != self.state[p][key].dtype:
                        self.state[p][key] = value.to(device=p.device, dtype=dtype).clone()
        if "global" in self.state:
            self.state["global"] = {
                "d_growths": 0,  # not kept by earlier versions
                **{
                    key: (value.item() if isinstance(value, torch.Tensor) else value)
                    for key, value in self.state["global"].items()
                },
            }

    def _saved_states(self, state_dict: dict[str, Any]) -> list[tuple]:
        """(group, parameter, its index, group index, its saved state) for each parameter
        with a saved state; none where the groups do not match (torch's loader says so)."""
        saved_groups, groups = state_dict["param_groups"], self.param_groups
        if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in groups]:
            return []
        return [
            (group, p, pi, gi, state_dict["state"][saved_id])
            for gi, (group, saved) in enumerate(zip(groups, saved_groups, strict=True))
            for pi, (p, saved_id) in enumerate(zip(group["params"], saved["params"], strict=True))
            if state_dict["state"].get(saved_id)
        ]

    @staticmethod
    def _check_saved_shapes(group, p: torch.Tensor, pi: int, gi: int, saved: dict) -> None:
        """Each of ``saved``'s parameter-sized state tensors has ``p``'s shape."""
        sized = _param_sized(group)
        for key, value in saved.items():
            if key in sized and isinstance(value, torch.Tensor) and value.shape != p.shape:
                raise ValueError(
                    f"Invalid state_dict: state {key!r} of parameter {pi} of group {gi} "
                    f"has shape {tuple(value.shape)} (expected {tuple(p.shape)}, the "
                    "parameter's: a checkpoint of another model?); nothing loaded"
                )


_INTERNAL = (os.path.dirname(__file__), os.path.dirname(torch.__file__))


def _outside_stacklevel() -> int:
    """For ``warnings.warn`` in the caller: the level of the first frame outside torch_impl
    and torch (the user's ``step()`` or ``stats()`` call, whatever wrappers torch adds)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    return level


def _param_sized(group: dict[str, Any]) -> frozenset[str]:
    """The state keys of a group's parameters that hold parameter-shaped tensors in the state
    dtype: s, m, z, g0, alpha, and the rule state of the built-in element-wise rules."""
    return PARAM_SIZED | RULE_SLOTS if type(group["scaling"]) in FOREACH else PARAM_SIZED


def _index(items: list, item: Any) -> int:
    """The position of ``item`` itself in ``items`` (``list.index`` compares tensors by
    value), for error messages."""
    return next(i for i, x in enumerate(items) if x is item)


def _rule_slots(rule_state: Any) -> dict[str, Any]:
    """A rule state as state entries: ``scaling`` or, for a tuple, ``scaling.0``, ..."""
    if isinstance(rule_state, tuple):
        return {f"scaling.{i}": value for i, value in enumerate(rule_state)}
    return {"scaling": rule_state}


def _pending_sums(pending: dict[str, Any]) -> dict[str, Tensors]:
    """A pending D-Adaptation step's partial sums, for ``_fetch``: each <g', s_{k-1}> apart
    (the host weights it by its group's lam), and the ||s_k||^2."""
    sums = {f"dot.{i}": [dot] for i, (_, dot) in enumerate(pending["dot"])}
    sums["ssq"] = pending["ssq"]
    return sums


def _counts_own_steps(rule: Any, g: torch.Tensor) -> bool:
    """Whether ``rule``'s state is a ``Moments``, whose ``k`` (``scaling.0``, advanced by
    sweep 1) counts its tensor's own steps: every built-in rule's is. A rule with another
    state keeps no count the optimizer can read; its first moment then counts the global
    steps (README, choices)."""
    return isinstance(rule.init(g[:0]), S.Moments)


def _blown_up(k: int, values: dict[str, float], rule: Any) -> str:
    """The error of a step whose step size blew up: which quantity, the step, what to try."""
    bad = ", ".join(f"{key} = {v!r}" for key, v in values.items() if not math.isfinite(v))
    shown = ", ".join(f"{key} = {v!r}" for key, v in values.items() if math.isfinite(v))
    advice = (
        "the step size diverged: with PSDASGD try the default transfer='min_active' and "
        "normaliser='g0/alpha_0' (docs/findings.md), a finite growth_rate or a smaller d0"
        if isinstance(rule, dadapt)
        else "the step size diverged: check f_star and c (PSSPS), or lower the lr"
    )
    return (
        f"Non-finite step size at step {k}: {bad} ({shown}); step refused, parameters and "
        f"state unchanged (skip_nonfinite=True skips such steps). {advice}"
    )


def _op(key: str) -> str:
    """How a partial reduction ``key`` combines over tensors and ranks."""
    if key in STATISTICS:
        return STATISTICS[key].op
    return "max" if key in MAX_KEYS else "sum"


def _reduce(ts: Tensors, op: str) -> torch.Tensor:
    """The maximum, minimum or sum of 0-dim tensors (one: itself, no launch)."""
    if len(ts) == 1:
        return ts[0]
    return getattr(torch.stack(ts), op)()


def _rho(transfer: str, values: dict[str, float]) -> float:
    """rho_k of ``transfer`` from the fetched statistics (theory.transfer: the same
    function as the NumPy reference); 1 where no tensor had an alpha_{k-1} or none is
    needed."""
    needs = TRANSFERS[transfer].needs
    if not all(key in values for key in needs):
        return 1.0
    return TRANSFERS[transfer].rho({key: values[key] for key in needs})


def _normalised_by(rule: Any, normaliser: str) -> bool:
    return isinstance(rule, dadapt) and rule.normaliser == normaliser


def _transfer_statistics(
    transfer: str, ps: Tensors, gs: Tensors, states: list[dict], alphas: Tensors, add: Callable
) -> None:
    """The partial reductions of ``transfer``'s statistics over the tensors that have an
    alpha_{k-1}: the max ratio with foreach kernels, the others per tensor with the very
    element-wise functions of ``theory.transfer.STATISTICS`` (array API)."""
    had = [i for i, st in enumerate(states) if "alpha" in st]
    if not had:
        return
    for key in TRANSFERS[transfer].needs:
        if key in HOST_STATISTICS:
            continue
        if key == "ratio_max":
            ratios = torch._foreach_div([alphas[i] for i in had], [states[i]["alpha"] for i in had])
            add(key, torch.stack(torch._foreach_max(ratios)).max())
            continue
        stat = STATISTICS[key]
        parts = []
        for i in had:
            st = states[i]
            moved = ps[i].detach().to(alphas[i].dtype) - st["x0"] if "x0" in st else None
            value = stat.elementwise(MetricChange(st["alpha"], alphas[i], moved, gs[i]))
            if stat.op == "sum":  # accumulated in float64; a max or min is exact as it is
                value = value.to(F64)
            parts.append(getattr(value, stat.op)().to(F64))
        add(key, _reduce(parts, stat.op))


def _loss_value(loss: Any, device: torch.device, sharded: bool) -> float | torch.Tensor:
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


def _derive_alpha(rule: Any, states: list[dict], gs: Tensors) -> None:
    """alpha at each tensor's last step, from its rule state, for tensors whose last steps
    ran on the fused path (which keeps no alpha); a fresh tensor (no update yet) is left
    without one."""
    todo = [i for i, st in enumerate(states) if "alpha" not in st and st.get("scaling.0", 0) > 0]
    if not todo:
        return
    sts = [states[i] for i in todo]
    c = correction(rule, [st["scaling.0"] - 1 for st in sts])
    for st, a in zip(
        sts, FOREACH[type(rule)].alpha(rule, c, sts, [gs[i] for i in todo]), strict=True
    ):
        st["alpha"] = a


def _dot(a: Tensors, b: Tensors) -> torch.Tensor:
    """sum of the inner products of two tensor lists: one foreach product, one concatenation,
    one reduction (3 kernel launches on CUDA instead of one per tensor)."""
    prods = torch._foreach_mul(a, b)
    return torch.cat([p.reshape(-1) for p in prods]).sum().to(F64)


class PSSPS(ParameterScaled):
    """PS-SPS (paper Alg. 1, SPEC 3.1): ``eta = min((f - f*)/(c ||g/alpha||^2), eta_max)``;
    ``scaling="identity"`` is SPS. Needs the loss: ``step(closure)`` or ``step(loss=...)``.
    ``options``: ``foreach``, ``skip_nonfinite``, ``sharded``, ``process_group``."""

    def __init__(
        self,
        params: Iterable[Any],
        f_star: float = 0.0,
        c: float = 0.5,
        eta_max: float = math.inf,
        scaling: str | Any = "adam",
        lr: float = 1.0,
        *,
        f_star_tol: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(params, polyak(f_star, c, eta_max, f_star_tol), scaling, lr, **options)


class PSDASGD(ParameterScaled):
    """PS-DA-SGD (paper Alg. 2, restored in SPEC 3.2); ``scaling="identity"`` is D-Adapt
    SGD (``dadaptation.DAdaptSGD``). Defaults are the paper's: Adam scaling, momentum 0.9.
    ``transfer`` and ``normaliser``: as ``theory.stepsize.dadapt`` (docs/spec.md).
    ``options``: ``foreach``, ``skip_nonfinite``, ``sharded``, ``process_group``."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        d0: float = 1e-6,
        scaling: str | Any = "adam",
        momentum: float = 0.9,
        growth_rate: float = math.inf,
        *,
        dhat: str = "code",
        transfer: str = "min_active",
        normaliser: str = "g0/alpha_0",
        **options: Any,
    ) -> None:
        step = dadapt(d0, None, growth_rate, dhat, transfer, normaliser)
        super().__init__(params, step, scaling, lr, momentum, **options)
