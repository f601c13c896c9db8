"""Rewrites that take one element along an axis as late as possible: "keep only what is read".

A model exported from torch runs an LSTM over the whole sequence, stacks the hidden states
(ONNX's Y output) and then reads only the last step (`h[:, -1]`, a Gather with a constant
index). Computed as written, a kernel builds the whole stack, evaluating a select over all
the steps for every element, to hand one step to the next layer. These exact rules move a
`take` of one constant index through the movement ops in between until it meets the piece
it reads:

- take(transpose(x, perm), c, axis)  -> transpose(take(x, c, perm[axis]), the rest of perm)
- take(concatenate(pieces, axis), c, axis) -> take(the piece holding c, c - its start, axis)
- take(x, c, axis) where x has size 1 along axis -> reshape(x) without that axis
- concatenate of one value -> that value

Only a 0-d integer constant index inside the axis fires a rule: an index out of range is an
error the interpreter and the checking modes report (devices clamp), so it stays as written.
"""
from __future__ import annotations

import numpy as np

from graphc import dtypes
from graphc.ir import Node, Tensor
from graphc.rewrite import constant_like, make


def _constant_index(index: Tensor, size: int) -> int | None:
    """The index as a non-negative int when it is a 0-d integer constant inside [-size, size)."""
    if index.producer is not None or index.role != "constant" or index.shape != () \
            or not dtypes.is_int(index.dtype):
        return None
    value = int(np.asarray(index.data))
    if not -size <= value < size:
        return None
    return value + size if value < 0 else value


def _same(value: Tensor, node: Node) -> Tensor | None:
    return value if value.type == node.output.type else None


def take_through_transpose(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """take(transpose(x, perm), c, axis) -> transpose(take(x, c, perm[axis]), perm')."""
    x, index = inputs
    if x.op != "transpose" or _constant_index(index, x.shape[node.attrs["axis"]]) is None:
        return None
    perm = tuple(x.producer.attrs["perm"])
    inner_axis = perm[node.attrs["axis"]]
    taken = make("take", [x.producer.inputs[0], index], node.site, axis=inner_axis)
    rest = [p - (p > inner_axis) for p in perm if p != inner_axis]
    if rest == list(range(len(rest))):
        return _same(taken, node)
    return _same(make("transpose", [taken], node.site, perm=tuple(rest)), node)


def take_of_concatenate(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """take(concatenate(pieces, axis), c, axis) -> take(piece, c - start, axis)."""
    x, index = inputs
    axis = node.attrs["axis"]
    if x.op != "concatenate" or x.producer.attrs["axis"] != axis:
        return None
    position = _constant_index(index, x.shape[axis])
    if position is None:
        return None
    start = 0
    for piece in x.producer.inputs:
        stop = start + piece.shape[axis]
        if start <= position < stop:
            inner = constant_like(np.asarray(position - start, index.dtype), index)
            return _same(make("take", [piece, inner], node.site, axis=axis), node)
        start = stop
    return None


def take_of_unit_axis(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """take(x, 0 or -1, axis) where x has size 1 along axis -> reshape(x) without the axis."""
    x, index = inputs
    axis = node.attrs["axis"]
    if x.shape[axis] != 1 or _constant_index(index, 1) is None:
        return None
    return _same(make("reshape", [x], node.site, shape=node.output.shape), node)


def drop_single_concatenate(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """concatenate(x) of one value -> x."""
    return _same(inputs[0], node) if len(inputs) == 1 else None
