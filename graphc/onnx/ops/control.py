"""ONNX control flow, unrolled at import: If with a condition known at import, Loop with a
trip count and conditions known at import, and Scan over its (static) sequence axis.

Each iteration converts the body anew, its inputs bound to the values of that iteration
(the iteration number and conditions are constants, so the arithmetic on them folds); a
body sees the values of the graphs around it, as ONNX scoping says. A condition computed
from the graph's inputs binds those inputs by value; one computed from weights is refused.
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.builder import constant
from graphc.ir import Tensor
from graphc.onnx.ops.shape import axis_slice
from graphc.onnx.registry import NodeView, converter, static_value

MAX_ITERATIONS = 4096


def _flag(node: NodeView, x: Tensor, what: str) -> bool:
    return bool(np.asarray(static_value(x, what, node.name or node.op_type)).reshape(-1)[0])


@converter("If", attrs=("then_branch", "else_branch"), max_outputs=1 << 16)
def _if(node: NodeView) -> list[Tensor]:
    taken = node.attr("then_branch") if node.static(0, "the condition").reshape(-1)[0] \
        else node.attr("else_branch")
    return node.subgraph(taken, {}, "then" if taken is node.attr("then_branch") else "else")


@converter("Loop", attrs=("body",), max_outputs=1 << 16)
def _loop(node: NodeView) -> list[Tensor]:
    body = node.attr("body")
    trips = node.static(0, "the trip count")
    trips = None if trips is None else int(np.asarray(trips).reshape(-1)[0])
    going = True if not node.has(1) else bool(node.static(1, "the condition").reshape(-1)[0])
    carried = [x for x in node.inputs[2:]]
    names = [i.name for i in body.input]
    scans: list[list[Tensor]] = []
    i = 0
    while going and (trips is None or i < trips):
        if i >= MAX_ITERATIONS:
            raise node.unsupported(f"a loop of more than {MAX_ITERATIONS} iterations")
        bindings = dict(zip(names, [constant(np.asarray(i, np.int64)),
                                    constant(np.asarray(going))] + carried))
        outs = node.subgraph(body, bindings, f"iteration{i}")
        going = _flag(node, outs[0], "the loop's condition")
        carried = outs[1:1 + len(carried)]
        scans.append(outs[1 + len(carried):])
        i += 1
    count = len(body.output) - 1 - len(carried)
    if count and not scans:
        raise node.unsupported("scan outputs of a loop that runs no iteration")
    stacked = [gc.stack([step[k] for step in scans], 0) for k in range(count)]
    return carried + stacked


@converter("Scan", attrs=("body", "num_scan_inputs", "scan_input_axes",
                          "scan_input_directions", "scan_output_axes",
                          "scan_output_directions"), min_opset=9, max_outputs=1 << 16)
def _scan(node: NodeView) -> list[Tensor]:
    body = node.attr("body")
    m = node.attr("num_scan_inputs")
    states, inputs = node.inputs[:len(node.inputs) - m], node.inputs[len(node.inputs) - m:]
    in_axes = [a % x.ndim for a, x in zip(node.attr("scan_input_axes") or [0] * m, inputs)]
    in_dirs = node.attr("scan_input_directions") or [0] * m
    steps = inputs[0].shape[in_axes[0]]
    names = [i.name for i in body.input]
    per_step: list[list[Tensor]] = []
    for t in range(steps):
        slices = []
        for x, axis, reverse in zip(inputs, in_axes, in_dirs):
            at = steps - 1 - t if reverse else t
            slices.append(gc.squeeze(axis_slice(x, axis, at, at + 1), axis))
        outs = node.subgraph(body, dict(zip(names, list(states) + slices)), f"step{t}")
        states = outs[:len(states)]
        per_step.append(outs[len(states):])
    count = len(body.output) - len(states)
    out_axes = node.attr("scan_output_axes") or [0] * count
    out_dirs = node.attr("scan_output_directions") or [0] * count
    stacked = []
    for k in range(count):
        column = [step[k] for step in per_step]
        column = column[::-1] if out_dirs[k] else column
        stacked.append(gc.stack(column, out_axes[k] % (column[0].ndim + 1)))
    return list(states) + stacked
