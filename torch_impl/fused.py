"""Compiled kernels for ``fused=True`` on the CPU: each sweep of the step is one fused loop
per tensor (on CUDA: ``torch_impl.fused_triton``).

The foreach path runs a sweep as ~10 separate element-wise ops, each a pass over memory
with its own temporary. Here ``torch.compile`` (inductor: vectorised C++ with OpenMP on the
CPU) fuses the element-wise chain of a sweep into a loop per tensor, called on packs of 8,
4, 2 or 1 tensors (``packs``, kept in the group's ``torch_impl.plan``), so a step is a
dozen or two kernel calls whatever the model:

- ``rule_sweep`` (reads g, the rule state and s; writes nothing): the step-stage
  reductions the step names (``theory.reductions``: the transfer's ratios, max alpha,
  ||g'||^2, ...) and ||g||^2. Writing nothing makes it double as the finite check: a step
  refused after it has changed nothing;
- ``move_sweep`` (reads g, rule state, s, m, z, x; writes them): the rule's state update,
  the move-stage reductions of s_{k-1}, ``s = rho s + lam g'``, the moved-stage ones,
  the first moment, ``z -= lam mhat / alpha**2`` and ``x = beta x + (1 - beta) z``.

The rule math is the very ``foreach_rules`` functions the foreach path runs, and a
reduction the very ``theory.reductions`` fields. A reduction whose fields read x, x_0 or
g_0 (which the kernels do not address), or that a rule reads in its first steps
(``sweeps.KERNEL_FROM``), is computed eagerly, so a kernel variant is compiled once, for
the steady set. Sweep 1 builds sweep 2's kernel (a first call on copies of its
arguments), so a kernel that cannot be built fails while nothing has changed.

alpha is never stored: alpha_{k-1} comes from the rule state before the update and
alpha_k from the state advanced (into temporaries in sweep 1, in place in sweep 2), which
costs a few flops per element and saves a buffer and its memory traffic: PS-DA-SGD with
Adam scaling and momentum keeps 3 parameter-sized buffers (v, s, z), PS-SPS 1 (v).

Step-dependent scalars (bias corrections, lam, rho) are 0-dim tensors, so one compiled
kernel serves every step and, with dynamic shapes traced size-obliviously, every tensor
size, one element included: a kernel compiles once per rule type, dtype, reduction set and
pack length (``torch_impl.compiled``; about 20 s for the first in a process, a few seconds
for each next, on 2 cores). Reductions accumulate in float64. Needs a C++ compiler
(inductor's CPU backend).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from paramscale.theory.reductions import FIELDS, REDUCTIONS, Coordinates
from paramscale.torch_impl import plan as plans
from paramscale.torch_impl import state as keys
from paramscale.torch_impl.compiled import built, kernel
from paramscale.torch_impl.foreach_rules import FOREACH, Correction, correction
from paramscale.torch_impl.multi_tensor import alphas_of, reduce_eagerly
from paramscale.torch_impl.sweeps import Batch, Move, Sweep, Tensors

F64 = torch.float64
PACKS = (8, 4, 2, 1)  # tensors per compiled-kernel call: at most 4 compiles per kernel
IN_KERNEL = frozenset({"g", "alpha", "alpha_prev", "s"})  # what the kernels' fields may read


def _states(rule_tensors: list[tuple]) -> list[dict]:
    return [dict(zip((keys.SECOND, keys.THIRD), ts, strict=False)) for ts in rule_tensors]


def _partial(name: str, c: Coordinates) -> torch.Tensor:
    """Reduction ``name`` over one tensor's coordinates (theory's fields; sums in float64)."""
    reduction = REDUCTIONS[name]
    values = [FIELDS[f].of(c) for f in reduction.fields]
    if reduction.form == "sq":
        return values[0].to(F64).square().sum()
    if reduction.form == "dot":
        return (values[0].to(F64) * values[1].to(F64)).sum()
    return getattr(values[0], "amax" if reduction.form == "max" else "amin")()


def _combined(name: str, parts: list[torch.Tensor]) -> torch.Tensor:
    """The tensors' partial reductions combined (``Reduction.op``), in float64."""
    return getattr(torch.stack(parts), REDUCTIONS[name].op)().to(F64)


def _reduce(name: str, coordinates: list[Coordinates]) -> torch.Tensor:
    """Reduction ``name`` over a pack's tensors."""
    return _combined(name, [_partial(name, c) for c in coordinates])


def in_kernel(names: tuple[str, ...]) -> tuple[str, ...]:
    """The reductions of ``names`` the kernels compute (their fields read only g, alpha,
    alpha_{k-1} and s)."""
    return tuple(name for name in names if REDUCTIONS[name].reads <= IN_KERNEL)


def rule_sweep(
    rule: Any,
    c_prev: Correction,
    c: Correction,
    gs: Tensors,
    rule_tensors: list[tuple],
    ss: Tensors | None,
    names: tuple[str, ...],
) -> tuple[torch.Tensor, ...]:
    """Reductions only, nothing written: each of ``names`` over the pack's tensors (those
    that read alpha_{k-1} only where the tensors have one: the caller's choice).
    alpha_k comes from the state advanced into new tensors, alpha_{k-1} from the state, so
    neither is stored; sweep 2 advances the state."""
    fr, states = FOREACH[type(rule)], _states(rule_tensors)
    with_prev = any("alpha_prev" in REDUCTIONS[name].reads for name in names)
    prev = fr.alpha(rule, c_prev, states, gs) if with_prev else [None] * len(gs)
    ahead = fr.advance(rule, c, states, gs)  # new tensors: sweep 2 advances the state itself
    alphas = fr.alpha(rule, c, ahead, gs)
    s_of = ss if ss is not None else [None] * len(gs)
    coordinates = [
        Coordinates(g, a, b, s=s) for g, a, b, s in zip(gs, alphas, prev, s_of, strict=True)
    ]
    return tuple(_reduce(name, coordinates) for name in names)


def move_sweep(
    rule: Any,
    c: Correction,
    gs: Tensors,
    rule_tensors: list[tuple],
    ss: Tensors | None,
    ms: Tensors | None,
    zs: Tensors | None,
    xs: Tensors,
    lam: torch.Tensor,
    rho: torch.Tensor,
    b1: float,
    bc1: torch.Tensor,
    beta: float,
    move: tuple[str, ...],
    moved: tuple[str, ...],
) -> tuple[torch.Tensor, ...]:
    """The reductions ``move`` (of s_{k-1}, unweighted), s = rho s + lam g', the reductions
    ``moved`` (of s_k); z -= lam mhat / alpha**2; x = beta x + (1-beta) z, with alpha_k
    recomputed from the rule state advanced in place."""
    fr, states = FOREACH[type(rule)], _states(rule_tensors)
    ahead = fr.advance(rule, c, states, gs)
    for st, new in zip(states, ahead, strict=True):
        for key, t in new.items():
            st[key].copy_(t)  # the state advanced in place (one fused loop)
    alphas = fr.alpha(rule, c, ahead, gs)
    moving, done = [[] for _ in move], [[] for _ in moved]  # partials, tensor by tensor
    for i, (g, alpha, x) in enumerate(zip(gs, alphas, xs, strict=True)):
        u = g / alpha  # g' = g / alpha
        s_i = None if ss is None else ss[i]
        for parts, name in zip(moving, move, strict=True):  # of s_{k-1}
            parts.append(_partial(name, Coordinates(g, alpha, s=s_i)))
        if s_i is not None:
            s_i.mul_(rho).add_(u * lam)
        for parts, name in zip(done, moved, strict=True):  # of s_k
            parts.append(_partial(name, Coordinates(g, alpha, s=s_i)))
        if ms is not None:
            ms[i].lerp_(g, 1 - b1)  # m = b1 m + (1 - b1) g
            u = ms[i] / bc1 / alpha
        step = u / alpha * -lam  # -lam mhat / alpha**2
        if zs is None:
            x.add_(step)
        elif beta == 0:
            zs[i].add_(step)
            x.copy_(zs[i])
        else:
            zs[i].add_(step)
            x.copy_(torch.lerp(x.to(zs[i].dtype), zs[i], 1 - beta))  # x = beta x + (1-beta) z
    names = (*move, *moved)
    return tuple(_combined(name, parts) for name, parts in zip(names, moving + done, strict=True))


def packs(params: Tensors, states: list[dict], state_dtype) -> list:
    """A group's tensors for the kernels: grouped by kind (state dtype, has z, step count)
    and cut into packs of 8, 4, 2 and 1 tensors, so that a handful of kernels (one per pack
    length) serve any model. A pack is a list of (index in the group, views). A pack's
    tensors share their step count (``scaling.k``), hence their bias correction: a
    parameter whose first gradient came late is packed apart (and, at its first step, has
    no alpha_{k-1} to enter rho). The count in the kind is the one at packing time: the
    tensors step together while the packs are kept, so a caller reads the current one from
    a state."""
    kinds: dict[tuple, list] = {}
    for i, (p, st) in enumerate(zip(params, states, strict=True)):
        views = _views(p, st)
        kind = (state_dtype(p), views["z"] is not None, st[keys.STEP])
        kinds.setdefault(kind, []).append((i, views))
    out = []
    for kind, items in kinds.items():
        i = 0
        for size in PACKS:
            while len(items) - i >= size:
                out.append((kind, items[i : i + size]))
                i += size
    return out


def _views(p: torch.Tensor, st: dict[str, Any]) -> dict[str, Any]:
    """x (the parameter), the rule state tensors and s, m, z (None where absent): 1-D views
    when every one of them is contiguous (one compiled kernel then serves every rank)."""
    rule = [st[key] for key in (keys.SECOND, keys.THIRD) if key in st]
    named = [st.get(key) for key in (keys.S, keys.M, keys.Z)]
    present = [t for t in (p.detach(), *rule, *named) if t is not None]
    if all(t.is_contiguous() for t in present):
        present = [t.view(-1) for t in present]
    it = iter(present)
    views: dict[str, Any] = {"x": next(it)}
    views["rule"] = tuple(None if t is None else next(it) for t in rule)
    for key, t in zip("smz", named, strict=True):
        views[key] = None if t is None else next(it)
    return views


def tensor_correction(rule: Any, k: int) -> Correction:
    """``correction(rule, k)`` as float64 0-dim tensors: kernel arguments, not constants."""
    return Correction(*(torch.tensor(float(x), dtype=F64) for x in correction(rule, k)))


# -- the path: the two sweeps of a step on the CPU, over a group's packs ------------------
class Sweep1(NamedTuple):
    """What sweep 2 of a group needs from its sweep 1: the plan, the packs at their step
    counts, the bias corrections by step count."""

    plan: plans.Plan
    packs: list
    corrections: dict[int, Correction]


def _split(names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``names`` for packs whose tensors have an alpha_{k-1}, and for those that do not."""
    return names, tuple(n for n in names if "alpha_prev" not in REDUCTIONS[n].reads)


def _fused_cpu_rule(sweep: Sweep) -> list[Sweep1]:
    """Sweep 1 of every group as compiled kernels (``rule_sweep``): reductions only (the
    state is advanced in sweep 2), ||g||^2 among them (the finite check). The kernels
    compute ``want.kernel`` where their fields allow; every other reduction is computed
    eagerly. Sweep 2's kernels are built here (``_built``)."""
    out, want = [], sweep.want
    compiled = in_kernel(want.kernel)
    kernels = _split(compiled)  # by whether the pack's tensors have an alpha_{k-1}
    eagers = _split(tuple(n for n in want.step if n not in compiled))
    move_names = (in_kernel(want.move), in_kernel(want.moved))
    for batch in sweep.batches:
        group, ps, gs, sts = batch
        rule = group["scaling"]
        describe = sweep.describe(group)
        plan = plans.planned(sweep.plans, group, ps, sts, packs, sweep.state_dtype, describe)
        groups = []
        for (dtype, has_z, _), pack in plan.layout:
            # (state, views, g as a view like x's, unless g is strided), at the step count the
            # pack's tensors share now (the plan's is the count when it was built)
            items = [(plan.states[i], v, gs[i].reshape(v["x"].shape), i) for i, v in pack]
            groups.append(((dtype, has_z, items[0][0][keys.STEP]), items))
        counts = {n for (_, _, count), _ in groups for n in (count - 1, count)}
        corrections = {n: tensor_correction(rule, n) for n in counts}  # once per step count
        for (dtype, has_z, count), pack in groups:
            c_prev, c = corrections[count - 1], corrections[count]
            grads, states = [g for _, _, g, _ in pack], [v["rule"] for _, v, _, _ in pack]
            names, eager = kernels[count == 0], eagers[count == 0]
            ss = [v["s"] for _, v, _, _ in pack] if "s" in want.vectors else None
            if names:  # none before KERNEL_FROM: no kernel to build for the first steps
                run = kernel(rule_sweep, type(rule), dtype, ss is not None, names, len(pack))
                for name, value in zip(names, run(rule, c_prev, c, grads, states, ss, names),
                                       strict=True):  # fmt: skip
                    sweep.add(name, value)
            if eager:
                part = _part(batch, pack)
                prev, alphas = alphas_of(rule, part.states, part.grads)
                reduce_eagerly(eager, part, want, alphas, prev if count > 0 else None, sweep.add)
            variant = _move_variant(rule, group, want, pack, dtype, has_z, move_names)
            if not built(move_sweep, *variant):
                _built(variant, _move_args(rule, group, want, pack, c, count, variant))
        out.append(Sweep1(plan, groups, corrections))
    return out


def _move_variant(rule: Any, group: dict, want: Any, pack: list, dtype: Any, has_z: bool,
                  names: tuple) -> tuple:  # fmt: skip
    """``move_sweep``'s variant for one pack: what its compiled kernel is keyed by."""
    views = pack[0][1]
    keeps_s = "s" in want.vectors and views["s"] is not None
    return (type(rule), views["x"].dtype, dtype, keeps_s, group["first_moment"] > 0, has_z,
            *names, len(pack))  # fmt: skip


def _move_args(
    rule: Any,
    group: dict,
    want: Any,
    pack: list,
    c: Correction,
    count: int,
    variant: tuple,
    lam: Any = None,
    rho: Any = None,
    bc1: Any = None,
) -> tuple:
    """``move_sweep``'s arguments for one pack (step scalars 0 and 1 where not given: a
    build's)."""
    b1, beta = group["first_moment"], group["momentum"]
    views = {key: [v[key] for _, v, _, _ in pack] for key in ("x", "rule", "s", "m", "z")}
    present = {key: None if views[key][0] is None else views[key] for key in "smz"}
    if not variant[3]:
        present["s"] = None
    if bc1 is None:
        bc1 = torch.tensor(1 - b1 ** (count + 1), dtype=F64)  # 1 - b1^n, n: own steps
    lam = torch.zeros((), dtype=F64) if lam is None else lam
    rho = torch.ones((), dtype=F64) if rho is None else rho
    return (rule, c, [g for _, _, g, _ in pack], views["rule"], present["s"], present["m"],
            present["z"], views["x"], lam, rho, b1, bc1, beta, variant[6], variant[7])  # fmt: skip


def _built(variant: tuple, args: tuple) -> None:
    """Sweep 2's kernel built in sweep 1, by a first call on copies of its arguments: a
    kernel that cannot be built fails while nothing has changed."""

    def copy(a: Any) -> Any:
        if isinstance(a, torch.Tensor):
            return a.clone()
        if isinstance(a, (list, tuple)) and not isinstance(a, Correction):
            return type(a)(copy(x) for x in a)
        return a

    kernel(move_sweep, *variant)(*map(copy, args))


def _fused_cpu_move(sweep: Sweep, move: Move) -> None:
    """Sweep 2 of every group as compiled kernels (``move_sweep``) over its sweep 1's packs;
    the move's reductions through ``move.add`` (a weighted one times the group's step)."""
    want = sweep.want
    names = (in_kernel(want.move), in_kernel(want.moved))
    weighted = [REDUCTIONS[name].weighted for name in names[0] + names[1]]
    eager_move = tuple(n for n in want.move if n not in names[0])
    eager_moved = tuple(n for n in want.moved if n not in names[1])
    for batch, one, lam in zip(sweep.batches, move.staged, move.lams, strict=True):
        group = batch.group
        rule, b1 = group["scaling"], group["first_moment"]
        # step scalars as 0-dim tensors: kernel arguments, so one kernel serves every step
        lam_t, rho_t = (torch.tensor(x, dtype=F64) for x in (lam, move.rho))
        for st in one.plan.stale_alpha:
            st.pop(keys.ALPHA, None)  # left by the foreach path: the fused path derives it
        # 1 - b1^n, n the tensors' own steps (this one included), per step count
        bc1s = {n: torch.tensor(1 - b1 ** (n + 1), dtype=F64) for (_, _, n), _ in one.packs}
        for (dtype, has_z, count), pack in one.packs:
            c = one.corrections[count]  # sweep 1's
            if eager_move or eager_moved:
                part = _part(batch, pack)
            if eager_move:  # of s_{k-1}: before the kernel changes it
                _, alphas = alphas_of(rule, part.states, part.grads)
                reduce_eagerly(eager_move, part, want, alphas, None, move.add, lam)
            variant = _move_variant(rule, group, want, pack, dtype, has_z, names)
            args = _move_args(rule, group, want, pack, c, count, variant, lam_t, rho_t,
                              bc1s[count])  # fmt: skip
            for st, _, _, _ in pack:
                st[keys.STEP] += 1
            sums = kernel(move_sweep, *variant)(*args)
            for name, value, w in zip(names[0] + names[1], sums, weighted, strict=True):
                move.add(name, value * lam if w else value)
            if eager_moved:
                _, alphas = alphas_of(rule, part.states, part.grads, advanced=True)
                reduce_eagerly(eager_moved, part, want, alphas, None, move.add)


def _part(batch: Batch, pack: list) -> Batch:
    """The batch's tensors of one pack, in their own shapes."""
    at = [i for _, _, _, i in pack]
    return Batch(batch.group, *([items[i] for i in at] for items in batch[1:]))
