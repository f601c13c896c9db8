"""Where a kernel stores each value it writes: most values at the kernel's own index; a
concatenation of pieces of the kernel's shape (a GEMM epilogue, passes/fuse.py) once per
piece, each piece into its block of the concatenation."""
from __future__ import annotations

from graphc.ir import Tensor


def store_targets(value: Tensor, idx: list, space: tuple[int, ...]) -> list[tuple[Tensor, list]]:
    """(value to compute at `idx`, index into `value`'s buffer) for each store of `value`
    by a kernel over `space`."""
    node = value.producer
    if value.shape == tuple(space) or node is None or node.op != "concatenate":
        return [(value, list(idx))]
    axis, start, targets = node.attrs["axis"], 0, []
    for piece in node.inputs:
        shifted = list(idx)
        shifted[axis] = idx[axis] + start
        targets.append((piece, shifted))
        start += piece.shape[axis]
    return targets
