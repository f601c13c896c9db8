"""The checking modes' view of indexing ops: the indices a kernel read, against their ranges.

A device kernel has no error channel: it clamps an out-of-range `take` index and gives an
out-of-range label loss 0. GRAPHC_CHECK_NUMERICS and GRAPHC_VALIDATE
(graphc/inspection/checker.py) call `first_index_problem` after each launch with the values
the device stored so far, so an index out of its op's `index_range` is an IndexRangeError
naming the op, the value, its position and the user's line, in any graph.
"""
from __future__ import annotations

import numpy as np

from graphc.errors import IndexRangeError
from graphc.interp import index_problem, leaf_value, run_node
from graphc.ir import Node, Tensor
from graphc.ops.registry import get_op


def first_index_problem(nodes, device: dict, step: int = 0) -> tuple[Node, str] | None:
    """The first of `nodes` (a kernel's equations, in graph order) whose index operand holds
    a value out of range, and what is wrong; `device` holds the stored values and leaves."""
    local: dict[Tensor, np.ndarray] = {}
    for node in nodes:
        if get_op(node.op).index_range is None:
            continue
        try:
            problem = index_problem(node, [value_in_kernel(v, device, local, step)
                                           for v in node.inputs])
        except IndexRangeError as exc:          # an index op computed for an operand
            problem = str(exc)
        if problem is not None:
            return node, problem
    return None


def value_in_kernel(v: Tensor, device: dict, local: dict, step: int = 0) -> np.ndarray:
    """`v` as a kernel read it: `device`'s value when stored or a leaf, else computed from
    the stored values (only what `v` needs), remembered in `local`."""
    stack = [v]
    while stack:
        u = stack[-1]
        if u in device or u in local:
            stack.pop()
            continue
        if u.producer is None:
            local[u] = leaf_value(u, {})
            continue
        missing = [i for i in u.producer.inputs if i not in device and i not in local]
        if missing:
            stack.extend(missing)
            continue
        node = u.producer
        args = [device[i] if i in device else local[i] for i in node.inputs]
        local.update(zip(node.outputs, run_node(node, args, step)))
    return device[v] if v in device else local[v]
