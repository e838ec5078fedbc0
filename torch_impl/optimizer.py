"""``ParameterScaled``, ``PSSPS``, ``PSDASGD``: the theory combinator as torch optimizers.

The same algorithm as ``theory.combinator.parameter_scaled`` (docs/spec.md 3.1, 3.2, 9), on lists
of tensors, with global reductions over every parameter of every group (one ``d`` for the
whole model):

    alpha_k  = scaling rule, per tensor (theory's rule objects, or their foreach versions)
    rho_k    = the step rule's metric transfer (theory.transfer), over all tensors
    lam_k    = the step-size rule's scalar step on the global reductions, times the group lr
    z_{k+1}  = z_k - lam_k * u_k,  u_k = mhat_k / alpha_k**2
    x_{k+1}  = beta x_k + (1 - beta) z_{k+1}

Shaped as ``torch/optim/adam.py``: this class holds the arguments, the state, the param
groups and the order of a step; each path's two sweeps are module functions
(``multi_tensor``: foreach and per tensor; ``fused``: compiled CPU kernels;
``fused_triton``: CUDA); the host side (the one synchronisation, the checks, theory's
scalar step) is ``host``; checkpoints are ``checkpoint``. A step:

1. sweep 1 (writes nothing): alpha_k, the rule state at step k and the partial reductions
   the step size needs (``Want``);
2. one host synchronisation: the finite check (and ``f >= f*`` for PS-SPS), the
   reductions, and the last step's D-Adaptation sums, finished then (or by ``stats()`` /
   ``state_dict()``); a refused step leaves parameters and state untouched, and
   ``skip_nonfinite=True`` skips it instead of raising;
3. the step size on the host, in float64, by theory's own scalar functions; a non-finite
   one is refused the same way;
4. sweep 2: the state stored, s, the first moment, z and x moved.

Longer than the project's ~400 lines: the class is torch.optim's shape (arguments, their
checks and messages, state, the step's order, checkpoints' entry points), and its parts
are already elsewhere.

Conventions (README, "torch_impl"): a group's ``lr`` multiplies the step-size rule's step
(it is the schedule ``gamma_k``, so ``torch.optim.lr_scheduler`` works unchanged); the
global estimates are float64 Python floats in ``optimizer.state["global"]``; bfloat16 /
float16 parameters keep their optimizer state in float32, with a float32 master copy ``z``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any

import torch

from paramscale.theory import scaling as rules
from paramscale.theory.stepsize import dadapt, polyak
from paramscale.theory.transfer import TRANSFERS
from paramscale.torch_impl import (
    checkpoint,
    distributed,
    fused,
    fused_triton,
    groups,
    host,
    multi_tensor,
)
from paramscale.torch_impl import plan as plans
from paramscale.torch_impl.foreach_rules import FOREACH
from paramscale.torch_impl.multi_tensor import Batch, Want, rule_slots, transfer_reductions

Tensors = list[torch.Tensor]
STRIDED = torch.strided  # dense layout
FUSED_DADAPT = {  # the transfers and normalisers whose statistics the fused kernels compute
    "transfer": ("min_active", "max", "shrink", "none"),
    "normaliser": ("g0/alpha_0", "max_alpha"),
}
# the optimizer's own whole-model options (with the step rule's: ``_whole_model``)
WHOLE_MODEL = ("foreach", "fused", "skip_nonfinite", "sharded", "process_group", "reduce_loss")
STEP_RULE = ("needs", "host_step", "transfer", "transfer_scalars", "scalars_init", "keeps_sum")


def _state_grad(g: torch.Tensor, p: torch.Tensor, name: str) -> torch.Tensor:
    """``p``'s gradient in its state dtype (float32 for low precision), or a TypeError."""
    if g.layout is not STRIDED:
        raise TypeError(
            f"Sparse gradient for {name} (layout {g.layout}): ParameterScaled needs dense gradients"
        )
    if g.is_complex():
        raise TypeError(f"Complex gradient for {name}")
    dtype = checkpoint.state_dtype(p)
    return g if g.dtype == dtype else g.to(dtype)


class ParameterScaled(torch.optim.Optimizer):
    """A step-size rule written for SGD, run in the space scaled by ``scaling``.

    Args:
        params: parameters, named parameters or parameter groups (a group may set
            ``lr``, ``momentum``, ``first_moment``, ``scaling``, ``weight_decay`` and
            ``maximize``; any other key is refused, naming it: ``torch_impl.groups``).
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
        weight_decay: decoupled weight decay, as ``torch.optim.AdamW``: before each step
            the iterate is multiplied by ``1 - effective_lr * weight_decay`` (no
            step-size statistic sees it).
        maximize: maximise the objective (the step descends along ``-g``); refused with a
            step rule that reads the loss (PS-SPS: pass the negated loss instead).
        foreach: use the multi-tensor path where the rule has one (default: yes).
        fused: run each of the two sweeps as fused kernels (element-wise built-in rules;
            the transfers and normalisers of ``FUSED_DADAPT``): on the CPU compiled loops on
            packs of tensors (``torch_impl.fused``: a C++ compiler must be installed; the
            first step of a process compiles for 10-20 s, cached on disk by torch), on CUDA
            one Triton launch per sweep over all tensors (``torch_impl.fused_triton``; dense
            parameters). When: on CUDA, always (the foreach path is 4-9x slower); on the
            CPU, when the steps saved pay for the compile, 1.5-3x faster per step from 0.1M
            parameters on (docs/torch.md: from about 1000 steps at 10M parameters, 10^4 at
            1M). Default False, as in ``torch.optim``.
        skip_nonfinite: skip (instead of raising on) a step with a NaN/Inf gradient or loss,
            or a non-finite step size, for an occasional bad batch (an fp16 overflow). The
            skipped steps are counted (``stats()["skipped"]``), and 10 in a row warn: the
            model itself is then non-finite, which skipping cannot repair.
        sharded: the parameters are split across the ranks of ``process_group`` (each rank
            passes only its own shard): every global statistic (sums of squares, inner
            products, maxima, the finite check) is all-reduced, so every rank computes the
            unsharded step. Requires an initialised ``torch.distributed``.
        process_group: the group to reduce over (default: the world).
        reduce_loss: for a step rule that reads the loss (PS-SPS): average it over the
            ranks of ``process_group`` before the step, so that every rank takes the step
            of the whole batch (data parallelism: DDP, FSDP, ZeRO). Default: when
            ``torch.distributed`` is initialised with more than one rank. One all-reduce of
            one number a step. There, without ``sharded``, the first step also checks that
            the ranks are replicas (one all-gather of two numbers) and warns if not; pass
            False for a model that only this rank trains (no collective at all).

    torch's ``capturable`` and ``differentiable`` are not supported: a step synchronises
    with the host once (the step size is a float64 host scalar) and runs under no_grad.
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
        weight_decay: float = 0.0,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool = False,
        skip_nonfinite: bool = False,
        sharded: bool = False,
        process_group: Any = None,
        reduce_loss: bool | None = None,
    ) -> None:
        if sharded and not torch.distributed.is_initialized():
            raise ValueError("Invalid sharded: True (expected an initialised torch.distributed)")
        if not all(hasattr(step, name) for name in STEP_RULE):
            raise TypeError(
                f"Invalid step: {step!r} (expected theory.stepsize.constant, polyak or dadapt)"
            )
        if getattr(step, "schedule", None) is not None:
            raise ValueError(
                "Invalid step: a schedule on the step rule (expected None: in torch the "
                "schedule is the group lr; use torch.optim.lr_scheduler)"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "first_moment": first_moment,
            "scaling": rules.by_name(scaling),
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        self.step_rule = step
        self.foreach = foreach
        self.fused = fused
        self._plans: dict[int, plans.Plan] = {}  # fused paths: per group
        self.skip_nonfinite = skip_nonfinite
        self._warned_stuck = False
        self.sharded = sharded
        self.process_group = process_group
        self._mesh_group = None  # DTensor parameters sharded over a mesh: its group
        self.reduce_loss = reduce_loss
        self._constructing = True  # whole-model options in groups: settled once all are in
        super().__init__(params, defaults)
        self._constructing = False
        self._adopt(groups.agreed(self.param_groups, self._whole_model()))

    def _adopt(self, options: dict[str, Any]) -> None:
        """The whole-model options (``_whole_model``) the groups agree on become this
        optimizer's; the options and every group checked again."""
        rule_options = {key: options.pop(key) for key in self._rule_options() if key in options}
        if rule_options:
            self.step_rule = dataclasses.replace(self.step_rule, **rule_options)
        for key, value in options.items():
            setattr(self, key, value)
        if self.fused and self.foreach:
            raise ValueError("Invalid foreach: True with fused=True (expected at most one)")
        if self.sharded and not torch.distributed.is_initialized():
            raise ValueError("Invalid sharded: True (expected an initialised torch.distributed)")
        for key, allowed in FUSED_DADAPT.items():
            if self.fused and getattr(self.step_rule, key, allowed[0]) not in allowed:
                raise ValueError(
                    f"Invalid {key}: {getattr(self.step_rule, key)!r} with fused=True "
                    f"(expected one of {allowed}; the others run on the foreach and "
                    "per-tensor paths)"
                )
        if rule_options or options:
            for gi in range(len(self.param_groups)):
                self._check_group(gi)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's, then this optimizer's checks: a refused group is taken out again, so the
        optimizer is left as it was. Once constructed, a group's whole-model options must
        be the optimizer's."""
        super().add_param_group(param_group)
        try:
            self._check_group(len(self.param_groups) - 1)
            if not self._constructing:
                groups.agreed(self.param_groups, self._whole_model())
        except Exception:
            self.param_groups.pop()
            raise

    def _rule_options(self) -> tuple[str, ...]:
        """The step rule's options: its dataclass fields, but for its schedule (the group
        lr is) and a name a group holds as its own (``constant``'s lr: the group lr
        multiplies it)."""
        if not dataclasses.is_dataclass(self.step_rule):
            return ()
        return tuple(
            f.name
            for f in dataclasses.fields(self.step_rule)
            if f.init and f.name != "schedule" and f.name not in groups.OWN
        )

    def _whole_model(self) -> dict[str, Any]:
        """The whole model's options, which groups may set only to one value for all
        (``groups.agreed``): the step rule's and the optimizer's."""
        options = {key: getattr(self.step_rule, key) for key in self._rule_options()}
        for key in WHOLE_MODEL:
            options[key] = getattr(self, key)
        return options

    def _check_group(self, gi: int) -> None:
        group = self.param_groups[gi]
        groups.check_keys(group, gi, self._whole_model())
        self._mesh_group = distributed.mesh_group(
            [p for g in self.param_groups for p in g["params"]]
        )
        if self._mesh_group is not None and self.sharded:
            raise ValueError(
                "Invalid sharded: True with DTensor parameters sharded over a device mesh "
                "(expected False: the statistics are reduced over the mesh's group already)"
            )
        groups.check_values(group)
        if group["maximize"] and self.step_rule.needs_loss:
            raise ValueError(
                f"Invalid maximize: True in group {gi} with PS-SPS (expected False: the "
                "Polyak step reads f - f* of a minimisation; pass the negated loss)"
            )
        group.setdefault("effective_lr", 0.0)  # lam_k * lr of the group's last step
        group["scaling"] = rules.by_name(group["scaling"])
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
            if self.fused and p.device.type != "meta":  # meta: checked again at the step
                self._check_fused_device(p.device)
        if self.fused and type(group["scaling"]) not in FOREACH:
            raise ValueError(
                f"Invalid scaling: {group['scaling']!r} with fused=True (expected an "
                f"element-wise built-in rule: {', '.join(r.__name__ for r in FOREACH)})"
            )

    @staticmethod
    def _check_fused_device(device: torch.device) -> None:
        if device.type == "meta":
            raise RuntimeError(
                "Invalid parameter device: meta at a step with fused=True (expected cpu, or "
                "cuda with Triton installed: materialise the model first, model.to_empty)"
            )
        if device.type != "cpu" and not fused_triton.available(device):
            raise ValueError(
                f"Invalid parameter device: {device} with fused=True (expected cpu, or cuda "
                "with Triton installed)"
            )

    # -- state -----------------------------------------------------------------------------
    @property
    def _global(self) -> dict[str, Any]:
        return self.state["global"]

    def _init_param(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        st = self.state[p]
        if st:
            return st
        rule = self.step_rule
        x = distributed.local(p).detach().to(checkpoint.state_dtype(p))
        st.update(rule_slots(group["scaling"].init(x)))
        if group["momentum"] > 0 or p.dtype in checkpoint.LOW_PRECISION:
            st["z"] = x.clone()
        if group["first_moment"] > 0:
            st["m"] = torch.zeros_like(x)
        if rule.keeps_sum:
            st["s"] = torch.zeros_like(x)
        if getattr(rule, "keeps_g0", False):
            st["g0"] = torch.zeros_like(x)
        if TRANSFERS[rule.transfer].uses_start:
            st["x0"] = x.clone()  # the start: the distance travelled is x - x0
        return st

    def _states(self, group: dict[str, Any], ps: Tensors) -> list[dict[str, Any]]:
        """The state dicts of ``ps``, made where a parameter has none yet."""
        sts = list(map(self.state.__getitem__, ps))  # no Python loop on the common path
        return sts if all(sts) else [self._init_param(p, group) for p in ps]

    def _index(self, group: dict[str, Any]) -> int:
        return _index(self.param_groups, group)

    def _describe(self, group: dict[str, Any]) -> Callable[[torch.Tensor], str]:
        return lambda p: f"parameter {_index(group['params'], p)} of group {self._index(group)}"

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

    def _collect(self) -> list[tuple[dict[str, Any], Tensors, Tensors]]:
        out = []
        for gi, group in enumerate(self.param_groups):
            ps, gs = [], []
            for pi, p in enumerate(group["params"]):
                g = p.grad
                if g is None or distributed.local(p).numel() == 0:  # nothing to update here
                    continue
                g = distributed.local(g)
                if (
                    g.layout is not STRIDED
                    or g.dtype is not p.dtype
                    or p.dtype in checkpoint.LOW_PRECISION
                ):
                    g = _state_grad(g, p, f"parameter {pi} of group {gi}")
                ps.append(p)  # the step runs under no_grad: no detach needed
                gs.append(g)
            if ps:
                out.append((group, ps, groups.ascent(gs, group["maximize"])))
        return out

    # -- the step ----------------------------------------------------------------------------
    @property
    def _sharded(self) -> bool:
        """Whether the statistics are all-reduced: ``sharded=True``, or DTensor parameters
        sharded over a mesh."""
        return self.sharded or self._mesh_group is not None

    def _reduces_loss(self) -> bool:
        return _distributed() if self.reduce_loss is None else self.reduce_loss

    def _device(self) -> torch.device:
        return distributed.local(self.param_groups[0]["params"][0]).device

    def _fetch(self, part: dict[str, Tensors], loss: Any = None) -> dict[str, float]:
        """The host synchronisation (``host.fetch``; all-reduced when sharded)."""
        group = self.process_group if self.sharded else self._mesh_group
        step = self.state.get("global", {}).get("k", 0)
        return host.fetch(part, loss, self._sharded, group, self._device(), step)

    def _want(self) -> Want:
        rule, glob = self.step_rule, self._global
        return Want(
            rule.needs(host.scalars(rule, glob)),
            transfer_reductions(rule.transfer) if glob["k"] > 0 else (),
            rule.steady_needs,
            rule.keeps_sum,
            glob["g0_norm"] == 0,
        )

    def _sweep_rule(self, batches: list[Batch], want: Want, add: Callable) -> Any:
        """Sweep 1 on this optimizer's path; what its sweep 2 needs (writes nothing)."""
        if not self.fused:
            return multi_tensor.sweep_rule(batches, want, add, self.foreach)
        if not batches:  # a rank whose shard holds no gradient this step
            return []
        run = fused_triton._fused_cuda_rule if self._on_triton(batches) else fused._fused_cpu_rule
        describe = self._describe(batches[0][0])
        return run(batches, want, add, self._plans, checkpoint.state_dtype, describe)

    def _sweep_move(
        self, batches: list[Batch], sweep1: Any, lams: list[float], rho: float, k: int
    ) -> tuple[list, Tensors]:
        keeps_sum = self.step_rule.keeps_sum
        if not self.fused:
            for st, new in sweep1:  # the rule state at step k, alpha_k, g_0: stored now
                st.update(new)
            return multi_tensor.sweep_move(batches, lams, rho, keeps_sum, k, self.foreach)
        if not batches:
            return [], []
        move = fused_triton._fused_cuda_move if self._on_triton(batches) else fused._fused_cpu_move
        return move(batches, sweep1, lams, rho, keeps_sum)

    @staticmethod
    def _on_triton(batches: list[Batch]) -> bool:
        return fused_triton.available(batches[0][1][0].device)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, loss: Any = None) -> Any:
        """One step. PS-SPS needs the loss: pass ``closure`` or ``loss=`` (a float or a
        0-dim tensor). Returns the loss."""
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        collected = self._collect()
        if not collected and not self._sharded:  # sharded: the ranks reduce together
            return loss
        for gi, group in enumerate(self.param_groups):
            groups.check_values(group, f" of group {gi}")
        glob = self.state.setdefault("global", host.new_global())
        rule = self.step_rule
        if rule.needs_loss and loss is None:
            raise ValueError(
                f"PS-SPS needs the loss at step {glob['k']}: pass step(closure) or step(loss=...)"
            )
        device = self._device()
        if self.fused:
            self._check_fused_device(device)
        if loss is not None and rule.needs_loss and self._reduces_loss():
            loss = distributed.mean_over_ranks(loss, device, self.process_group)
        f = None if loss is None else host.loss_value(loss, device, self._sharded)
        batches = [  # the state by parameter; the tensors stepped: the local shards
            (gr, list(map(distributed.local, ps)), gs, self._states(gr, ps))
            for gr, ps, gs in collected
        ]
        for group, _, _, sts in batches:
            self._check_state_made(group, sts)
        if glob["k"] == 0:  # the first step: is the distribution what the options say?
            gs = [g for _, _, step_gs, _ in batches for g in step_gs]
            if self.sharded:
                distributed.refuse_replicas(gs, device, self.process_group)
            elif self._mesh_group is None and self.reduce_loss is not False and _distributed():
                distributed.warn_if_shards(gs, device)
        part: dict[str, Tensors] = {}

        def add(key: str, value: torch.Tensor) -> None:
            part.setdefault(key, []).append(value.to(host.F64))

        sweep1 = self._sweep_rule(batches, self._want(), add)  # 1. writes nothing
        values = self._preflight(batches, f, part)  # 2. the one synchronisation
        if values is None:
            return loss
        new = host.host_step(rule, glob, values)  # 3. theory's scalar step
        lams = [new["lr"] * group["lr"] for group, *_ in batches]
        overflow = host.overflow(batches, lams)
        if not all(map(math.isfinite, new.values())) or overflow:
            if self.skip_nonfinite:
                self._skipped("a non-finite step size")
                return loss
            raise FloatingPointError(host.blown_up(glob["k"], new, rule.keeps_sum, overflow))
        glob.update(new)
        glob["skip_run"] = 0
        for (group, ps, _, sts), lam in zip(batches, lams, strict=True):
            group["effective_lr"] = lam  # the step this group took
            groups.decay(group, ps, sts, lam)
        k = glob["k"]
        dots, s_parts = self._sweep_move(batches, sweep1, lams, new["rho"], k)  # 4.
        if rule.keeps_sum:  # its sums are read at the next sync
            moved = new["lr"] * max((group["lr"] for group, *_ in batches), default=0.0) > 0
            glob["pending"] = {
                "dot": dots,
                "s_sq": s_parts,
                "rho": new["rho"],
                "moved": moved,
                "lams": sorted({new["lr"] * group["lr"] for group in self.param_groups}),
                "device": device,
            }
        glob["k"] = k + 1
        return loss

    def _preflight(self, batches: list[Batch], loss: Any, part: dict) -> dict[str, float] | None:
        """The one host synchronisation, before anything changes: are gradients (and loss)
        finite, and is f >= f* - tol? A gradient norm is non-finite exactly when an entry is
        (ATen accumulates float32 squares in double, so no finite float32 gradient
        overflows). The same copy brings sweep 1's reductions and the last step's
        D-Adaptation sums (finished here). Returns the fetched values, or None: a skipped
        step."""
        if "grad_sq" not in part:
            part["grad_sq"] = [
                torch.stack(torch._foreach_norm(gs)).to(host.F64).square().sum()
                for _, _, gs, _ in batches
            ]
        glob, rule = self._global, self.step_rule
        pending = glob.get("pending")  # dropped once finished: a failed sync loses nothing
        if pending is not None:
            part.update(host.pending_sums(pending, self._sharded))
        tests_f = rule.needs_loss and loss is not None
        if self._sharded and loss is not None:  # any rank's verdict on its loss is every rank's
            part["loss_bad"] = [(~torch.isfinite(loss)).to(host.F64)]
            if tests_f:
                part["below"] = [rule.below_f_star(loss).to(host.F64)]
        values = self._fetch(part, loss)
        if pending is not None:
            self._finish(values)
        f = values.get("loss", 0.0)
        finite = math.isfinite(values["grad_sq"]) and math.isfinite(f)
        if values.get("loss_bad", 0.0) > 0 or not finite:
            if self.skip_nonfinite:
                self._skipped("a non-finite gradient or loss")
                return None
            raise FloatingPointError(
                f"Non-finite gradient or loss at step {glob['k']}: step refused, parameters "
                "and state unchanged (skip_nonfinite=True skips an occasional bad batch; it "
                "cannot repair a model whose own output is non-finite)" + self._culprit(batches)
            )
        if tests_f and (values.get("below", 0.0) > 0 or rule.below_f_star(f)):
            raise ValueError(rule.loss_error(f, glob["k"]))  # this rank's or another's
        return values

    def _skipped(self, why: str) -> None:
        """Count a step skipped under ``skip_nonfinite=True``; ``host.SKIP_RUN`` of them in a
        row are warned about (once a run): the model itself, not a batch, is then
        non-finite, and skipping only hides that."""
        glob = self._global
        glob["skipped"] += 1
        glob["skip_run"] += 1
        if glob["skip_run"] == host.SKIP_RUN:
            warnings.warn(
                f"{type(self).__name__}: {host.SKIP_RUN} steps in a row skipped for {why} "
                f"(step {glob['k']}, {glob['skipped']} skipped in all): the model's own "
                "loss or gradients are non-finite, which skipping cannot repair; restore a "
                "checkpoint, or lower lr (or growth_rate, eta_max)",
                RuntimeWarning,
                stacklevel=host.outside_stacklevel(),
            )

    def _culprit(self, batches: list[Batch]) -> str:
        """Where the non-finite values are, for the error (runs only on that path): the first
        parameter with a non-finite gradient, and whether the parameter itself is non-finite
        (an earlier step blew up: its step size is named)."""
        for group, ps, gs, _ in batches:
            for p, g in zip(ps, gs, strict=True):
                if bool(torch.isfinite(g).all()):
                    continue
                where = self._describe(group)(p)
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

    def _finish(self, values: dict[str, float]) -> None:
        """The pending D-Adaptation step finished (``host.finish``), and a d that dhat has
        not raised in ``STUCK_STEPS`` steps warned about, once."""
        glob = self._global
        host.finish(self.step_rule, glob, values)
        if glob["d_growths"] == 0 and glob["k"] >= host.STUCK_STEPS and not self._warned_stuck:
            self._warned_stuck = True
            warnings.warn(
                host.stuck_warning(type(self).__name__, glob, self.step_rule.d0),
                RuntimeWarning,
                stacklevel=host.outside_stacklevel(),
            )

    def _settle(self) -> None:
        """Finish a pending D-Adaptation step now (one host sync): before the global
        estimates are read or saved."""
        pending = self.state.get("global", {}).get("pending")
        if pending is not None:
            self._finish(self._fetch(host.pending_sums(pending, self._sharded)))

    # -- diagnostics and checkpoints -------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """The global diagnostics: k, d, dhat, lr (the scaled-space step lam_k of the last
        step, before the group lr), rho, g0_norm, numerator, amax (floats), d_growths (the
        steps at which dhat raised d by more than a tie: ``theory.stepsize.GROWTH_RTOL``),
        skipped (the steps ``skip_nonfinite=True`` skipped) and skip_run (the latest of them
        in a row); one host sync to finish the last step's D-Adaptation sums."""
        if "global" not in self.state:
            return {"k": 0}
        self._settle()
        return dict(self._global)

    def __getstate__(self) -> dict[str, Any]:
        """Everything a copy needs to step on (torch's keeps only defaults, state and
        groups): the step rule and the options too; the fused paths' cached plans are
        made again."""
        return {**self.__dict__, "_plans": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """torch's, and the per-group keys a group saved before they existed."""
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in groups.ADDED.items():
                group.setdefault(key, value)

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, with the last step's D-Adaptation sums finished first and
        the scaling rules as plain values (``torch.load(weights_only=True)`` reads it)."""
        self._settle()
        return checkpoint.plain_groups(super().state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's loader, in torch's order: the load-state-dict pre-hooks, then this
        optimizer's checks (``torch_impl.checkpoint``: a checkpoint of another model is
        refused by name with nothing loaded), torch's loading and post-hooks; floating
        state is cast to the state dtype. ``state_dict`` itself is not changed."""
        state_dict = state_dict.copy()  # shallow, as torch's
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            state_dict = state_dict if result is None else result
        state_dict = checkpoint.rules_made(state_dict)
        pairs = checkpoint.saved_states(self.param_groups, state_dict)
        checkpoint.check_shapes(pairs)  # every check before anything is loaded
        for gi, group in enumerate(state_dict["param_groups"]):
            groups.check_keys(group, gi, self._whole_model())
        pre_hooks = self._optimizer_load_state_dict_pre_hooks
        self._optimizer_load_state_dict_pre_hooks = type(pre_hooks)()  # ran above
        try:
            super().load_state_dict(state_dict)
        finally:
            self._optimizer_load_state_dict_pre_hooks = pre_hooks
        checkpoint.cast_loaded(self.state, pairs)


def _distributed() -> bool:
    """Whether ``torch.distributed`` runs with more than one rank."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _index(items: list, item: Any) -> int:
    """The position of ``item`` itself, or of the parameter whose local shard it is, in
    ``items`` (``list.index`` compares tensors by value), for error messages."""
    return next(i for i, x in enumerate(items) if x is item or distributed.local(x) is item)


class PSSPS(ParameterScaled):
    """PS-SPS (paper Alg. 1, docs/spec.md 3.1): ``eta = min((f - f*)/(c ||g/alpha||^2),
    eta_max)``; ``scaling="identity"`` is SPS. Needs the loss: ``step(closure)`` or
    ``step(loss=...)``. ``c = 1`` as ``theory.optimizers.ps_sps`` (the reason there).

    ``eta_max`` (default inf) caps the step, in the units of ``effective_lr`` (Adam's lr
    with Adam scaling). Uncapped, the step is ``(f - f*) / (c ||g'||^2)``: large wherever
    the loss stays far above ``f*`` while the gradient is small (``f* = 0`` for a loss that
    cannot reach 0). A ``RuntimeWarning`` says so when it is left unbounded: on the
    sequence task of ``paramscale train`` the uncapped step reaches 0.1-0.4 and the model
    learns nothing, with ``eta_max=0.01`` it learns the task (docs/findings.md).
    ``options``: ``momentum``, ``first_moment``, ``weight_decay``, ``foreach``, ``fused``,
    ``skip_nonfinite``, ``sharded``, ``process_group`` (docs/torch.md, "Arguments")."""

    def __init__(
        self,
        params: Iterable[Any],
        f_star: float = 0.0,
        c: float = 1.0,
        eta_max: float = math.inf,
        scaling: str | Any = "adam",
        lr: float = 1.0,
        *,
        f_star_tol: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(params, polyak(f_star, c, eta_max, f_star_tol), scaling, lr, **options)
        if self.step_rule.eta_max == math.inf:  # the groups may have set it
            warnings.warn(
                "PSSPS: eta_max=inf leaves the Polyak step unbounded where f - f* stays large "
                "and the gradient small (f* = 0 on a loss that cannot reach 0); pass eta_max, "
                "a cap in the units of effective_lr, to bound it",
                RuntimeWarning,
                stacklevel=2,
            )


class PSDASGD(ParameterScaled):
    """PS-DA-SGD (paper Alg. 2; docs/spec.md, PS-DA-SGD); ``scaling="identity"`` is D-Adapt
    SGD (``dadaptation.DAdaptSGD``). Defaults are the paper's: Adam scaling, momentum 0.9.
    ``transfer`` and ``normaliser``: as ``theory.stepsize.dadapt`` (docs/spec.md).
    ``options``: ``first_moment``, ``weight_decay``, ``maximize``, ``foreach``, ``fused``,
    ``skip_nonfinite``, ``sharded``, ``process_group`` (docs/torch.md, "Arguments")."""

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
