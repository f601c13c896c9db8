"""The lowering registry: how each op becomes kernel code, in one table keyed by op name.

An op's `OpLowering` says which kind of kernel computes it and how:

- "inline": computed inside its consumers' kernels, as an expression of the kernel IR at the
  consumer's index. Every elementwise op (OpDef kind "elementwise", rendered from its record's
  per-language template) and the ops below with an index `rule` (codegen/movement.py:
  movement ops are index maps, random ops Philox draws).
- "loop": a kernel of its own, one work item per output element looping over a second index
  space (`loop`: a LoopSpec builder of codegen/reductions.py). `fast` names a faster builder
  tried first ("gemm", "conv_gemm": the tiled GEMM generator; "pool_rows": pools whose
  windows tile the input, codegen/pool_rows.py, where the renderer has the template), which
  may decline.
- "raw": a hand-written template, one per backend (`template`: the key the renderers know
  it by; OpenCL: codegen/raw.py, opencl_rows.py), launching `geometry(t, node)` work items.
- "host": no kernel; the host runs it between launches (collectives: codegen/host.py), reading
  its operands from their buffers (`gathers_pieces`: a concatenation's pieces each from its
  own buffer, packed by the host).

The flags are what fusion (passes/fuse.py, stored.py, horizontal.py) asks instead of
importing code generation: which operands a kernel re-reads, which it loads from buffers, which
ops may share a kernel, which small kernels may run bundled. `prefix` starts kernel names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from graphc.codegen import movement, reductions
from graphc.codegen.gather_views import movement_root, strided_gather  # noqa: F401 (fusion)
from graphc.ir import Tensor
from graphc.ops.registry import get_op

KINDS = ("inline", "loop", "raw", "host")


@dataclass(frozen=True)
class OpLowering:
    """How one op is lowered (see the module doc)."""

    kind: str
    prefix: str = "E"
    rule: Callable | None = None        # inline: (lowering, t, node, idx, valid) generator
    loop: Callable | None = None        # loop: (t, node, **attrs) -> LoopSpec
    fast: str | None = None             # loop: "gemm" | "conv_gemm", tried before the loop
    template: str | None = None         # raw: the renderers' template key
    geometry: Callable | None = None    # raw: (t, node) -> (work items, flops)
    rereads: bool = False               # reads each operand element many times over
    buffer_operands: bool = False       # its code loads its operands from buffers...
    computed_operands: tuple[int, ...] = ()     # ...except these, computed inline
    reads_reshaped: bool = False        # reads a reshape of a buffer in place
    shares_kernel_with: str | None = None       # an op whose kernel can also compute this
    bundles: bool = False               # small kernels may run bundled (horizontal fusion)
    gathers_pieces: bool = False        # host: reads a concatenation's pieces where they lie

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"lowering kind {self.kind!r} is not one of {KINDS}")


ELEMENTWISE = OpLowering("inline")


def _inline(rule, **flags) -> OpLowering:
    return OpLowering("inline", rule=rule, **flags)


def _loop(prefix: str, loop, **flags) -> OpLowering:
    return OpLowering("loop", prefix, loop=loop, rereads=flags.pop("rereads", True), **flags)


def _raw(prefix: str, template: str, **flags) -> OpLowering:
    return OpLowering("raw", prefix, template=template, rereads=True, buffer_operands=True,
                      **{"reads_reshaped": True, **flags})


def _host(**flags) -> OpLowering:
    return OpLowering("host", "HOST", buffer_operands=True, reads_reshaped=True, **flags)


def _reduction(prefix: str, builder) -> OpLowering:
    return _loop(prefix, builder, rereads=False, bundles=True)


def softmax_rows(t: Tensor, axis: int) -> int:
    """Rows of a softmax along `axis` (one work item each)."""
    n = t.shape[axis]
    return t.size // max(n, 1) if n else 0


def tiles_exactly(node) -> bool:
    """Do a max-pool gradient's windows tile its input exactly (then one work item per row
    of windows)?"""
    x, g = node.inputs
    k, s, p = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
    (h, w), (oh, ow) = x.shape[2:], g.shape[2:]
    return tuple(s) == tuple(k) and tuple(p) == (0, 0) and (h, w) == (oh * k[0], ow * k[1])


def _softmax_geometry(t: Tensor, node) -> tuple[int, int]:
    return softmax_rows(t, node.attrs["axis"]), 5 * t.size


def _max_pool2d_grad_geometry(t: Tensor, node) -> tuple[int, int]:
    if tiles_exactly(node):
        n, c, _, _ = node.inputs[0].shape
        return n * c * node.inputs[1].shape[2], t.size
    return t.size, t.size


def _elementwise_geometry(t: Tensor, node) -> tuple[int, int]:
    return t.size, t.size


def _rows_geometry(flops_per_element: int):
    """One work item per row of the last axis."""
    def geometry(t: Tensor, node) -> tuple[int, int]:
        return t.size // t.shape[-1], flops_per_element * t.size
    return geometry


LOSS, GRAD = "softmax_cross_entropy", "softmax_cross_entropy_grad"

LOWERINGS: dict[str, OpLowering] = {
    "reshape": _inline(movement.reshape_rule),
    "transpose": _inline(movement.transpose_rule),
    "broadcast_to": _inline(movement.broadcast_to_rule),
    "slice": _inline(movement.slice_rule),
    "slice_grad": _inline(movement.slice_grad_rule),
    "pad": _inline(movement.pad_rule),
    "concatenate": _inline(movement.concatenate_rule),
    "take": _inline(movement.take_rule, buffer_operands=True, computed_operands=(1,)),
    "one_hot": _inline(movement.one_hot_rule),
    "random_uniform": _inline(movement.random_uniform_rule),
    "random_normal": _inline(movement.random_normal_rule),
    "random_bernoulli": _inline(movement.random_bernoulli_rule),
    "reduce_sum": _reduction("R", reductions.reduction("sum")),
    "reduce_max": _reduction("R", reductions.reduction("max")),
    "reduce_min": _reduction("R", reductions.reduction("min")),
    "argmax": _reduction("A", reductions.arg_reduction("argmax")),
    "argmin": _reduction("A", reductions.arg_reduction("argmin")),
    "matmul": _loop("MM", reductions.matmul, fast="gemm"),
    "conv2d": _loop("CONV", reductions.conv2d, fast="conv_gemm"),
    "conv2d_grad_input": _loop("CONVDX", reductions.conv2d_grad_input, fast="conv_gemm"),
    "conv2d_grad_weight": _loop("CONVDW", reductions.conv2d_grad_weight, fast="conv_gemm"),
    "max_pool2d": _loop("MAXPOOL", reductions.max_pool2d, fast="pool_rows"),
    "avg_pool2d": _loop("AVGPOOL", reductions.avg_pool2d, fast="pool_rows"),
    "avg_pool2d_grad": _loop("AVGPOOLDX", reductions.avg_pool2d_grad, fast="pool_rows"),
    "take_grad": _loop("SCATTER", reductions.take_grad),
    "softmax": _raw("SOFTMAX", "softmax", geometry=_softmax_geometry),
    "log_softmax": _raw("LOGSOFTMAX", "log_softmax", geometry=_softmax_geometry),
    "max_pool2d_grad": _raw("MAXPOOLDX", "max_pool2d_grad", geometry=_max_pool2d_grad_geometry),
    "max_pool2d_select": _raw("MAXPOOLSEL", "max_pool2d_select", geometry=_elementwise_geometry),
    "layer_norm": _raw("LAYERNORM", "layer_norm", geometry=_rows_geometry(8)),
    "layer_norm_grad": _raw("LAYERNORMDX", "layer_norm_grad", geometry=_rows_geometry(14)),
    LOSS: _raw("XENT", "cross_entropy_rows", computed_operands=(1,), reads_reshaped=False),
    GRAD: _raw("XENTDX", "cross_entropy_rows", computed_operands=(1, 2), reads_reshaped=False,
               shares_kernel_with=LOSS),
    "allreduce": _host(gathers_pieces=True),
    "allgather": _host(),
    "allgather_grad": _host(),
    "broadcast": _host(),
    "broadcast_grad": _host(),
}


def lowering_of(op: str) -> OpLowering:
    """The lowering of op `op` (elementwise ops share one)."""
    found = LOWERINGS.get(op)
    if found is not None:
        return found
    if get_op(op).kind == "elementwise":
        return ELEMENTWISE
    raise KeyError(f"op {op!r} has no lowering: add it to graphc/codegen/lowerings.py")


def inlinable(t: Tensor) -> bool:
    """Can `t` be computed inside its consumer's kernel (no loop of its own)?"""
    return t.producer is not None and lowering_of(t.producer.op).kind == "inline"


def kernel_kind(op: str) -> str:
    """The kind of kernel fusion builds around a stored value of op `op`: "elementwise" (the
    value and the inline ops it reads), "loop" or "raw"."""
    kind = lowering_of(op).kind
    return "elementwise" if kind == "inline" else kind


def loop_spec(t: Tensor) -> reductions.LoopSpec:
    """The LoopSpec of the loop op producing `t`."""
    node = t.producer
    return lowering_of(node.op).loop(t, node, **node.attrs)


def share_kernel(a: Tensor, b: Tensor) -> bool:
    """Can the kernel computing `a` compute `b` too? (A softmax cross-entropy and its
    gradient over the same logits: one row kernel writes both.)"""
    x, y = a.producer, b.producer
    return lowering_of(y.op).shares_kernel_with == x.op and x.attrs == y.attrs \
        and all(i is j for i, j in zip(x.inputs[:2], y.inputs[:2]))


def operand_view(t: Tensor, is_buffer) -> tuple[Tensor, bool] | None:
    """(tensor whose buffer holds `t`'s data, transposed?) when a kernel can read `t`
    straight from memory: a buffer, a reshape of one (same bytes), or a transpose of the
    last two axes of either (a layout flag). None when `t` needs a kernel of its own."""
    if is_buffer(t):
        return t, False
    node = t.producer
    if node is None or node.op not in ("reshape", "transpose"):
        return None
    inner = operand_view(node.inputs[0], is_buffer)
    if inner is None or inner[1]:
        return None
    if node.op == "reshape":
        return inner
    perm = tuple(node.attrs["perm"])
    swap = tuple(range(len(perm) - 2)) + (len(perm) - 1, len(perm) - 2)
    return (inner[0], True) if perm == swap else None


def gathered_operand(t: Tensor, is_buffer, operand: str = "a"):
    """(buffer tensor, Gather) when the GEMM reads matmul operand `t` (a chain of reshapes and
    transposes of a buffer) through index arithmetic (codegen/gather_views.py), else None."""
    return strided_gather(t, is_buffer, operand)
