"""Horizontal merging: independent kernels of one bundle (passes/horizontal.py) as one launch,
their ranges concatenated, each padded to the work-group size (the renderer's template:
render_merged in codegen/opencl_renderer.py).

Only kernel-IR kernels of one work item per element merge. A merge stops before its
parameters pass the renderer's `max_parameter_bytes` (8 per buffer, 4 per int offset) or its
members' distinct sources pass `max_merged_source` bytes, so no launch saved costs a long
build; a kernel alone stays as it is.
"""
from __future__ import annotations

from graphc.codegen.built import BuiltKernel, IRBody, MergedBody

MERGED_LABEL = "H"


def mergeable_kernel(kernel: BuiltKernel) -> bool:
    """A kernel-IR kernel of one work item per element (no geometry of its own)."""
    return kernel.global_size is None and isinstance(kernel.body, IRBody) \
        and kernel.body.per_item == 1


def merge_within_caps(kernels: list, group_size: int, caps, render) -> list:
    """`kernels` (rendered) merged in runs, in order, each run under the caps; `render`
    renders the merged kernel (codegen/program.py)."""
    runs: list[list] = []
    for kernel in kernels:
        if runs and _fits(runs[-1] + [kernel], caps):
            runs[-1].append(kernel)
        else:
            runs.append([kernel])
    return [merge_kernels(run, group_size, render) if len(run) > 1 else run[0] for run in runs]


def parameter_bytes(kernel: BuiltKernel) -> int:
    """The bytes of a kernel's parameters: 8 per buffer pointer, 4 per int offset."""
    return 8 * len(kernel.args) + 4 * len(kernel.scalars)


def _fits(run: list, caps) -> bool:
    sources = {k.source for k in run}       # repeated members share one function
    return sum(map(parameter_bytes, run)) <= caps.max_parameter_bytes \
        and sum(map(len, sources)) <= caps.max_merged_source


def merge_kernels(kernels: list, group_size: int, render):
    """One launch running each of `kernels` (rendered) over its own slice of the range."""
    body = MergedBody(tuple(kernels), group_size)
    merged = BuiltKernel(
        MERGED_LABEL, body, args=tuple(a for k in kernels for a in k.args),
        work_items=sum(span for _, span in body.spans()),
        ops=tuple(op for k in kernels for op in k.ops), flops=sum(k.flops for k in kernels),
        bytes_read=sum(k.bytes_read for k in kernels),
        bytes_written=sum(k.bytes_written for k in kernels),
        scalars=tuple(s for k in kernels for s in k.scalars),
        private=tuple(p for k in kernels for p in k.private),
        writes=tuple(w for k in kernels for w in k.writes))
    return render(merged, members=tuple(k.name for k in kernels))
