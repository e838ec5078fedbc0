"""The Triton kernels of ``fused=True`` on CUDA (``torch_impl.fused_triton`` lays out the
tensors and launches them): a program walks a share of a launch's blocks (``Launch``),
each block BLOCK elements of one tensor found through the block and pointer tables.

- ``rule_sweep`` (reads g and the rule state; writes nothing): the statistics of rho_k
  (max(alpha_k / alpha_{k-1}), or its min over the coordinates with g != 0), max(alpha_k),
  ||g'||^2 and ||g||^2 (the finite check);
- ``move_sweep`` (reads and writes rule state, s, m, z, x once): the rule's state update,
  <g', s_{k-1}> and ``s = rho s + lam g'`` with ||s_k||^2, the first moment,
  ``z -= lam mhat / alpha**2`` and ``x = beta x + (1 - beta) z``.

The element math is the foreach path's (``foreach_rules``, docs/spec.md section 2),
operation for operation in the state's dtype with correctly rounded division and square
root; partial sums are float64. Scalars (beta2, eps, bias corrections, lam, rho) are
float64 kernel arguments. With ``TRITON_INTERPRET=1`` the kernels run on CPU tensors in
Triton's interpreter: that is how CI, which has no GPU, tests them.
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import torch

from paramscale.theory import scaling as rules

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU-only install: fused=True then runs on the CPU alone
    triton = None

F64 = torch.float64

# elements a program handles per trip: 8 warps x 32 threads x 8 elements, so that each
# thread issues 8 independent loads (latency hidden) of 32-byte sectors (float32)
BLOCK = 2048
# programs per launch at most, each looping over a share of the blocks and reducing once:
# on an H100 (132 SMs) 1024 beat 264, 512 and 2048 at 50M parameters (fewer partials to
# reduce, enough programs in flight)
PROGRAMS = 1024
WARPS = 8  # 256 threads a program: BLOCK / (32 WARPS) = 8 elements a thread


def rule_code(rule: Any) -> int | None:
    """The kernels' name for an element-wise built-in rule (None: not one)."""
    if type(rule) is rules.amsgrad:
        return 4 if rule.form == "monotone" else 5
    return {rules.identity: 0, rules.adagrad: 1, rules.rmsprop: 2, rules.adam: 3}.get(type(rule))


class Launch(NamedTuple):
    """One launch's tables: ``blocks[i]`` the tensor of program i, ``starts[i]`` its first
    element, ``numels`` per tensor, ``ptrs`` the addresses (rows ``ROWS``, 0 where absent),
    and the two sweeps' ``counters`` (``_reduce_last``)."""

    blocks: torch.Tensor
    starts: torch.Tensor
    numels: torch.Tensor
    ptrs: torch.Tensor
    n: int
    blocks_n: int
    programs: int
    counters: tuple[torch.Tensor, torch.Tensor]


class Consts(NamedTuple):
    """Sweep scalars for tensors at their own step ``count``, float64 kernel arguments:
    beta2, 1 - beta2, eps, sqrt(bc2) of step count-1, bc2 and sqrt(bc2) of step count, lerp
    weights 1 - b1 (first moment) and 1 - beta (averaging), 1 - b1^(count+1)."""

    beta2: float
    omb2: float
    eps: float
    root_prev: float
    bc2: float
    root: float
    b1w: float
    betaw: float
    bc1: float


def consts(rule: Any, count: int, b1: float, beta: float) -> Consts:
    """The sweep scalars (``Consts``) of ``rule`` for tensors at step ``count``."""
    beta2 = getattr(rule, "beta2", 0.0)
    bc2_prev = 1 - beta2**count if beta2 else 1.0
    bc2 = 1 - beta2 ** (count + 1) if beta2 else 1.0
    root_prev = bc2_prev**0.5 if count > 0 else 1.0  # unused at a tensor's first step
    return Consts(beta2, 1 - beta2, getattr(rule, "eps", 0.0), root_prev, bc2, bc2**0.5,
                  1 - b1, 1 - beta, 1 - b1 ** (count + 1))  # fmt: skip


_TL_DTYPES = {}
if triton is not None:
    _TL_DTYPES = {
        torch.float32: tl.float32,
        torch.float64: tl.float64,
        torch.bfloat16: tl.bfloat16,
        torch.float16: tl.float16,
    }


def _on(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' (a model on cuda:1
    stepped while cuda:0 is current)."""
    if device.type != "cuda" or device.index == torch.cuda.current_device():
        return contextlib.nullcontext()
    return torch.cuda.device(device)


# the ratio statistics the rule kernel computes (``theory.reductions``): name -> (its RATIO
# code, its column); a min is stored negated, so that every ratio column is reduced by max
RATIO_CODES = {"ratio_max": (1, 0), "ratio_min_active": (2, 2)}
RULE_COLUMNS = 8  # ratio max, alpha max, -active min ratio, -, ||g'||^2, ||g||^2, -, -
RULE_MAXED = 4  # the columns reduced by max


def rule_sweep(
    rule: Any, launch: Launch, c: Consts, dtype: Any, with_gsq: bool, stats: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Sweep 1: float64 0-dim reductions by name: ``alpha_max``, ``grad_sq``,
    ``scaled_grad_sq`` (with ``with_gsq``) and the ratio of ``stats`` (at most one)."""
    code, column = RATIO_CODES[stats[0]] if stats else (0, None)
    programs = launch.programs  # rows of partials, then the reduced row
    out = torch.empty((programs + 1, RULE_COLUMNS), dtype=F64, device=launch.ptrs.device)
    with _on(out.device):
        rule_kernel[(programs,)](
            launch.blocks, launch.starts, launch.numels, launch.ptrs, launch.n, launch.blocks_n,
            out, launch.counters[0], c.beta2, c.omb2, c.eps, c.root_prev, c.bc2, c.root,
            RULE=rule_code(rule), GSQ=with_gsq, RATIO=code, DT=_TL_DTYPES[dtype],
            BLOCK=BLOCK, num_warps=WARPS,
        )  # fmt: skip
    row = out[programs]
    values = {"alpha_max": row[1], "grad_sq": row[5]}
    if with_gsq:
        values["scaled_grad_sq"] = row[4]
    if stats:
        values[stats[0]] = row[column] if column < 2 else -row[column]
    return values


def move_sweep(
    rule: Any,
    launch: Launch,
    c: Consts,
    dtype,
    x_dtype,
    lam: float,
    rho: float,
    keeps_s: bool,
    first_moment: bool,
    has_z: bool,
    average: bool,
):
    """Sweep 2, in place: float64 0-dim (<g', s_{k-1}>, ||s_k||^2) where the rule keeps s,
    else None."""
    programs = launch.programs
    # with s: the partials of every program, then the reduced row; else none
    out = torch.empty((programs + 1 if keeps_s else 1, 2), dtype=F64, device=launch.ptrs.device)
    with _on(out.device):
        move_kernel[(programs,)](
            launch.blocks, launch.starts, launch.numels, launch.ptrs, launch.n, launch.blocks_n,
            out, launch.counters[1], c.beta2, c.omb2, c.eps, c.bc2, c.root, c.b1w,
            c.betaw, c.bc1, lam, rho, RULE=rule_code(rule), KEEPS_S=keeps_s,
            FIRST=first_moment, HAS_Z=has_z, AVERAGE=average, DT=_TL_DTYPES[dtype],
            XT=_TL_DTYPES[x_dtype], BLOCK=BLOCK, num_warps=WARPS,
        )  # fmt: skip
    return out[programs].unbind() if keeps_s else None


if triton is not None:
    # rows of partials the last program reads at a time: 256 x 8 float64 columns fit its
    # registers, and 4 trips cover PROGRAMS
    REDUCE_ROWS = tl.constexpr(256)

    @triton.jit
    def _address(ptrs, row: tl.constexpr, n, t, DT: tl.constexpr):
        return tl.load(ptrs + row * n + t).to(tl.pointer_type(DT))

    @triton.jit
    def _sqrt(x):
        # correctly rounded, as torch's (tl.sqrt is an approximation in float32)
        if x.dtype == tl.float32:
            return tl.sqrt_rn(x)
        return tl.sqrt(x)

    @triton.jit
    def _div(a, b):
        # correctly rounded, as torch's ('/' is an approximation in float32)
        if a.dtype == tl.float32:
            return tl.div_rn(a, b)
        return a / b

    @triton.jit
    def _advance(v, w, g, beta2, omb2, bc2, RULE: tl.constexpr):
        # the rule state at step k from k-1 (foreach_rules.advance; docs/spec.md section 2)
        if RULE == 1:
            v = v + g * g  # AdaGrad: v += g^2
        elif RULE >= 2:
            v = v * beta2 + omb2 * (g * g)  # v = beta2 v + (1 - beta2) g^2
        if RULE == 4:
            w = tl.maximum(w, _div(v, bc2))  # AMSGrad, monotone: max after bc
        elif RULE == 5:
            w = tl.maximum(w, v)  # AMSGrad, torch's form
        return v, w

    @triton.jit
    def _alpha(v, w, g, eps, root, RULE: tl.constexpr):
        # alpha_k from the state at step k (foreach_rules.alpha)
        if RULE == 0:
            a = tl.full(g.shape, 1.0, g.dtype)  # identity
        elif RULE <= 2:
            a = _sqrt(_sqrt(v) + eps)  # sqrt(sqrt(v) + eps)
        elif RULE == 3:
            a = _sqrt(_div(_sqrt(v), root) + eps)  # sqrt(sqrt(v)/sqrt(bc2)+eps)
        elif RULE == 4:
            a = _sqrt(_sqrt(w) + eps)
        else:
            a = _sqrt(_div(_sqrt(w), root) + eps)
        return a

    @triton.jit
    def _lerp(a, b, weight):
        # torch.lerp's formula: a + weight (b - a), from the nearer end
        return tl.where(weight < 0.5, a + weight * (b - a), b - (b - a) * (1 - weight))

    @triton.jit
    def _load_rule_state(ptrs, n, t, offs, mask, g, RULE: tl.constexpr, DT: tl.constexpr):
        v = g
        w = g
        if RULE >= 1:
            v = tl.load(_address(ptrs, 2, n, t, DT) + offs, mask=mask, other=0.0)
        if RULE >= 4:
            w = tl.load(_address(ptrs, 3, n, t, DT) + offs, mask=mask, other=0.0)
        return v, w

    @triton.jit
    def _program(b, blocks, starts, numels, ptrs, n, RULE: tl.constexpr, DT: tl.constexpr,
                 BLOCK: tl.constexpr):  # fmt: skip
        # block b's tensor t, its elements offs (mask: inside it), g and the rule state
        t = tl.load(blocks + b)
        offs = tl.load(starts + b) + tl.arange(0, BLOCK)
        mask = offs < tl.load(numels + t)
        g = tl.load(_address(ptrs, 0, n, t, DT) + offs, mask=mask, other=0.0)
        v, w = _load_rule_state(ptrs, n, t, offs, mask, g, RULE, DT)
        return t, offs, mask, g, v, w

    @triton.jit
    def _scalar(x, DT: tl.constexpr):
        # a float64 argument in the kernel's dtype (tl.full keeps its 53 bits under the
        # interpreter, which would round a bare float argument to float32)
        return tl.full((), x, tl.float64).to(DT)

    @triton.jit
    def _reduce_last(out, counter, COLS: tl.constexpr, MAXED: tl.constexpr):
        # The program that finishes last reduces every program's partials (rows 0 to
        # programs - 1 of out, COLS each) into row `programs`: the first MAXED columns by
        # max (a negated min among them), the others by sum, the rows always in the same
        # order (deterministic); then it zeroes the counter for the next launch. No torch
        # reductions follow the launch: they cost more host time than the sweep itself.
        tl.debug_barrier()  # this program's partials are stored before it is counted
        # (on a one-element block, reduced to a scalar: the interpreter's scalar atomics
        # return a block, which an `if` cannot test; for the same reason a while loop)
        programs = tl.num_programs(0)
        done = tl.max(tl.atomic_add(counter + tl.zeros((1,), tl.int32), 1, sem="acq_rel"), 0)
        if done == programs - 1:
            cols = tl.arange(0, COLS)
            top = tl.full((REDUCE_ROWS, COLS), float("-inf"), tl.float64)
            total = tl.zeros((REDUCE_ROWS, COLS), tl.float64)
            start = 0
            while start < programs:
                rows = start + tl.arange(0, REDUCE_ROWS)[:, None]
                part = tl.load(out + rows * COLS + cols[None, :], mask=rows < programs,
                               other=0.0, volatile=True)  # fmt: skip
                top = tl.maximum(top, tl.where(rows < programs, part, float("-inf")))
                total += part
                start += REDUCE_ROWS
            reduced = tl.where(cols < MAXED, tl.max(top, 0), tl.sum(total, 0))
            tl.store(out + programs * COLS + cols, reduced)
            tl.atomic_xchg(counter, 0)

    @triton.jit
    def rule_kernel(blocks, starts, numels, ptrs, n, nblocks, out, counter,
                     beta2: tl.float64, omb2: tl.float64, eps: tl.float64,
                     root_prev: tl.float64, bc2: tl.float64, root: tl.float64,
                     RULE: tl.constexpr, GSQ: tl.constexpr, RATIO: tl.constexpr,
                     DT: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
        pid = tl.program_id(0)
        eps, root_prev, root = _scalar(eps, DT), _scalar(root_prev, DT), _scalar(root, DT)
        beta2, omb2, bc2 = _scalar(beta2, DT), _scalar(omb2, DT), _scalar(bc2, DT)
        top_ratio = tl.zeros((BLOCK,), DT)  # element-wise over this program's blocks
        low_active = tl.full((BLOCK,), float("inf"), DT)  # RATIO == 2: the active min
        top_alpha = tl.zeros((BLOCK,), DT)
        gsq = tl.zeros((BLOCK,), tl.float64)
        gradsq = tl.zeros((BLOCK,), tl.float64)
        b = pid
        while b < nblocks:  # blocks pid, pid + programs, ...: always the same order
            t, offs, mask, g, v, w = _program(b, blocks, starts, numels, ptrs, n, RULE, DT, BLOCK)
            if RATIO > 0:  # alpha_{k-1}, from the state (half of this sweep's arithmetic)
                prev = _alpha(v, w, g, eps, root_prev, RULE)
            v, w = _advance(v, w, g, beta2, omb2, bc2, RULE)  # in registers only
            a = _alpha(v, w, g, eps, root, RULE)
            if RATIO == 1:
                top_ratio = tl.maximum(top_ratio, tl.where(mask, _div(a, prev), 0.0))
            elif RATIO == 2:  # theory.transfer: the min ratio over g != 0
                low_active = tl.minimum(
                    low_active, tl.where(mask & (g != 0), _div(a, prev), float("inf"))
                )
            top_alpha = tl.maximum(top_alpha, tl.where(mask, a, 0.0))
            if GSQ:
                u = _div(g, a).to(tl.float64)  # g' = g / alpha (0 outside the tensor)
                gsq += u * u
            g64 = g.to(tl.float64)
            gradsq += g64 * g64  # ||g||^2: the finite check
            b += tl.num_programs(0)
        row = out + pid * 8  # RULE_COLUMNS
        tl.store(row, tl.max(top_ratio).to(tl.float64))
        tl.store(row + 1, tl.max(top_alpha).to(tl.float64))
        tl.store(row + 2, -tl.min(low_active).to(tl.float64))
        tl.store(row + 3, 0.0)
        tl.store(row + 4, tl.sum(gsq))
        tl.store(row + 5, tl.sum(gradsq))
        tl.store(row + 6, 0.0)
        tl.store(row + 7, 0.0)
        _reduce_last(out, counter, 8, 4)

    @triton.jit
    def move_kernel(blocks, starts, numels, ptrs, n, nblocks, out, counter,
                     beta2: tl.float64, omb2: tl.float64, eps: tl.float64, bc2: tl.float64,
                     root: tl.float64, b1w: tl.float64, betaw: tl.float64, bc1: tl.float64,
                     lam: tl.float64, rho: tl.float64, RULE: tl.constexpr,
                     KEEPS_S: tl.constexpr, FIRST: tl.constexpr, HAS_Z: tl.constexpr,
                     AVERAGE: tl.constexpr, DT: tl.constexpr, XT: tl.constexpr,
                     BLOCK: tl.constexpr):  # fmt: skip
        pid = tl.program_id(0)
        beta2, omb2, bc2 = _scalar(beta2, DT), _scalar(omb2, DT), _scalar(bc2, DT)
        eps, root, lam, rho = (
            _scalar(eps, DT),
            _scalar(root, DT),
            _scalar(lam, DT),
            _scalar(rho, DT),
        )
        b1w, betaw, bc1 = _scalar(b1w, DT), _scalar(betaw, DT), _scalar(bc1, DT)
        dots = tl.zeros((BLOCK,), tl.float64)  # element-wise over this program's blocks
        ssq = tl.zeros((BLOCK,), tl.float64)
        b = pid
        while b < nblocks:  # blocks pid, pid + programs, ...: always the same order
            t, offs, mask, g, v, w = _program(b, blocks, starts, numels, ptrs, n, RULE, DT, BLOCK)
            v, w = _advance(v, w, g, beta2, omb2, bc2, RULE)
            if RULE >= 1:
                tl.store(_address(ptrs, 2, n, t, DT) + offs, v, mask=mask)
            if RULE >= 4:
                tl.store(_address(ptrs, 3, n, t, DT) + offs, w, mask=mask)
            a = _alpha(v, w, g, eps, root, RULE)
            u = _div(g, a)  # g' = g / alpha
            if KEEPS_S:
                s_at = _address(ptrs, 4, n, t, DT) + offs
                s = tl.load(s_at, mask=mask, other=0.0)
                dots += u.to(tl.float64) * s.to(tl.float64)  # <g', s_{k-1}>
                s = s * rho + u * lam  # s = rho s + lam g'
                tl.store(s_at, s, mask=mask)
                s64 = s.to(tl.float64)
                ssq += s64 * s64
            if FIRST:
                m_at = _address(ptrs, 5, n, t, DT) + offs
                m = _lerp(tl.load(m_at, mask=mask, other=0.0), g, b1w)
                tl.store(m_at, m, mask=mask)
                u = _div(_div(m, bc1), a)  # mhat / alpha
            step = _div(u, a) * -lam  # -lam mhat / alpha**2
            x_at = _address(ptrs, 1, n, t, XT) + offs
            if HAS_Z:
                z_at = _address(ptrs, 6, n, t, DT) + offs
                z = tl.load(z_at, mask=mask, other=0.0) + step
                tl.store(z_at, z, mask=mask)
                if AVERAGE:  # x = beta x + (1 - beta) z, in the state's dtype, then rounded
                    x = tl.load(x_at, mask=mask, other=0.0).to(DT)
                    tl.store(x_at, _lerp(x, z, betaw).to(XT), mask=mask)
                else:
                    tl.store(x_at, z.to(XT), mask=mask)
            else:
                tl.store(x_at, tl.load(x_at, mask=mask, other=0.0) + step, mask=mask)
            b += tl.num_programs(0)
        if KEEPS_S:
            tl.store(out + pid * 2, tl.sum(dots))
            tl.store(out + pid * 2 + 1, tl.sum(ssq))
            _reduce_last(out, counter, 2, 0)
