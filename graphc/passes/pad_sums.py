"""A sum of zero-padded pieces whose windows along one axis do not overlap is a concatenation.

Backpropagation through the steps of an unrolled sequence gives such sums: the gradient of
`x[t*B:(t+1)*B]` is that block padded with zeros to x's shape, and autodiff adds one padded
block per step. Computed as written, every element evaluates every padded term; as a
`concatenate` (with zero pieces filling the gaps) each element reads one piece, and when the
pieces are stored the memory plan can place them in the stacked buffer directly.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import Node, Tensor, TensorType
from graphc.passes.fold import is_scalar
from graphc.rewrite import make

Piece = tuple[int, int, Tensor]         # start, stop along the axis, the value there


def is_zero(value: Tensor) -> bool:
    """Is every element of `value` known to be zero (a constant, maybe broadcast)?"""
    return is_scalar(value, 0)


def pieces_of(value: Tensor) -> tuple[int, list[Piece]] | None:
    """(axis, non-zero pieces) of a zero pad along one axis or of a concatenation."""
    node = value.producer
    if node is None:
        return None
    if node.op == "concatenate":
        axis, start, found = node.attrs["axis"], 0, []
        for x in node.inputs:
            stop = start + x.shape[axis]
            if not is_zero(x):
                found.append((start, stop, x))
            start = stop
        return axis, found
    if node.op != "pad" or node.attrs["value"] != 0:
        return None
    padded = [axis for axis, widths in enumerate(node.attrs["pad_width"]) if any(widths)]
    if len(padded) != 1:
        return None
    axis = padded[0]
    before = node.attrs["pad_width"][axis][0]
    return axis, [(before, before + node.inputs[0].shape[axis], node.inputs[0])]


def pad_sum_to_concatenate(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """pad(a) + pad(b) (or + a concatenation) over disjoint windows of one axis -> concatenate."""
    out = node.output
    if any(x.type != out.type for x in inputs):
        return None
    found = [pieces_of(x) for x in inputs]
    if None in found or found[0][0] != found[1][0]:
        return None
    axis = found[0][0]
    pieces = sorted(found[0][1] + found[1][1], key=lambda p: p[0])
    if len(pieces) < 2 or any(a[1] > b[0] for a, b in zip(pieces, pieces[1:])):
        return None
    return make("concatenate", _with_gaps(pieces, out, axis, node.site), node.site, axis=axis)


def _with_gaps(pieces: list[Piece], out: Tensor, axis: int, site: str) -> list[Tensor]:
    """The pieces in order, zero blocks filling the gaps between them and at the ends."""
    values, position = [], 0
    for start, stop, value in pieces + [(out.shape[axis], out.shape[axis], None)]:
        if start > position:
            values.append(_zeros(out, axis, start - position, site))
        if value is not None:
            values.append(value)
        position = stop
    return values


def _zeros(like: Tensor, axis: int, size: int, site: str) -> Tensor:
    """A block of zeros: `like`'s shape with `size` along `axis` (a broadcast scalar)."""
    zero = np.zeros((), like.dtype)
    zero.setflags(write=False)
    scalar = Tensor(TensorType((), like.dtype), role="constant", data=zero, site=site)
    shape = like.shape[:axis] + (size,) + like.shape[axis + 1:]
    return make("broadcast_to", [scalar], site, shape=shape)
