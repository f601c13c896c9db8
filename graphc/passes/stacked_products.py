"""Products of a value's steps by one matrix become one product: x[:, t] @ W for every t is
reshape(transpose(x, (1, 0, 2)), (T * B, F)) @ W, whose rows t*B .. (t+1)*B are step t's.

An unrolled recurrence written from primitives projects each step's input on its own
(`x[:, t] @ W`): T small GEMMs, and in the backward pass T weight-gradient terms whose
operands (the steps of x) the matmul_sums pass can only gather with a copy. gc.nn's
recurrent layers build the one projection themselves (graphc/nn/recurrent.py); this pass
finds the same pattern in any graph, so both compile to the same kernels. The stacked
operand is time-major so each step's rows are one contiguous block: its slices are views,
and the gradient rows of the steps stack in one buffer (passes/views.py).

`time_major(x, axis)` is the stacked operand; matmul_sums builds the same value for a sum
of `x[:, t].T @ dz[t]` over every step in order, which CSE then shares with the forward.
"""
from __future__ import annotations

from collections import defaultdict

from graphc.builder import apply
from graphc.ir import Graph, Node, Tensor
from graphc.ops.indexing import slice_tensor
from graphc.passes import Pass
from graphc.rewrite import rebuild
from graphc.sites import site_of

MIN_STEPS = 3           # two products are not worth a transpose of the whole input


def stack_products(graph: Graph) -> Graph:
    """Replace each group of >= MIN_STEPS 2-D products `step_t(x) @ W` (one x, one axis, one
    W, covering at least half the steps) by row blocks of one product."""
    groups = _groups(graph)
    members = {id(node): key for key, nodes in groups.items() for node in nodes}
    stacked: dict = {}

    def replace(node: Node, inputs):
        key = members.get(id(node))
        if key is None:
            return None
        source, axis, step = _step_of(inputs[0])
        with site_of(node.site):
            if key not in stacked:
                stacked[key] = apply("matmul", [time_major(source, axis), inputs[1]])
            rows, product = node.outputs[0].shape[0], stacked[key]
            return [slice_tensor(product, (step * rows, 0),
                                 ((step + 1) * rows, product.shape[1]), (1, 1))]
    return rebuild(graph, replace) if groups else graph


def time_major(source: Tensor, axis: int) -> Tensor:
    """`source` (3-D) with `axis` moved first and the steps' rows stacked: (T * rows, F)."""
    perm = (axis,) + tuple(a for a in range(3) if a != axis)
    moved = source if perm == (0, 1, 2) else apply("transpose", [source], perm=perm)
    steps, rows, features = moved.shape
    return apply("reshape", [moved], shape=(steps * rows, features))


def step_of(t: Tensor) -> tuple[Tensor, int, int] | None:
    """(x, axis, t) when `t` is x's step t along `axis`, its other two axes kept whole and in
    order: `reshape(slice(x))` with the slice one wide on `axis` (x 3-D, `t` 2-D)."""
    if t.ndim != 2 or t.producer is None or t.producer.op != "reshape":
        return None
    sliced = t.producer.inputs[0]
    node = sliced.producer
    if node is None or node.op != "slice" or sliced.ndim != 3:
        return None
    source = node.inputs[0]
    starts, stops, steps = (tuple(node.attrs[k]) for k in ("starts", "stops", "steps"))
    if any(s != 1 for s in steps):
        return None
    narrowed = [a for a in range(3) if (starts[a], stops[a]) != (0, source.shape[a])]
    if len(narrowed) != 1 or stops[narrowed[0]] - starts[narrowed[0]] != 1:
        return None
    axis = narrowed[0]
    kept = tuple(source.shape[a] for a in range(3) if a != axis)
    return (source, axis, starts[axis]) if t.shape == kept else None


def _step_of(t: Tensor) -> tuple[Tensor, int, int]:
    found = step_of(t)
    assert found is not None, "a grouped product lost its step operand"
    return found


def _groups(graph: Graph) -> dict[tuple, list[Node]]:
    """Products to stack, by (x, axis, W): one product per step, enough steps."""
    found: dict[tuple, dict[int, Node]] = defaultdict(dict)
    for node in graph.nodes:
        if node.op != "matmul" or any(i.ndim != 2 for i in node.inputs):
            continue
        step = step_of(node.inputs[0])
        if step is None:
            continue
        source, axis, index = step
        found[(source, axis, node.inputs[1])].setdefault(index, node)
    return {key: list(by_step.values()) for key, by_step in found.items()
            if len(by_step) >= MIN_STEPS and 2 * len(by_step) >= key[0].shape[key[1]]}


stacked_products = Pass("stack_steps", stack_products)
