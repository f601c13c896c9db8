"""Shape arithmetic shared by shape rules and autodiff: broadcasting and axes."""
from __future__ import annotations

from typing import Sequence

from graphc.errors import ShapeError


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """numpy's broadcasting rule; ShapeError naming both shapes when they do not fit."""
    ndim = max((len(s) for s in shapes), default=0)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    result = []
    for dims in zip(*padded):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            listed = " and ".join(str(tuple(s)) for s in shapes)
            raise ShapeError(f"shapes {listed} cannot be broadcast together")
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def normalize_axis(axis: int, ndim: int) -> int:
    """A non-negative axis, or ShapeError (a 0-d input takes axis 0 or -1)."""
    if ndim == 0:
        if axis not in (0, -1):
            raise ShapeError(f"axis {axis} is out of range for 0-d input")
        return 0
    if not -ndim <= axis < ndim:
        raise ShapeError(f"axis {axis} is out of range for {ndim}-d input")
    return axis % ndim


def normalize_axes(axes, ndim: int) -> tuple[int, ...]:
    """None → all axes; an int or a tuple → sorted non-negative axes without repeats."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, int):
        axes = (axes,)
    normalized = tuple(sorted(normalize_axis(int(a), ndim) for a in axes))
    if len(set(normalized)) != len(normalized):
        raise ShapeError(f"repeated axis in {tuple(axes)}")
    return normalized


def reduced_shape(shape: Sequence[int], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    """The shape after reducing `axes`."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def broadcast_axes(from_shape: Sequence[int], to_shape: Sequence[int]) -> tuple[int, ...]:
    """Axes of `to_shape` along which `from_shape` was broadcast (to sum a gradient back)."""
    lead = len(to_shape) - len(from_shape)
    stretched = (i + lead for i, d in enumerate(from_shape) if d == 1 and to_shape[i + lead] != 1)
    return tuple(range(lead)) + tuple(stretched)
