"""One kernel for independent kernels: their ranges concatenated, each padded to the
work-group size so every work-group runs one member's body (no divergence inside a group).

Each member's kernel becomes a function of its own parameters and its work item id; the
merged kernel takes every member's arguments in turn (buffers, then the lifted offsets) and
calls the member whose range holds `get_global_id(0)`, with that range's start subtracted.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import replace

from graphc.codegen.build import BuiltKernel

_HEADER = re.compile(r"__kernel void (\w+)\(([^)]*)\) \{\n  const int gid = get_global_id\(0\);\n")
NAME = "HKERNEL"            # the merged kernel's name until its digest is known


def mergeable_kernel(kernel: BuiltKernel) -> bool:
    """A kernel of one work item per element that starts as build.py renders it."""
    return kernel.global_size is None and _HEADER.match(kernel.source) is not None \
        and "barrier" not in kernel.source


def merge_kernels(kernels: list[BuiltKernel], group_size: int) -> BuiltKernel:
    """One kernel running each of `kernels` over its own slice of the range."""
    helpers: dict[str, str] = {}        # member source -> its function (repeats share one)
    buffer_params, scalar_params, calls, start = [], [], [], 0
    for index, kernel in enumerate(kernels):
        header = _HEADER.match(kernel.source)
        params = [p.strip() for p in header.group(2).split(",") if p.strip()]
        names = [f"m{index}_{n}" for n in range(len(params))]
        for param, name in zip(params, names):
            renamed = param.rsplit(" ", 1)[0] + " " + name
            (buffer_params if "__global" in param else scalar_params).append(renamed)
        function = helpers.setdefault(kernel.source, f"{NAME}_m{len(helpers)}")
        span = -(-kernel.work_items // group_size) * group_size
        call = f"{function}({', '.join(names)}, gid - {start});"
        calls.append(f"  if (gid < {start + span}) {{ {call} return; }}")
        start += span
    body = (f"__kernel void {NAME}({', '.join(buffer_params + scalar_params)}) {{\n"
            "  const int gid = get_global_id(0);\n" + "\n".join(calls) + "\n}\n")
    source = "\n".join(_function(member, function) for member, function in helpers.items())
    source += "\n" + body
    name = f"H_{hashlib.sha1(source.encode()).hexdigest()[:6]}"
    return _combined(kernels, name, source.replace(NAME, name), start)


def _function(source: str, name: str) -> str:
    """A member kernel as a function of its parameters and its work item id."""
    header = _HEADER.match(source)
    params = [p.strip() for p in header.group(2).split(",") if p.strip()] + ["const int gid"]
    return f"void {name}({', '.join(params)}) {{\n" + source[header.end():]


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
