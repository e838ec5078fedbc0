"""``ParameterScaled``: any ``theory.stepsize.StepRule`` run in the space of any scaling rule,
as a torch optimizer (docs/spec.md 3.1, 3.2, 9): the same algorithm as
``theory.combinator.parameter_scaled``, on lists of tensors, with the rule's reductions
taken over every parameter of every group (one step size for the whole model):

    alpha_k  = scaling rule, per tensor (theory's rule objects, or their foreach versions)
    rho_k    = the step rule's metric transfer (theory.transfer), over all tensors
    lam_k    = the step rule's scalar step on its reductions, times the group lr
    z_{k+1}  = z_k - lam_k * u_k,  u_k = mhat_k / alpha_k**2
    x_{k+1}  = beta x_k + (1 - beta) z_{k+1}

Shaped as ``torch/optim/adam.py``: this class holds the arguments, the state, the param
groups and the order of a step; the paths' two sweeps are module functions chosen by
``sweeps.path``; the host side (the one synchronisation, the checks, the rule's scalar
step) is ``host``; groups and their checks are ``groups``; checkpoints ``checkpoint``. A
step:

1. sweep 1 (writes nothing): alpha_k, the rule state at step k and the step-stage
   reductions the rule names;
2. one host synchronisation: the finite check (and the rule's check of the loss), the
   reductions, and the last step's move-stage reductions, settled then (or by
   ``stats()`` / ``state_dict()``); a refused step leaves parameters and state untouched,
   and ``skip_nonfinite=True`` skips it instead of raising;
3. the step size on the host, in float64, by the rule's own scalar functions; a
   non-finite one is refused the same way;
4. sweep 2: the state stored, the vector state and the iterate moved.

Conventions (docs/torch.md): a group's ``lr`` multiplies the rule's step (it is the
schedule ``gamma_k``, so ``torch.optim.lr_scheduler`` works unchanged); the global state
is float64 Python floats in ``optimizer.state["global"]``; bfloat16 / float16 parameters
keep their optimizer state in float32, with a float32 master copy ``z``. The methods with
names (``PSSPS``, ``PSDASGD``, ``PSDoG``, ``PSDoWG``) are ``torch_impl.optimizers``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from paramscale.theory import scaling as rules
from paramscale.theory.stepsize import StepRule
from paramscale.theory.transfer import TRANSFERS
from paramscale.torch_impl import checkpoint, distributed, groups, host
from paramscale.torch_impl import state as keys
from paramscale.torch_impl.foreach_rules import FOREACH
from paramscale.torch_impl.sweeps import Move, Sweep, check_fused_device, path, want_of

Tensors = list[torch.Tensor]
# the optimizer's own whole-model options (with the step rule's: ``_whole_model``)
WHOLE_MODEL = ("foreach", "fused", "skip_nonfinite", "sharded", "process_group", "reduce_loss")


class ParameterScaled(torch.optim.Optimizer):
    """A step-size rule written for SGD, run in the space scaled by ``scaling``.

    ``step``: a ``theory.stepsize.StepRule`` (a built-in one, ``torch_impl.optimizers``
    names them, or a user's; its ``schedule`` is the group ``lr`` here).
    The other arguments, each with its checks and what each path supports, are in
    docs/torch.md ("Arguments"); a group may set the per-group ones, and a whole-model one
    at the value every group has (``torch_impl.groups``). torch's ``capturable`` and
    ``differentiable`` are not supported: a step synchronises with the host once.
    """

    def __init__(
        self,
        params: Iterable[Any],
        step: StepRule,
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
        if not isinstance(step, StepRule):
            raise TypeError(f"Invalid step: {step!r} (expected a theory.stepsize.StepRule)")
        if getattr(step, "schedule", None) is not None:
            raise ValueError(
                "Invalid step: a schedule on the step rule (expected None: in torch the "
                "schedule is the group lr; use torch.optim.lr_scheduler)"
            )
        defaults = {"lr": lr, "momentum": momentum, "first_moment": first_moment,
                    "scaling": rules.by_name(scaling), "weight_decay": weight_decay,
                    "maximize": maximize}  # fmt: skip
        self.step_rule = step
        self.foreach, self.fused, self.skip_nonfinite = foreach, fused, skip_nonfinite
        self.sharded, self.process_group, self.reduce_loss = sharded, process_group, reduce_loss
        self._plans: dict[int, Any] = {}  # fused paths: per group
        self._warned = False  # the rule's health: warned about once
        self._mesh_group = None  # DTensor parameters sharded over a mesh: its group
        self._constructing = True  # whole-model options in groups: settled once all are in
        super().__init__(params, defaults)
        self._constructing = False
        self.step_rule, options = groups.adopted(
            step, groups.agreed(self.param_groups, self._whole_model())
        )
        for key, value in options.items():
            setattr(self, key, value)
        groups.check_options(self.fused, self.foreach, self.sharded)
        for gi in range(len(self.param_groups)):  # again, with the options adopted
            self._check_group(gi)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's, then this optimizer's checks: a refused group is taken out again. Once
        constructed, a group's whole-model options must be the optimizer's."""
        super().add_param_group(param_group)
        try:
            self._check_group(len(self.param_groups) - 1)
            if not self._constructing:
                groups.agreed(self.param_groups, self._whole_model())
        except Exception:
            self.param_groups.pop()
            raise

    def _whole_model(self) -> dict[str, Any]:
        """The options one value serves the whole model: the step rule's and these."""
        options = {key: getattr(self.step_rule, key) for key in groups.rule_options(self.step_rule)}
        return options | {key: getattr(self, key) for key in WHOLE_MODEL}

    def _check_group(self, gi: int) -> None:
        group, params = self.param_groups[gi], [p for g in self.param_groups for p in g["params"]]
        groups.check_keys(group, gi, self._whole_model())
        self._mesh_group = distributed.mesh_group(params, self.sharded)
        groups.check_group(
            group, gi, params[0].device if params else None, self.step_rule.needs_loss
        )
        if self.fused:
            groups.check_fused(group, tuple(FOREACH), check_fused_device)

    # -- the step ----------------------------------------------------------------------------
    def _vectors(self) -> frozenset[str]:
        return self.step_rule.vectors | TRANSFERS[self.step_rule.transfer].vectors

    def _describe(self, group: dict[str, Any]) -> Callable[[torch.Tensor], str]:
        gi = groups.index(self.param_groups, group)
        return lambda p: (
            f"parameter {groups.index(group['params'], p, distributed.local)} of group {gi}"
        )

    @property
    def _sharded(self) -> bool:
        """Whether reductions are all-reduced: ``sharded=True``, or a sharded DTensor mesh."""
        return self.sharded or self._mesh_group is not None

    def _fetch(self, part: dict[str, Tensors], loss: Any = None) -> dict[str, float]:
        """The host synchronisation (``host.fetch``; all-reduced when sharded)."""
        group = self.process_group if self.sharded else self._mesh_group
        step = self.state.get("global", {}).get("k", 0)
        device = distributed.local(self.param_groups[0]["params"][0]).device
        return host.fetch(part, loss, self._sharded, group, device, step)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, loss: Any = None) -> Any:
        """One step. A rule that reads the loss (PS-SPS) needs it: pass ``closure`` or
        ``loss=`` (a float or a 0-dim tensor). Returns the loss."""
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        batches = keys.collect(self.param_groups, self.state, self._vectors())
        if not batches and not self._sharded:  # sharded: the ranks reduce together
            return loss
        for gi, group in enumerate(self.param_groups):
            groups.check_values(group, f" of group {gi}")
        rule = self.step_rule
        glob = self.state.setdefault("global", host.new_global(rule))
        k = glob["k"]
        device = distributed.local(self.param_groups[0]["params"][0]).device
        if self.fused:
            check_fused_device(device)
        loss, f = host.step_loss(rule, loss, k, type(self).__name__, device, self._sharded,
                                 self.reduce_loss, self.process_group)  # fmt: skip
        for b in batches:
            groups.check_made(b.group, groups.index(self.param_groups, b.group), b.states)
        if k == 0:  # the first step: is the distribution what the options say?
            distributed.check_layout([g for b in batches for g in b.grads], device, self.sharded,
                                     self.process_group, self._mesh_group is not None,
                                     self.reduce_loss)  # fmt: skip
        if host.anchored(rule):  # none kept (a checkpoint saved with another transfer)
            keys.anchor(batches, every=False)
        want = want_of(rule, host.scalars(rule, glob), k, self._vectors())
        part: dict[str, Tensors] = {key: [] for key in want.step}  # every rank names each
        sweep = Sweep(batches, want, _adder(part), self._plans, checkpoint.state_dtype,
                      self._describe, k)  # fmt: skip
        run = path(self.fused, self.foreach, device,
                   all(type(b.group["scaling"]) in FOREACH for b in batches))  # fmt: skip
        staged = run.rule(sweep) if batches else None  # 1. writes nothing
        try:  # 2. the one synchronisation
            values = host.preflight(rule, glob, part, f, self._fetch, self._sharded)
        except host.NonFinite as exc:
            if self.skip_nonfinite:
                return self._skipped("a non-finite gradient or loss", loss)
            culprit = host.culprit(batches, glob, self._describe, rule.advice)
            raise FloatingPointError(str(exc) + culprit) from None
        finally:
            self._check_health()
        new = host.host_step(rule, glob, values)  # 3. the rule's scalar step
        lams = [new["lr"] * b.group["lr"] for b in batches]
        overflow = host.overflow(batches, lams)
        if not (math.isfinite(new["lr"]) and math.isfinite(new["rho"])) or overflow:
            if self.skip_nonfinite:
                return self._skipped("a non-finite step size", loss)
            raise FloatingPointError(host.blown_up(k, new, rule.advice, overflow))
        if glob.get(host.REANCHOR):  # the rule raised its estimate at the last step
            keys.anchor(batches, every=True)
        glob.update(new, skip_run=0)
        for b, lam in zip(batches, lams, strict=True):
            b.group["effective_lr"] = lam  # the step this group took
            groups.decay(b.group, b.params, b.states, lam)
            keys.capture(want.capture, b.states, b.grads)
        moved: dict[str, Tensors] = {}
        if batches:
            run.move(sweep, Move(staged, lams, new["rho"], _adder(moved)))  # 4.
            if host.anchored(rule):  # a tensor's first anchor: the metric it stepped in
                keys.anchor(batches, every=False)
        if want.move or want.moved:  # read at the next synchronisation
            top = max(g["lr"] for g in self.param_groups)  # the same on every rank
            glob["pending"] = host.pending(want, moved, k, new["lr"], new["rho"], top)
        glob["k"] = k + 1
        return loss

    def _skipped(self, why: str, loss: Any) -> Any:
        """Count a step ``skip_nonfinite=True`` skips; ``host.SKIP_RUN`` in a row warn (once
        a run): the model itself, not a batch, is then non-finite."""
        glob = self.state["global"]
        glob["skipped"] += 1
        glob["skip_run"] += 1
        if glob["skip_run"] == host.SKIP_RUN:
            message = host.skip_warning(type(self).__name__, glob, why)
            warnings.warn(message, RuntimeWarning, stacklevel=host.outside_stacklevel())
        return loss

    def _check_health(self) -> None:
        """The rule's warning about the run so far (``StepRule.health``), once."""
        message = host.health(self.step_rule, self.state["global"])
        if message is not None and not self._warned:
            self._warned = True
            message = f"{type(self).__name__}: {message}"
            warnings.warn(message, RuntimeWarning, stacklevel=host.outside_stacklevel())

    def _settle(self) -> None:
        """Settle a pending step now (one host sync): before the state is read or saved."""
        glob = self.state.get("global", {})
        if "pending" in glob:
            host.settle(self.step_rule, glob, self._fetch(dict(glob["pending"]["parts"])))
            self._check_health()

    # -- diagnostics and checkpoints -------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """The global state: ``k``, ``lr`` (the scaled-space step lam_k of the last step,
        before the group lr), ``rho``, ``amax``, ``skipped`` / ``skip_run`` and the rule's
        scalars by name (PSDASGD's ``d``, ``dhat``, ...: ``theory.stepsize``); one host sync
        to settle the last step."""
        if "global" not in self.state:
            return {"k": 0}
        self._settle()
        return dict(self.state["global"])

    def __getstate__(self) -> dict[str, Any]:
        """Everything a copy needs to step on (torch's keeps only defaults, state and
        groups): the step rule and the options too; the fused plans are made again."""
        return {**self.__dict__, "_plans": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """torch's, and the per-group keys a group saved before they existed."""
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in groups.ADDED.items():
                group.setdefault(key, value)

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, the last step settled first and the scaling rules as plain
        values (``torch.load(weights_only=True)`` reads it)."""
        self._settle()
        return checkpoint.plain(super().state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's loader, in torch's order: the pre-hooks, then this optimizer's checks
        (``torch_impl.checkpoint``: a checkpoint of another model is refused with nothing
        loaded), torch's loading and post-hooks; floating state cast to the state dtype."""
        state_dict = state_dict.copy()  # shallow, as torch's
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            state_dict = state_dict if result is None else result
        state_dict, pairs = checkpoint.checked(self.param_groups, state_dict, self._whole_model())
        pre_hooks = self._optimizer_load_state_dict_pre_hooks
        self._optimizer_load_state_dict_pre_hooks = type(pre_hooks)()  # ran above
        try:
            super().load_state_dict(state_dict)
        finally:
            self._optimizer_load_state_dict_pre_hooks = pre_hooks
        checkpoint.cast_loaded(self.state, pairs, host.new_global(self.step_rule))


def _adder(part: dict[str, Tensors]) -> Callable[[str, torch.Tensor], None]:
    """``add(name, value)``: a partial reduction into ``part`` (float64)."""

    def add(key: str, value: torch.Tensor) -> None:
        part.setdefault(key, []).append(value.to(host.F64))

    return add
