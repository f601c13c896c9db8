"""What code generation hands a backend's renderer, and what the renderer hands back.

A BuiltKernel is one kernel as data: its body (the kernel IR, or the parameters of a
hand-written template), the plan buffers bound to its parameters, what it stores where, its
launch geometry and its cost. Nothing before the renderer holds kernel text; the renderer
(codegen/renderer.py) turns each body into source as the last step and names the kernel
after that source (identical kernels share a name and compile once): a RenderedKernel.

Bodies (each renderer renders every kind):
- IRBody: the kernel IR (codegen/kernel.py), `per_item` outputs per work item.
- RawBody: a hand-written template for one op (softmax rows, max-pool routing), by op name.
- RowsBody: the softmax cross-entropy row template, with its inline operands as kernel IR.
- GemmBody: a tiled matrix product (codegen/gemm.py) and its epilogue (GemmStores: the fused
  values as kernel IR; GemmPartials: partial sums of a split weight gradient).
- MergedBody: kernels run as one launch, each over its own slice of the range.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from graphc.codegen.gemm import DeviceInfo, GemmSpec
from graphc.codegen.index import Lin
from graphc.codegen.kernel import Kernel, Param
from graphc.ir import Node, Tensor

STEP_BUFFER = "graphc_step"         # the call counter random ops read


@dataclass(frozen=True)
class IRBody:
    """A kernel in the kernel IR; a work item computes `per_item` consecutive outputs."""

    kernel: Kernel
    per_item: int = 1


@dataclass(frozen=True)
class RawBody:
    """The hand-written template of `node`'s op (by name), computing `out`; `wide`: 64-bit
    indices."""

    op: str
    out: Tensor
    node: Node
    wide: bool


@dataclass(frozen=True)
class RowsBody:
    """Softmax cross-entropy rows: one work item per row of the logits (`n` elements, read
    from parameter `x` as `x_i`, element `element` of the row), writing the loss (`loss`:
    (parameter, dtype)), its gradient by the logits (`grad`), or both. Sparse targets are
    labels (`label`, `picked` = x at the label); dense ones are `t_i`; `g` scales the
    gradient's row. The expressions are kernel IR over `gid` and `i`."""

    x_dtype: np.dtype
    n: int
    rows: int
    wide: bool
    params: tuple[Param, ...]
    uses_step: bool
    loss: tuple[str, np.dtype] | None
    grad: tuple[str, np.dtype] | None
    x_i: object
    element: Lin
    t_i: object = None
    label: object = None
    picked: object = None
    g: object = None


@dataclass(frozen=True)
class GemmStores:
    """A GEMM epilogue: each (parameter, index, value, dtype) stored at the output element
    (gb, gi, gj), the value kernel IR that may read the accumulator (Acc)."""

    params: tuple[Param, ...]
    stores: tuple[tuple[str, Lin, object, np.dtype], ...]
    uses_step: bool


@dataclass(frozen=True)
class GemmPartials:
    """A GEMM epilogue storing each batch's accumulator as one of `split` partial sums
    (output by output) to its one parameter."""

    split: int


@dataclass(frozen=True)
class GemmBody:
    """A tiled GEMM for a device; `columns` (pitch, width): store only columns j with
    j % pitch < width."""

    spec: GemmSpec
    device: DeviceInfo
    epilogue: GemmStores | GemmPartials
    columns: tuple[int, int] | None = None


@dataclass(frozen=True)
class MergedBody:
    """Kernels (rendered IR kernels of one work item per element) run as one launch: each
    over its own range, padded to `group_size` work items."""

    members: tuple
    group_size: int

    def spans(self) -> list[tuple[int, int]]:
        """Each member's (first work item, padded number of work items)."""
        found, start = [], 0
        for member in self.members:
            span = -(-member.work_items // self.group_size) * self.group_size
            found.append((start, span))
            start += span
        return found


@dataclass(frozen=True)
class BuiltKernel:
    """One launch as data. `label` starts its name (the renderer appends a digest of its
    source). `args` are the plan buffers bound to its buffer parameters, in order, then
    `scalars` (int offsets); `writes` (buffer, value) what it stores. `global_size` and
    `local_size` are set by kernels with their own geometry (GEMM); others run one work item
    per `work_items`, shaped by the compiler for the device. `private`: (buffer, bytes) only
    this kernel uses (partial sums)."""

    label: str
    body: object
    args: tuple[str, ...]
    work_items: int
    ops: tuple[str, ...]
    flops: int
    bytes_read: int
    bytes_written: int
    global_size: tuple[int, ...] | None = None
    local_size: tuple[int, ...] | None = None
    scalars: tuple[int, ...] = ()
    private: tuple[tuple[str, int], ...] = ()
    writes: tuple[tuple[str, Tensor], ...] = ()


@dataclass(frozen=True)
class RenderedKernel(BuiltKernel):
    """A BuiltKernel after the renderer: its name, its source, what its source needs from the
    program (`needs`: "fp64", "round_half", ...), and for a merged launch its members' names."""

    name: str = ""
    source: str = ""
    needs: frozenset = frozenset()
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuiltBundle:
    """The kernels of a horizontal bundle's members (each member's, in order), which the
    render stage merges into launches within the renderer's caps (codegen/horizontal.py)."""

    members: tuple[tuple[BuiltKernel, ...], ...]


@dataclass(frozen=True)
class KernelSource:
    """A kernel's source with its name left open (a kernel is named after its source):
    `text(name)`. `placeholder` is the name its digest is taken with; `needs` what the
    program must hold for it (an extension, a helper function)."""

    text: Callable[[str], str]
    placeholder: str = "K"
    needs: frozenset = frozenset()


def digest(text: str) -> str:
    """Six hex digits of a source's SHA-1 (kernel names end with the digest of their source)."""
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def node_ops(nodes) -> tuple[str, ...]:
    """`op # site` of each node a kernel computes (the dumps match them to equations)."""
    return tuple(f"{n.op} # {n.site}" for n in nodes)


def traffic(args, stores, nbytes: dict) -> tuple[int, int]:
    """(bytes read, bytes written) of a kernel over the plan buffers `args` storing `stores`."""
    written = sum(t.type.nbytes for t in stores)
    read = sum(nbytes.get(a, 0) for a in args) - written
    return max(read, 0), written
