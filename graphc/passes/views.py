"""Concatenation without copies: the pieces are written straight into the stacked buffer.

A concatenation whose pieces are contiguous blocks of its output (along axis 0, or an axis
after leading axes of size one) needs no kernel when the kernels computing the pieces store
them into their blocks of the output's buffer: the memory plan gives each piece a view (an
OpenCL sub-buffer) of the concatenation's buffer. A concatenation whose pieces already lie,
in order, in another one's buffer is itself a view of that buffer (the stacked gradients of
steps 1..T-1 inside those of steps 0..T-1). Both stay scratch values: outputs and variables
keep buffers of their own.

Sub-buffers must start at a multiple of the device's base address alignment; VIEW_ALIGN is
above every alignment OpenCL devices report (4096 bits at most), so views work everywhere.
"""
from __future__ import annotations

import numpy as np

from graphc.codegen.movement import contiguous_pieces
from graphc.ir import Graph, Tensor

VIEW_ALIGN = 4096       # bytes
MOVEMENT_OPS = {"reshape", "transpose", "broadcast_to", "slice", "pad", "concatenate"}


def piece_offsets(t: Tensor) -> list[int]:
    """Byte offset of each piece of the concatenation `t` in its buffer."""
    offsets, position = [], 0
    for piece in t.producer.inputs:
        offsets.append(position)
        position += piece.type.nbytes
    return offsets


def plan_views(graph: Graph, stored: set, outputs: set) -> dict[Tensor, dict]:
    """For each concatenation done without a kernel: {value: (container, byte offset)}
    for the values it places (its pieces, or itself inside another concatenation).
    Pieces computed inline are added to `stored` (their kernels write the views)."""
    placed: dict[Tensor, tuple[Tensor, int]] = {}
    decided: dict[Tensor, dict] = {}
    candidates = [t for node in graph.nodes for t in node.outputs
                  if t in stored and t not in outputs and contiguous_pieces(t)]
    for t in sorted(candidates, key=lambda c: -c.type.nbytes):
        views = _inside_other(t, placed) if t not in placed else None
        if views is None and t not in placed:
            views = _own_pieces(t, placed, decided, stored, outputs)
        if views is None:
            continue
        placed.update(views)
        decided[t] = views
        stored.update(p for p in views if p is not t)
    return decided


def _own_pieces(t: Tensor, placed: dict, decided: dict, stored: set,
                outputs: set) -> dict | None:
    """Each piece placed at its block of `t`, when every piece can be."""
    pieces = t.producer.inputs
    offsets = piece_offsets(t)
    if len(set(pieces)) != len(pieces) or any(o % VIEW_ALIGN for o in offsets):
        return None
    for piece in pieces:
        if piece.producer is None or piece in placed or piece in decided or piece in outputs:
            return None
        if piece not in stored and not _computes(piece, stored):
            return None     # a kernel per copied piece would cost more than one concatenation
    return {piece: (t, offset) for piece, offset in zip(pieces, offsets)}


def _computes(t: Tensor, stored: set) -> bool:
    """Does computing `t` do arithmetic, not only move stored values and leaves around?"""
    stack, seen = [t], set()
    while stack:
        value = stack.pop()
        if value in seen or value.producer is None or (value is not t and value in stored):
            continue
        seen.add(value)
        if value.producer.op not in MOVEMENT_OPS:
            return True
        stack.extend(value.producer.inputs)
    return False


def _inside_other(t: Tensor, placed: dict) -> dict | None:
    """`t` placed in the container that already holds all its pieces in order, back to back."""
    pieces = t.producer.inputs
    where = [placed.get(p) for p in pieces]
    if None in where or len({w[0] for w in where}) != 1:
        return None
    start = where[0][1]
    if start % VIEW_ALIGN or any(w[1] != start + o for w, o in zip(where, piece_offsets(t))):
        return None
    return {t: (where[0][0], start)}


def resolve(placement: dict[Tensor, tuple[Tensor, int]], t: Tensor) -> tuple[Tensor, int]:
    """The outermost container holding `t` and `t`'s byte offset in it (t itself, 0 if none)."""
    offset = 0
    while t in placement:
        t, extra = placement[t]
        offset += extra
    return t, offset
