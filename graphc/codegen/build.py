"""From kernel groups (codegen/kernel_groups.py) to BuiltKernels: the lowering registry says
which builder each group's root op takes (codegen/lowerings.py).

A raw group is its op's hand-written template (codegen/raw_kernels.py); a loop group whose
op has a fast builder tries the tiled GEMM first (codegen/gemm_epilogue.py, conv_gemm.py),
a pool the rows template (codegen/pool_rows.py);
a long reduction with few outputs is split in two (loop_kernels.split_loop); everything
else is one kernel of the kernel IR (codegen/loop_kernels.py). No source text is made here:
the renderer (codegen/renderer.py) makes it last.
"""
from __future__ import annotations

import numpy as np

from graphc.codegen.built import BuiltKernel
from graphc.codegen.conv_gemm import build_conv_gemm
from graphc.codegen.gemm_epilogue import build_gemm, gemm_operands
from graphc.codegen.kernel_groups import KernelGroup
from graphc.codegen.loop_kernels import build_kernel, split_loop
from graphc.codegen.lowerings import loop_spec, lowering_of
from graphc.codegen.pool_rows import build_pool_rows
from graphc.codegen.raw_kernels import raw_kernel
from graphc.ir import Tensor

HALF_GEMM = "gemm_half"      # the template key of float16 GEMMs (kernels_cl/gemm_cpu_half.cl)
SPLIT_MIN_LOOP = 2048       # shorter loops stay in one kernel
SPLIT_TARGET_ITEMS = 256    # work items a split aims for (enough to occupy a device)
SPLIT_MIN_CHUNK = 256       # each partial loop runs at least this long


def build_kernels(group: KernelGroup, buffer_of: dict[Tensor, str], nbytes: dict,
                  device_info=None, tune=None, private_name: str = "p",
                  per_item: int = 1, templates: frozenset = frozenset()) -> list[BuiltKernel]:
    """The kernels of one group: usually one; a long reduction with few outputs becomes
    two (partial results over chunks of the loop, then their combination); none for a group
    of empty values (nothing to compute: a conv2d with no output channels, a batch of 0).
    An elementwise kernel's work items take `per_item` elements each, a column reduction's
    `per_item` outputs (see kernel.reads_follow_outputs). `templates`: the hand-written
    templates the backend's renderer has (a fast builder needing one declines without it)."""
    if group.root.size == 0 and all(t.size == 0 for t in group.stores):
        return []
    if group.kind == "raw":
        return [raw_kernel(group, buffer_of, nbytes)]
    fast = lowering_of(group.root.producer.op).fast if group.kind == "loop" else None
    if device_info is not None and fast == "gemm" and (
            group.root.dtype != np.float16 or HALF_GEMM in templates):
        operands = gemm_operands(group.root, buffer_of)
        gemm = operands and build_gemm(group, buffer_of, nbytes, device_info, operands, tune)
        if gemm is not None:
            return [gemm]
    if device_info is not None and fast == "conv_gemm":
        conv = build_conv_gemm(group, buffer_of, nbytes, device_info, private_name)
        if conv is not None:
            return conv
    if fast == "pool_rows":
        pool = build_pool_rows(group, buffer_of, nbytes, templates)
        if pool is not None:
            return [pool]
    if group.kind == "loop":
        spec = loop_spec(group.root)
        split = split_factor(group.root.size, int(np.prod(spec.space, dtype=np.int64)),
                             spec.combiner, spec.space[0])
        if split > 1:
            return split_loop(group, spec, split, buffer_of, nbytes, private_name, per_item)
    return [build_kernel(group, buffer_of, nbytes, per_item)]


def split_factor(outputs: int, loop: int, combiner: str, outer: int = 0) -> int:
    """How many chunks to split a reduction loop into (1: do not split). A split of the
    loop's outer dimension `outer` is taken when it has at least half the chunks of the
    best split: each chunk then runs the inner dimensions as nested loops (contiguous loads,
    no division per element: a bias gradient over (64, 24, 24) in 36 flat chunks divided
    and took the remainder of its index by 24 three times per element)."""
    if combiner not in ("sum", "max", "min") or outputs >= SPLIT_TARGET_ITEMS \
            or loop < SPLIT_MIN_LOOP:
        return 1
    wanted = -(-SPLIT_TARGET_ITEMS // max(outputs, 1))
    divisors = [s for s in range(2, min(wanted, loop // SPLIT_MIN_CHUNK) + 1) if loop % s == 0]
    best = max(divisors, default=1)
    nested = [s for s in divisors if outer and outer % s == 0 and 2 * s >= best]
    return max(nested, default=best)
