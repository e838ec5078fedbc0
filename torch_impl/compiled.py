"""The compiled kernels of ``fused=True`` on the CPU (``torch_impl.fused``): one
``torch.compile`` per kernel variant, traced with dynamic shapes, size-obliviously, with a
build failure turned into an error that says what to do."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
import torch.fx.experimental._config as shape_config

COMPILED: dict[tuple, Callable] = {}


def _size_oblivious() -> Any:
    """Dynamic shapes without torch's 0/1 specialisation, for a kernel's trace: a kernel
    traced on a tensor of one element (a 0-dim parameter, an output layer's bias) serves
    every size, and one traced on a larger tensor serves size 1, instead of compiling again
    (a recompile for another reason is torch's usual one). The kernels' element-wise
    operations pair tensors of one shape and broadcast only 0-dim scalars, so no
    broadcasting decision depends on a size being 1."""
    return shape_config.patch(backed_size_oblivious=True)


def built(fn: Callable, *variant: Any) -> bool:
    """Whether ``kernel(fn, *variant)`` was made (in this process)."""
    return (fn.__name__, *variant) in COMPILED


def kernel(fn: Callable, *variant: Any) -> Callable:
    """``fn`` compiled for one variant (rule type, dtype, options). Each variant gets its own
    copy of the code object: dynamo keeps one cache per code object and falls back to eager
    after ``recompile_limit`` entries, which all variants sharing one would reach."""
    key = (fn.__name__, *variant)
    if key not in COMPILED:
        copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__)
        COMPILED[key] = _explained(torch.compile(copy, dynamic=True, fullgraph=True))
    return COMPILED[key]


def _explained(compiled: Callable) -> Callable:
    """``compiled``, its first call (the trace) size-oblivious (``_size_oblivious``; later
    calls pay nothing for it), with a build failure (no C++ compiler, ...) turned into an
    error that says what to do (the fused path's sweep 1 writes nothing, so a failure there
    leaves the state as it was)."""
    traced = False

    def run(*args: Any) -> Any:
        nonlocal traced
        try:
            if traced:
                return compiled(*args)
            with _size_oblivious():
                out = compiled(*args)
            traced = True
            return out
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
