"""Compiled kernels for ``fused=True`` on the CPU: each sweep of the step is one fused loop
per tensor (on CUDA: ``torch_impl.fused_triton``).

The foreach path runs a sweep as ~10 separate element-wise ops, each a pass over memory
with its own temporary. Here ``torch.compile`` (inductor: vectorised C++ with OpenMP on the
CPU) fuses the element-wise chain of a sweep into a loop per tensor, called on packs of 8,
4, 2 or 1 tensors (``packs``, kept in the group's ``torch_impl.plan``), so a step is a
dozen or two kernel calls whatever the model:

- ``rule_sweep`` (reads g, the rule state and s; writes nothing): the partial reductions
  of rho_k's statistics (the max ratio ``alpha_k / alpha_{k-1}``, or its min over
  the coordinates with a nonzero gradient, where the step-size rule uses rho),
  ``max(alpha_k)``, ``||g'||^2`` (PS-SPS), ``<g', s_{k-1}>`` and ``||g||^2``. Writing
  nothing makes it double as the finite check: a step refused after it has changed
  nothing;
- ``move_sweep`` (reads g, rule state, s, m, z, x; writes them): the rule's state update,
  ``s = rho s + lam g'``, ``||s_k||^2``, the first moment, ``z -= lam mhat / alpha**2`` and
  ``x = beta x + (1 - beta) z``.

The rule math is the very ``foreach_rules`` functions the foreach path runs. alpha is never
stored: alpha_{k-1} comes from the rule state before the update and alpha_k from the state
advanced (into temporaries in sweep 1, in place in sweep 2), which costs a few flops per
element and saves a buffer and its memory traffic: PS-DA-SGD with Adam scaling and momentum
keeps 3 parameter-sized buffers (v, s, z), PS-SPS 1 (v).

Step-dependent scalars (bias corrections, lam, rho) are 0-dim tensors, so one compiled
kernel serves every step and, with dynamic shapes, every tensor size: a kernel compiles once
per rule type, dtype, option set and pack length (about 20 s for the first in a process,
a few seconds for each next, on 2 cores). Reductions accumulate in float64. Needs a C++
compiler (inductor's CPU backend).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from paramscale.theory.transfer import STATISTICS, MetricChange
from paramscale.torch_impl import plan as plans
from paramscale.torch_impl.foreach_rules import FOREACH, Correction, correction

F64 = torch.float64
Tensors = list[torch.Tensor]
PACKS = (8, 4, 2, 1)  # tensors per compiled-kernel call: at most 4 compiles per kernel


def _states(rule_tensors: list[tuple]) -> list[dict]:
    return [{f"scaling.{i}": t for i, t in enumerate(ts, start=1)} for ts in rule_tensors]


def _max(ts: Tensors) -> torch.Tensor:
    return torch.stack([t.max() for t in ts]).max().to(F64)


def _sum(ts: Tensors) -> torch.Tensor:
    return torch.stack([t.to(F64).sum() for t in ts]).sum()


def rule_sweep(
    rule: Any,
    c_prev: Correction,
    c: Correction,
    gs: Tensors,
    rule_tensors: list[tuple],
    ss: Tensors | None,
    with_gsq: bool,
    ratio_stats: tuple[str, ...],
) -> tuple[torch.Tensor, ...]:
    """Reductions only, nothing written: over the tensors, (the transfer statistics
    ``ratio_stats`` (``theory.transfer.STATISTICS`` of alpha_{k-1}, alpha_k and g: the max
    or min ratio; none where rho is not used), max alpha_k, ||g'||^2 (PS-SPS, and
    D-Adaptation's ``g0/alpha_0`` normaliser), <g', s_{k-1}> (with ``ss``), ||g||^2),
    g' = g / alpha_k. alpha_k comes from the state advanced into new tensors, alpha_{k-1}
    from the state, so neither is stored; sweep 2 advances the state."""
    fr, states = FOREACH[type(rule)], _states(rule_tensors)
    prev = fr.alpha(rule, c_prev, states, gs) if ratio_stats else None
    ahead = fr.advance(rule, c, states, gs)  # new tensors: sweep 2 advances the state itself
    alphas = fr.alpha(rule, c, ahead, gs)
    amax = _max(alphas)
    ratios = []
    for name in ratio_stats:  # rho_k's statistics: the very functions theory reduces
        stat = STATISTICS[name]
        values = [
            stat.elementwise(MetricChange(b, a, None, g))
            for a, b, g in zip(alphas, prev, gs, strict=True)
        ]
        ratios.append(getattr(torch.stack([getattr(v, stat.op)() for v in values]), stat.op)())
    us = [g / a for g, a in zip(gs, alphas, strict=True)]  # g'
    gsq = _sum([u.to(F64).square() for u in us]) if with_gsq else amax * 0
    sdot = amax * 0
    if ss is not None:  # <g', s_{k-1}>: here, before sweep 2 changes s
        sdot = _sum([u.to(F64) * s.to(F64) for u, s in zip(us, ss, strict=True)])
    gradsq = _sum([g.to(F64).square() for g in gs])  # ||g||^2: the finite check
    return tuple(r.to(F64) for r in ratios), amax, gsq, sdot, gradsq


def scaled_gradient_sq(rule: Any, c: Correction, gs: Tensors, rule_tensors: list[tuple]):
    """||g / alpha_k||^2 of a pack, eagerly (the same rule functions as the kernels): the
    ``g0/alpha_0`` normaliser needs it at one step only, not worth a compiled variant."""
    fr, states = FOREACH[type(rule)], _states(rule_tensors)
    alphas = fr.alpha(rule, c, fr.advance(rule, c, states, gs), gs)
    return _sum([(g / a).to(F64).square() for g, a in zip(gs, alphas, strict=True)])


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
) -> torch.Tensor:
    """s = rho s + lam g' (D-Adaptation); z -= lam mhat / alpha**2; x = beta x + (1-beta) z,
    with alpha_k recomputed from the rule state. Returns ||s_k||^2 (0 without ``ss``)."""
    fr, states = FOREACH[type(rule)], _states(rule_tensors)
    ahead = fr.advance(rule, c, states, gs)
    for st, new in zip(states, ahead, strict=True):
        for key, t in new.items():
            st[key].copy_(t)  # the state advanced in place (one fused loop)
    alphas = fr.alpha(rule, c, ahead, gs)
    ssq = lam * 0
    for i, (g, alpha, x) in enumerate(zip(gs, alphas, xs, strict=True)):
        u = g / alpha  # g' = g / alpha
        if ss is not None:
            ss[i].mul_(rho).add_(u * lam)
            ssq = ssq + ss[i].to(F64).square().sum()
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
    return ssq


def packs(params: Tensors, states: list[dict], state_dtype) -> list:
    """A group's tensors for the kernels: grouped by kind (state dtype, has z, step count)
    and cut into packs of 8, 4, 2 and 1 tensors, so that a handful of kernels (one per pack
    length) serve any model. A pack is a list of (index in the group, views). A pack's
    tensors share their step count (``scaling.0``), hence their bias correction: a
    parameter whose first gradient came late is packed apart (and, at its first step, has
    no alpha_{k-1} to enter rho). The count in the kind is the one at packing time: the
    tensors step together while the packs are kept, so a caller reads the current one from
    a state."""
    kinds: dict[tuple, list] = {}
    for i, (p, st) in enumerate(zip(params, states, strict=True)):
        views = _views(p, st)
        kind = (state_dtype(p), views["z"] is not None, st["scaling.0"])
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
    n = 1
    while f"scaling.{n}" in st:
        n += 1
    rule = [st[f"scaling.{i}"] for i in range(1, n)]
    named = [st.get(key) for key in ("s", "m", "z")]
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


_COMPILED: dict[tuple, Callable] = {}


def kernel(fn: Callable, *variant: Any) -> Callable:
    """``fn`` compiled for one variant (rule type, dtype, options). Each variant gets its own
    copy of the code object: dynamo keeps one cache per code object and falls back to eager
    after ``recompile_limit`` entries, which all variants sharing one would reach."""
    key = (fn.__name__, *variant)
    if key not in _COMPILED:
        copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__)
        _COMPILED[key] = _explained(torch.compile(copy, dynamic=True, fullgraph=True))
    return _COMPILED[key]


def _explained(compiled: Callable) -> Callable:
    """``compiled``, with a build failure (no C++ compiler, ...) turned into an error that
    says what to do. Sweep 1 writes nothing, so a failure there leaves the state as it was."""

    def run(*args: Any) -> Any:
        try:
            return compiled(*args)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            cause = str(exc.__cause__ or exc).strip().splitlines()[:2]
            raise RuntimeError(
                f"fused=True: torch.compile could not build the kernel ({' '.join(cause)}). "
                "On the CPU it needs a C++ compiler; a kernel cached under another "
                "ATEN_CPU_CAPABILITY is reused and fails to build (torch's inductor cache "
                "does not key on it: set TORCHINDUCTOR_CACHE_DIR to a fresh directory). "
                "Leave fused=False to use the foreach path"
            ) from exc

    return run


# -- the path: the two sweeps of a step on the CPU, over a group's packs ------------------
class Sweep1(NamedTuple):
    """What sweep 2 of a group needs from its sweep 1: the plan, the packs at their step
    counts, the partial <g', s_{k-1}> of each pack, the bias corrections by step count."""

    plan: plans.Plan
    packs: list
    sdots: list[torch.Tensor]
    corrections: dict[int, Correction]


def _fused_cpu_rule(
    batches: list, want: Any, add: Callable, cache: dict, state_dtype: Callable, describe
) -> list[Sweep1]:
    """Sweep 1 of every group as compiled kernels (``rule_sweep``): reductions only (the
    state is advanced in sweep 2), <g', s_{k-1}> for D-Adaptation and ||g||^2 (the finite
    check). The kernels' variant is fixed for a run (``want.kernel``); a reduction needed
    at one step only (the normaliser's ||g'||^2) is computed eagerly then."""
    out = []
    with_gsq = "scaled_grad_sq" in want.kernel
    eager_gsq = "scaled_grad_sq" in want.stats and not with_gsq
    for group, ps, gs, sts in batches:
        rule = group["scaling"]
        plan = plans.planned(cache, group, ps, sts, packs, state_dtype, describe)
        groups = []
        for (dtype, has_z, _), pack in plan.layout:
            # (state, views, g as a view like x's, unless g is strided), at the step count the
            # pack's tensors share now (the plan's is the count when it was built)
            items = [(plan.states[i], v, gs[i].reshape(v["x"].shape)) for i, v in pack]
            groups.append(((dtype, has_z, items[0][0]["scaling.0"]), items))
        sdots = []
        counts = {n for (_, _, count), _ in groups for n in (count - 1, count)}
        corrections = {n: tensor_correction(rule, n) for n in counts}  # once per step count
        for (dtype, _, count), pack in groups:
            c_prev, c = corrections[count - 1], corrections[count]
            grads, states = [g for _, _, g in pack], [v["rule"] for _, v, _ in pack]
            ss = [v["s"] for _, v, _ in pack] if want.keeps_sum else None
            variant = (type(rule), dtype, with_gsq, want.keeps_sum, want.transfer, len(pack))
            run = kernel(rule_sweep, *variant)
            ratios, amax, gsq, sdot, gradsq = run(
                rule, c_prev, c, grads, states, ss, with_gsq, want.transfer
            )
            add("grad_sq", gradsq)
            if count > 0:  # the tensors have an alpha_{k-1}
                for key, value in zip(want.transfer, ratios, strict=True):
                    add(key, value)
            if eager_gsq:
                gsq = scaled_gradient_sq(rule, c, grads, states)
            if with_gsq or eager_gsq:
                add("scaled_grad_sq", gsq)
            if "alpha_max" in want.stats:
                add("alpha_max", amax)
            if want.keeps_sum:
                sdots.append(sdot)
        out.append(Sweep1(plan, groups, sdots, corrections))
    return out


def _fused_cpu_move(
    batches: list, sweep1: list[Sweep1], lams: list[float], rho: float, keeps_sum: bool
) -> tuple[list, list]:
    """Sweep 2 of every group as compiled kernels (``move_sweep``) over its sweep 1's packs;
    D-Adaptation's partial sums ([(lam, <g', s_{k-1}>)], [||s_k||^2])."""
    dots, s_parts = [], []
    for (group, *_), one, lam in zip(batches, sweep1, lams, strict=True):
        rule, b1, beta = group["scaling"], group["first_moment"], group["momentum"]
        # step scalars as 0-dim tensors: kernel arguments, so one kernel serves every step
        lam_t, rho_t = (torch.tensor(x, dtype=F64) for x in (lam, rho))
        dots.extend((lam, sdot) for sdot in one.sdots)  # lam <g', s_{k-1}>
        for st in one.plan.stale_alpha:
            st.pop("alpha", None)  # left by the foreach path: the fused path derives it
        # 1 - b1^n, n the tensors' own steps (this one included), per step count
        bc1s = {n: torch.tensor(1 - b1 ** (n + 1), dtype=F64) for (_, _, n), _ in one.packs}
        for (dtype, has_z, count), pack in one.packs:
            c = one.corrections[count]  # sweep 1's
            for st, _, _ in pack:
                st["scaling.0"] += 1
            views = {key: [v[key] for _, v, _ in pack] for key in ("x", "rule", "s", "m", "z")}
            present = {key: None if views[key][0] is None else views[key] for key in "smz"}
            x_dtype = views["x"][0].dtype
            run = kernel(
                move_sweep, type(rule), x_dtype, dtype, keeps_sum, b1 > 0, has_z, len(pack)
            )
            s_sq = run(
                rule, c, [g for _, _, g in pack], views["rule"], present["s"], present["m"],
                present["z"], views["x"], lam_t, rho_t, b1, bc1s[count], beta,
            )  # fmt: skip
            if keeps_sum:
                s_parts.append(s_sq)
    return dots, s_parts
