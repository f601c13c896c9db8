"""Lowering graph values to kernel-IR expressions at symbolic indices.

`Lowering.at(t, idx)` is the value of tensor `t` at multi-index `idx`: a load when `t`
lives in a buffer, otherwise the expression of its producer, built from its inputs' values:
an elementwise op applied to its inputs' values, or the index rule the lowering registry
names for the op (codegen/lowerings.py, codegen/movement.py: movement ops cost no copy).

A kernel's cone can be tens of thousands of ops deep, so the walk keeps its own stack
instead of Python's: each op's rule is a generator that yields the (value, index, valid)
it needs and is sent back that value's expression.
"""
from __future__ import annotations

from collections.abc import Generator

import numpy as np

from graphc.codegen.index import flatten, lin
from graphc.codegen.kernel import Apply, Const, Load
from graphc.codegen.lowerings import lowering_of
from graphc.codegen.movement import broadcast_index
from graphc.ir import Tensor


class Lowering:
    """Turns the cone of a kernel's root into expressions over index forms."""

    def __init__(self, buffers: dict[Tensor, str], accumulated=None):
        self.buffers = buffers
        self.accumulated = accumulated      # (tensor, idx, expr) read as the accumulator
        self.computing: set[Tensor] = set()  # values this kernel computes (not loads)
        self.uses_step = False
        self.locals: dict[str, str] = {}        # plan buffer -> kernel parameter name
        self.dtypes: dict[str, np.dtype] = {}
        self.ops: dict = {}         # the nodes lowered, in order (a dict: ordered set)
        self.lowered: dict = {}     # (t, idx, valid, accumulated) -> expression

    def local(self, buffer: str, dtype) -> str:
        """The kernel parameter for plan buffer `buffer` (positional names: identical
        kernels over different buffers render identically and compile once)."""
        if buffer not in self.locals:
            self.locals[buffer] = f"b{len(self.locals)}"
            self.dtypes[buffer] = np.dtype(dtype)
        return self.locals[buffer]

    def at(self, t: Tensor, idx, valid=()) -> object:
        """The value of `t` at index `idx` (loads guarded by `valid`)."""
        ready, key = self._lookup(t, idx, valid)
        if key is None:
            return ready
        stack = [(key, self._lower(t, list(key[1]), valid))]
        sent = None
        while stack:
            key, rule = stack[-1]
            try:
                request = rule.send(sent)
            except StopIteration as done:
                stack.pop()
                self.lowered[key] = sent = done.value
                continue
            sent, child = self._lookup(*request)
            if child is not None:
                stack.append((child, self._lower(request[0], list(child[1]), request[2])))
        return sent

    def _lookup(self, t: Tensor, idx, valid=()) -> tuple:
        """(expression, None) when `t` at `idx` is a load or already lowered, else (None,
        the memo key under which to lower it)."""
        idx = [lin(i) for i in idx]
        if self.accumulated is not None and t is self.accumulated[0] \
                and idx == list(self.accumulated[1]):
            return self.accumulated[2], None
        if (t in self.buffers and t not in self.computing) or t.producer is None:
            return self.load(t, idx, valid), None
        key = (id(t), tuple(idx), tuple(valid), id(self.accumulated))   # == is elementwise
        if key in self.lowered:     # a value read twice at one index is lowered once
            return self.lowered[key], None
        return None, key

    def _lower(self, t: Tensor, idx, valid):
        """A generator: yields (value, index, valid) requests, returns `t`'s expression."""
        node = t.producer
        self.ops.setdefault(node, None)
        lowering = lowering_of(node.op)
        if lowering.kind != "inline":
            raise NotImplementedError(f"{node.op} has a kernel of its own: it is never inline")
        if lowering.rule is None:       # an elementwise op
            args = []
            for a in node.inputs:
                args.append((yield a, broadcast_index(idx, a.shape, t.shape), valid))
            return Apply(t.dtype, node.op, tuple(args), tuple(sorted(node.attrs.items())))
        rule = lowering.rule(self, t, node, idx, valid)
        return (yield from rule) if isinstance(rule, Generator) else rule

    def load(self, t: Tensor, idx, valid=(), dynamic=()) -> object:
        """A load of `t` from its buffer (0-d constants become literals)."""
        if t.role == "constant" and t.size == 1 and t not in self.buffers:
            return Const(t.dtype, t.data.reshape(()).item())
        name = self.local(self.buffers[t], t.dtype)
        return Load(t.dtype, name, flatten(idx, t.shape), tuple(valid), tuple(dynamic))
