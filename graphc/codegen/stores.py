"""Where a kernel stores each value it writes: most values at the kernel's own index; a
value of another shape and the same size (an epilogue reached through reshapes,
passes/fuse.py) at the same row-major position; a concatenation of pieces of the kernel's
shape (a GEMM epilogue) once per piece, each piece into its block of the concatenation."""
from __future__ import annotations

from graphc.codegen.index import flatten, unflatten
from graphc.ir import Tensor


def store_targets(value: Tensor, idx: list, space: tuple[int, ...]) -> list[tuple[Tensor, list]]:
    """(value to compute, its index to compute it at, index into `value`'s buffer) for each
    store of `value` by a kernel whose own index `idx` runs over `space`."""
    node = value.producer
    if value.shape == tuple(space):
        return [(value, list(idx), list(idx))]
    if node is None or node.op != "concatenate":
        same = unflatten(flatten(idx, space), value.shape)     # same row-major position
        return [(value, same, same)]
    axis, start, targets = node.attrs["axis"], 0, []
    for piece in node.inputs:
        shifted = list(idx)
        shifted[axis] = idx[axis] + start
        targets.append((piece, list(idx), shifted))
        start += piece.shape[axis]
    return targets
