"""Which values get a buffer: the recompute-versus-store cost model of fusion (see
passes/fuse.py), and the kernel caps of passes/kernel_size.py applied as values are met.

An inlined value is recomputed by every kernel that reads it. It is stored instead when it
has several consumers and its inline cost (ops in its cone, transcendental ops counting
TRANSCENDENTAL_COST) times the number of extra consumers exceeds RECOMPUTE_BUDGET, when a
windowed op (matmul, conv, pooling, softmax rows) would read it many times over and its cone
does arithmetic, or when hand-written code reads it from memory.
"""
from __future__ import annotations

from graphc.codegen.host import gathered_pieces
from graphc.codegen.lowerings import (gathered_operand, inlinable, lowering_of,
                                      movement_root, operand_view)
from graphc.codegen.movement import contiguous_pieces
from graphc.ir import Graph, Tensor
from graphc.ops.registry import get_op
from graphc.passes.kernel_size import InlineSizes

RECOMPUTE_BUDGET = 8
TRANSCENDENTAL_COST = 4
TRANSCENDENTAL = {"exp", "log", "sqrt", "tanh", "sigmoid", "sin", "cos", "power", "erf"}


def node_cost(t: Tensor) -> int:
    """The cost of computing `t` once from its inputs."""
    if t.producer is None or get_op(t.producer.op).kind != "elementwise":
        return 0
    return TRANSCENDENTAL_COST if t.producer.op in TRANSCENDENTAL else 1


def cone(t: Tensor, stored: set) -> list[Tensor]:
    """The inlined values computed when `t` is computed: stop at stored values and leaves."""
    seen, order, stack = set(), [], [t]
    while stack:
        value = stack.pop()
        if value in seen:
            continue
        seen.add(value)
        order.append(value)
        if value.producer is not None and (value is t or value not in stored):
            stack.extend(v for v in value.producer.inputs
                         if v not in stored and v.producer is not None)
    return order


def should_store(t: Tensor, consumers: list, stored: set) -> bool:
    """The recompute-versus-store decision for an inlinable value (see the module doc)."""
    if any(lowering_of(c.op).buffer_operands and _read_from_buffer(c, t)
           and not (lowering_of(c.op).reads_reshaped and _reshaped_buffer(t, stored))
           and not (lowering_of(c.op).gathers_pieces and _gathered(t, stored))
           for c in consumers):
        return True
    if any(lowering_of(c.op).rereads for c in consumers):
        return _cost_exceeds(t, stored, 0)
    extra = len(consumers) - 1
    return extra > 0 and _cost_exceeds(t, stored, RECOMPUTE_BUDGET // extra)


def _cost_exceeds(t: Tensor, stored: set, budget: int) -> bool:
    """Does computing `t` inline cost more than `budget`? (The walk stops as soon as it
    does: asked of every value, a full walk made long chains quadratic.)"""
    cost, seen, stack = 0, set(), [t]
    while stack:
        value = stack.pop()
        if value in seen:
            continue
        seen.add(value)
        cost += node_cost(value)
        if cost > budget:
            return True
        if value.producer is not None and (value is t or value not in stored):
            stack.extend(v for v in value.producer.inputs
                         if v not in stored and v.producer is not None)
    return False


def _read_from_buffer(consumer, t: Tensor) -> bool:
    """Does `consumer`'s hand-written code load `t` from a buffer (not compute it inline)?"""
    computed = lowering_of(consumer.op).computed_operands
    return any(v is t and i not in computed for i, v in enumerate(consumer.inputs))


def _gathered(t: Tensor, stored: set) -> bool:
    """A concatenation of buffers the host gathers itself (codegen/host.py)."""
    return gathered_pieces(t, lambda v: v in stored or v.producer is None) is not None


def _reshaped_buffer(t: Tensor, stored: set) -> bool:
    """A reshape of a buffer: hand-written kernels read its bytes in place."""
    view = operand_view(t, lambda v: v in stored or v.producer is None)
    return view is not None and not view[1] and view[0] is not t


def choose_stored(graph: Graph, outputs: list[Tensor]) -> set[Tensor]:
    """The values that get a buffer."""
    users = graph.users()
    stored = set(outputs)
    for node in graph.nodes:
        for t in node.outputs:
            if not inlinable(t):
                stored.add(t)
        if node.op == "matmul":
            stored.update(_gathered_roots(node))
    sizes = InlineSizes(stored)
    for node in graph.nodes:        # producers first, so a cone's cost is known when asked
        for t in node.outputs:
            if node.op == "concatenate" and any(lowering_of(c.op).gathers_pieces
                                                for c in users.get(t, [])):
                _store_bucket_pieces(t, stored)
            if t not in stored and should_store(t, users.get(t, []), stored):
                stored.add(t)
        sizes.cap(node)
        if node.op == "matmul":
            _store_gemm_operands(node, stored)
        elif lowering_of(node.op).fast == "conv_gemm":
            _store_conv_operands(node, stored)
    return stored


def _store_bucket_pieces(t: Tensor, stored: set) -> None:
    """A bucket of allreduces is gathered by the host from its pieces' buffers: a piece
    computed inline (a loss, an elementwise gradient) is stored, under its reshapes."""
    if not contiguous_pieces(t):
        return
    for piece in t.producer.inputs:
        while piece.producer is not None and piece.producer.op == "reshape" \
                and piece not in stored:
            piece = piece.producer.inputs[0]
        if piece.producer is not None:
            stored.add(piece)


def _gathered_roots(node) -> list[Tensor]:
    """The computed values under a matmul's operands that are reshapes and transposes of
    them: stored, the GEMM reads the views in place (codegen/gather_views.py), where
    storing a view itself would cost a copy kernel."""
    roots = []
    for operand in node.inputs:
        under = movement_root(operand, lambda v: v.producer is None)
        if under is None or under[0].producer is None:
            continue
        root = under[0]
        if gathered_operand(operand, lambda v, r=root: v is r or v.producer is None) \
                is not None:
            roots.append(root)
    return roots


def _store_conv_operands(node, stored: set) -> None:
    """The implicit-GEMM convolutions gather windows from a buffer or a reshape of one
    (codegen/conv_gemm.py); any other operand (a channels_last image seen channels_first,
    a transposed view) is stored first, else the convolution falls back to its loop kernel."""
    def is_buffer(v):
        return v in stored or v.producer is None
    for operand in node.inputs:
        view = operand_view(operand, is_buffer)
        if view is None or view[1]:
            stored.add(operand)


def _store_gemm_operands(node, stored: set) -> None:
    """The tiled GEMM reads its operands from memory: buffers, reshapes of buffers, and
    transposes of those (a layout flag), or other reshapes and transposes of a buffer
    (codegen/gather_views.py). Anything else (a concatenation, a sum...) is stored first;
    under a chain of reshapes and transposes, the value under it, so the chain stays free."""
    def is_buffer(v):
        return v in stored or v.producer is None
    for operand in node.inputs:
        if operand_view(operand, is_buffer) is not None:
            continue
        under = movement_root(operand, is_buffer)
        if under is not None and under[0] in stored and \
                gathered_operand(operand, is_buffer) is not None:
            continue
        producer = operand.producer
        if producer.op == "transpose" and operand_view(producer.inputs[0], is_buffer) is None:
            stored.add(producer.inputs[0])
        if operand_view(operand, is_buffer) is None:
            stored.add(operand)
