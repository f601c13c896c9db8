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

from graphc.ir import Node, Tensor

MAX_KERNEL_OPS = 256
MAX_KERNEL_BUFFERS = 64     # 64 pointers: half of OpenCL's minimum of 1,024 parameter bytes
# A reshape read inline divides the index (i // n, i % n), and a transposed reshape of that
# divides both again: the index text doubles with each, so a path holds few of them.
MAX_KERNEL_DIVISIONS = 8
DIVIDING_OPS = {"reshape", "slice_grad"}


class InlineSizes:
    """For each value computed inline, a bound on the ops its kernel computes to get it
    (its cone): a sum over its inputs, exact where the sum passes the cap (shared
    subexpressions are counted once by the exact count, as lowering computes them once);
    and the most reshapes on one path down its cone."""

    def __init__(self, stored: set):
        self.stored = stored
        self.bound: dict[Tensor, int] = {}
        self.divisions: dict[Tensor, int] = {}

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
            if not inlined or (ops <= MAX_KERNEL_OPS and depth <= MAX_KERNEL_DIVISIONS):
                break
            measure = self.bound if ops > MAX_KERNEL_OPS else self.divisions
            self.stored.add(max(inlined, key=lambda v: measure.get(v, 0)))
        for t in node.outputs:
            self.bound[t], self.divisions[t] = ops, depth

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
    return ops <= MAX_KERNEL_OPS and buffers <= MAX_KERNEL_BUFFERS
