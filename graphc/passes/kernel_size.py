"""Caps on what one fused kernel may hold, so that deep and wide graphs build in time
linear in their size.

Fusion computes elementwise and movement ops inside their consumers' kernels and merges
independent kernels of one shape. Left alone, a chain of 100,000 elementwise ops became one
kernel of 100,000 statements, and 2,000 outputs of one input one kernel of 2,001 arguments
(273 kB, which PoCL took 161 s to build; OpenCL promises only 1,024 bytes of kernel
parameters). So a value whose kernel would compute more than MAX_KERNEL_OPS ops inline gets
a buffer of its own (its consumers start a new kernel), as does one read through more than
MAX_KERNEL_DIVISIONS reshapes on one path (index text grows exponentially with them), and
merging stops at MAX_KERNEL_OPS ops or MAX_KERNEL_BUFFERS buffer arguments. Equal pieces of
a long uniform chain then render to one source, built once. Usual models stay far below the
caps (the largest fused kernel of the LSTM benchmark computes 27 ops and takes 16
arguments; no test or benchmark kernel reads through two reshapes), so their kernels do not
change.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar

from graphc.ir import Node, Tensor

MAX_KERNEL_OPS = 256
MAX_KERNEL_BUFFERS = 64     # 64 pointers: half of OpenCL's minimum of 1,024 parameter bytes
# A reshape read inline divides the index (i // n, i % n), and a transposed reshape of that
# divides both again: the index text doubles with each, so a path holds few of them.
MAX_KERNEL_DIVISIONS = 8
DIVIDING_OPS = {"reshape", "slice_grad"}
# A device's own cap on buffers per kernel, below MAX_KERNEL_BUFFERS: a Vulkan device's
# maxPerStageDescriptorStorageBuffers (lavapipe: 32; many phones: 4 to 8), set by the compiler
# for one compilation (`buffer_limit`). Then a value whose kernel would read more buffers
# than that inline gets a buffer of its own too, and merges stop there. None: no such cap
# (OpenCL), and nothing is counted.
BUFFER_LIMIT: ContextVar[int | None] = ContextVar("graphc_buffer_limit", default=None)


@contextlib.contextmanager
def buffer_limit(limit: int | None):
    """Cap the buffers of one kernel at `limit` within the block (see BUFFER_LIMIT)."""
    token = BUFFER_LIMIT.set(limit)
    try:
        yield
    finally:
        BUFFER_LIMIT.reset(token)


class InlineSizes:
    """For each value computed inline, a bound on the ops its kernel computes to get it
    (its cone): a sum over its inputs, exact where the sum passes the cap (shared
    subexpressions are counted once by the exact count, as lowering computes them once);
    and the most reshapes on one path down its cone."""

    def __init__(self, stored: set):
        self.stored = stored
        self.bound: dict[Tensor, int] = {}
        self.divisions: dict[Tensor, int] = {}
        self.limit = BUFFER_LIMIT.get()
        self.reads: dict[Tensor, frozenset] = {}    # with a limit: the buffers a cone reads

    def inlined_inputs(self, node: Node) -> list[Tensor]:
        """The inputs of `node` its kernel computes itself (not loaded)."""
        return [v for v in dict.fromkeys(node.inputs)
                if v not in self.stored and v.producer is not None]

    def cap(self, node: Node) -> None:
        """Store inputs of `node` until its kernel computes at most MAX_KERNEL_OPS ops inline
        to get them (the biggest first) and reads them through at most MAX_KERNEL_DIVISIONS
        reshapes on one path (the deepest first); remember both for its outputs."""
        while True:
            inlined = self.inlined_inputs(node)
            ops = self.ops_bound(inlined)
            depth = (node.op in DIVIDING_OPS) + max(
                (self.divisions.get(v, 0) for v in inlined), default=0)
            reads = self.buffers_read(node, inlined)
            too_many = reads is not None and len(reads) + 1 > self.limit
            if not inlined or (ops <= MAX_KERNEL_OPS and depth <= MAX_KERNEL_DIVISIONS
                               and not too_many):
                break
            if too_many and ops <= MAX_KERNEL_OPS and depth <= MAX_KERNEL_DIVISIONS:
                self.stored.add(max(inlined, key=lambda v: len(self.reads.get(v, ()))))
                continue
            measure = self.bound if ops > MAX_KERNEL_OPS else self.divisions
            self.stored.add(max(inlined, key=lambda v: measure.get(v, 0)))
        for t in node.outputs:
            self.bound[t], self.divisions[t] = ops, depth
            if reads is not None:
                self.reads[t] = reads

    def buffers_read(self, node: Node, inlined: list[Tensor]) -> frozenset | None:
        """With a buffer limit, the buffers `node`'s kernel reads to get its inputs (stored
        values and leaves other than scalar constants); None without a limit."""
        if self.limit is None:
            return None
        found, computed = set(), set(inlined)
        for v in node.inputs:
            if v in computed:
                found |= self.reads.get(v, frozenset())
            elif not (v.role == "constant" and v.size == 1):
                found.add(v)
        return frozenset(found)

    def ops_bound(self, inlined: list[Tensor]) -> int:
        """A bound on 1 + the ops computed inline to get `inlined`: their bounds' sum, or
        the exact count where the sum passes the cap."""
        bound = 1 + sum(self.bound.get(v, 1) for v in inlined)
        if bound <= MAX_KERNEL_OPS:
            return bound
        bound = self.exact(inlined, MAX_KERNEL_OPS)
        if bound <= MAX_KERNEL_OPS:     # a complete count bounds each input's too
            for v in inlined:
                self.bound[v] = min(self.bound.get(v, 1), bound - 1)
        return bound

    def exact(self, inlined: list[Tensor], limit: int) -> int:
        """1 + the number of distinct values computed inline to get `inlined`, counted up
        to `limit` + 1 (enough to know the cap is passed)."""
        seen: set = set()
        stack = list(inlined)
        while stack and len(seen) <= limit:
            value = stack.pop()
            if value in seen:
                continue
            seen.add(value)
            stack.extend(v for v in value.producer.inputs
                         if v not in self.stored and v.producer is not None and v not in seen)
        return 1 + len(seen)


def within_caps(ops: int, values, more_buffers: int = 0) -> bool:
    """Does a kernel computing `ops` ops inline and reading or writing `values` (and
    `more_buffers` others) stay under the caps? Scalar constants are literals in the
    source, not arguments."""
    buffers = more_buffers + sum(1 for v in values
                                 if not (v.role == "constant" and v.size == 1))
    limit = BUFFER_LIMIT.get()
    cap = MAX_KERNEL_BUFFERS if limit is None else min(MAX_KERNEL_BUFFERS, limit)
    return ops <= MAX_KERNEL_OPS and buffers <= cap
