"""Static cost of the CUDA sweeps, without a GPU: ``paramscale bench --kernels``.

Each Triton kernel of ``torch_impl.triton_kernels`` is compiled for an H100 (sm_90) with the
assembler Triton ships, and its main loop (the largest backward branch of the SASS) is
counted: instructions per element, and special-function-unit instructions (MUFU) per
element, which are one per correctly rounded square root or division. On an H100, sweep 1
is bound by instruction issue (README, "Where the time went"), so these counts compare two
versions of a kernel where no GPU is lent. They are static: the rarely taken slow paths of
a square root or division count too. Compare variants and versions, not times.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from typing import Any, NamedTuple

# the launch tables and the output (``rule_kernel`` / ``move_kernel``'s leading arguments)
TABLE_TYPES = {
    "blocks": "*i32",
    "starts": "*i64",
    "numels": "*i64",
    "ptrs": "*i64",
    "n": "i32",
    "nblocks": "i32",
    "out": "*fp64",
    "counter": "*i32",
}
ADAM = 3  # triton_kernels.rule_code of the Adam rule


class LoopCount(NamedTuple):
    """A kernel variant's main loop: instructions and MUFU instructions per element."""

    kernel: str
    instructions: float
    mufu: float


def variants() -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, kernel, constexprs) of PS-DA-SGD and PS-SPS with their defaults (Adam scaling;
    PS-DA-SGD with momentum 0.9, PS-SPS without), float32."""
    from paramscale.torch_impl import triton_kernels

    return [
        ("PS-DA-SGD sweep 1", triton_kernels.rule_kernel, {"RULE": ADAM, "GSQ": False, "RATIO": 2}),
        ("PS-SPS sweep 1", triton_kernels.rule_kernel, {"RULE": ADAM, "GSQ": True, "RATIO": 0}),
        (
            "PS-DA-SGD sweep 2",
            triton_kernels.move_kernel,
            {"RULE": ADAM, "KEEPS_S": True, "FIRST": False, "HAS_Z": True, "AVERAGE": True},
        ),
        (
            "PS-SPS sweep 2",
            triton_kernels.move_kernel,
            {"RULE": ADAM, "KEEPS_S": False, "FIRST": False, "HAS_Z": False, "AVERAGE": False},
        ),
    ]


def loop_count(name: str, kernel: Any, constexprs: dict[str, Any]) -> LoopCount:
    """Compile ``kernel`` with ``constexprs`` (float32 state and parameters) for sm_90 and
    count its main loop."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from paramscale.torch_impl import triton_kernels

    values = {**constexprs, "DT": tl.float32, "XT": tl.float32, "BLOCK": triton_kernels.BLOCK}
    names = [p.name for p in kernel.params]
    signature = {
        p.name: "constexpr" if p.is_constexpr else TABLE_TYPES.get(p.name, p.annotation)
        for p in kernel.params
    }
    fixed = {(names.index(k),): v for k, v in values.items() if k in names}
    source = ASTSource(fn=kernel, signature=signature, constexprs=fixed)
    compiled = triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"num_warps": triton_kernels.WARPS}
    )
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as fh:
        fh.write(compiled.asm["cubin"])
        fh.flush()
        sass = subprocess.run(
            [os.path.join(tools, "cuobjdump"), "-sass", fh.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    body = _main_loop(sass)
    per_thread = triton_kernels.BLOCK // (
        32 * triton_kernels.WARPS
    )  # elements a thread takes per trip of the loop
    mufu = sum(1 for op in body if "MUFU" in op)
    return LoopCount(name, len(body) / per_thread, mufu / per_thread)


def _main_loop(sass: str) -> list[str]:
    """The instructions between the target and the source of the longest backward branch."""
    code = [(int(at, 16), op) for at, op in re.findall(r"/\*([0-9a-f]{4,})\*/\s+(.*?);", sass)]
    start = end = 0
    for at, op in code:
        jump = re.search(r"\bBRA\b.*?0x([0-9a-f]+)", op)
        if jump and int(jump.group(1), 16) < at and at - int(jump.group(1), 16) > end - start:
            start, end = int(jump.group(1), 16), at
    return [op for at, op in code if start <= at <= end]


def table() -> str:
    """The counts of every variant, as a table."""
    lines = [f"{'kernel (sm_90, float32, Adam)':30} {'instr/elem':>10} {'MUFU/elem':>10}"]
    for name, kernel, constexprs in variants():
        c = loop_count(name, kernel, constexprs)
        lines.append(f"{c.kernel:30} {c.instructions:>10.1f} {c.mufu:>10.1f}")
    return "\n".join(lines)
