"""One kernel for independent kernels: their ranges concatenated, each padded to the
work-group size so every work-group runs one member's body (no divergence inside a group).
The merged range's work item id is a long where the ranges together pass 2^31 - 1.

Each member's kernel becomes a function of its own parameters and its work item id; the
merged kernel takes every member's arguments in turn (buffers, then the lifted offsets) and
calls the member whose range holds `get_global_id(0)`, with that range's start subtracted.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import replace

from graphc.codegen.build import BuiltKernel
from graphc.codegen.width import beyond_int, index_type

# OpenCL promises every device 1,024 bytes of kernel parameters (CL_DEVICE_MAX_PARAMETER_SIZE;
# PoCL reports just that): a merge stops before its pointers and ints pass it. A merge also
# stops at MAX_MERGED_SOURCE bytes of source, so no launch saved costs a long build.
MAX_PARAMETER_BYTES = 1024
MAX_MERGED_SOURCE = 64 * 1024
_HEADER = re.compile(r"__kernel void (\w+)\(([^)]*)\) \{\n  const (int|long) gid = "
                     r"get_global_id\(0\);\n")
NAME = "HKERNEL"            # the merged kernel's name until its digest is known


def mergeable_kernel(kernel: BuiltKernel) -> bool:
    """A kernel of one work item per element that starts as build.py renders it."""
    return kernel.global_size is None and _HEADER.match(kernel.source) is not None \
        and "barrier" not in kernel.source


def merge_within_caps(kernels: list[BuiltKernel], group_size: int) -> list[BuiltKernel]:
    """`kernels` merged in runs, in order, each run's parameters and source under the caps
    (a kernel alone stays as it is)."""
    runs: list[list[BuiltKernel]] = []
    for kernel in kernels:
        if runs and _fits(runs[-1] + [kernel]):
            runs[-1].append(kernel)
        else:
            runs.append([kernel])
    return [merge_kernels(run, group_size) if len(run) > 1 else run[0] for run in runs]


def parameter_bytes(kernel: BuiltKernel) -> int:
    """The bytes of a kernel's parameters: 8 per buffer pointer, 4 per int offset."""
    return 8 * len(kernel.args) + 4 * len(kernel.scalars)


def _fits(run: list[BuiltKernel]) -> bool:
    sources = {k.source for k in run}       # repeated members share one function
    return sum(map(parameter_bytes, run)) <= MAX_PARAMETER_BYTES \
        and sum(map(len, sources)) <= MAX_MERGED_SOURCE


def merge_kernels(kernels: list[BuiltKernel], group_size: int) -> BuiltKernel:
    """One kernel running each of `kernels` over its own slice of the range."""
    functions: dict[str, str] = {}      # member source -> its function (repeats share one)
    buffer_params, scalar_params, calls, start = [], [], [], 0
    for index, kernel in enumerate(kernels):
        names = []
        for n, param in enumerate(_params(kernel.source)):
            names.append(f"m{index}_{n}")
            renamed = param.rsplit(" ", 1)[0] + " " + names[-1]
            (buffer_params if "__global" in param else scalar_params).append(renamed)
        function = functions.setdefault(kernel.source, f"{NAME}_m{len(functions)}")
        span = -(-kernel.work_items // group_size) * group_size
        calls.append(f"  if (gid < {start + span}) {{ "
                     f"{function}({', '.join(names)}, gid - {start}); return; }}")
        start += span
    source = "\n".join(_function(member, name) for member, name in functions.items()) + \
        f"\n__kernel void {NAME}({', '.join(buffer_params + scalar_params)}) {{\n" \
        f"  const {index_type(beyond_int(start))} gid = get_global_id(0);\n" + \
        "\n".join(calls) + "\n}\n"
    name = f"H_{hashlib.sha1(source.encode()).hexdigest()[:6]}"
    return _combined(kernels, name, source.replace(NAME, name), start)


def _params(source: str) -> list[str]:
    """A rendered kernel's parameter declarations: buffers, then int offsets."""
    return [p.strip() for p in _HEADER.match(source).group(2).split(",") if p.strip()]


def _function(source: str, name: str) -> str:
    """A member kernel as a function of its parameters and its work item id (int, or long
    in a wide member)."""
    params = ", ".join(_params(source) + [f"const {_HEADER.match(source).group(3)} gid"])
    return f"void {name}({params}) {{\n" + source[_HEADER.match(source).end():]


def _combined(kernels: list[BuiltKernel], name: str, source: str, items: int) -> BuiltKernel:
    return replace(
        kernels[0], name=name, source=source, work_items=items,
        args=tuple(a for k in kernels for a in k.args),
        ops=tuple(op for k in kernels for op in k.ops),
        flops=sum(k.flops for k in kernels),
        bytes_read=sum(k.bytes_read for k in kernels),
        bytes_written=sum(k.bytes_written for k in kernels),
        scalars=tuple(s for k in kernels for s in k.scalars),
        private=tuple(p for k in kernels for p in k.private),
        members=tuple(k.name for k in kernels))
