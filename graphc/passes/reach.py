"""Reachability in a DAG of kernels as bit sets, kept exact while nodes are merged.

Fusion asks "does a path lead from group a to group b?" thousands of times per training
step (LSTM: ~2,800 questions over ~280 groups); a networkx search per question cost more
than the rest of fusion. Here each node holds the set of nodes below it as one int.
"""
from __future__ import annotations

from collections.abc import Hashable

import networkx as nx


class Reachability:
    """`path(a, b)`: does b depend on a in `dag`? `merge(keep, gone)` mirrors contracting
    `gone` into `keep` (the merged node reaches what either reached, and every node that
    reached either now reaches the merged node and all below it)."""

    def __init__(self, dag: nx.DiGraph):
        order = list(nx.topological_sort(dag))
        self.bit = {node: 1 << i for i, node in enumerate(order)}
        self.below: dict[Hashable, int] = {}
        for node in reversed(order):
            mask = 0
            for succ in dag.successors(node):
                mask |= self.bit[succ] | self.below[succ]
            self.below[node] = mask

    def path(self, a: Hashable, b: Hashable) -> bool:
        """Is there a path of one or more edges from `a` to `b`?"""
        return bool(self.below[a] & self.bit[b])

    def merge(self, keep: Hashable, gone: Hashable, above=None) -> None:
        """`gone` becomes part of `keep` (the caller ensures no cycle results). `above`,
        when known, holds every node that reaches either: only those are updated (else all
        are looked at, which makes many merges in a wide graph quadratic)."""
        both = self.bit[keep] | self.bit[gone]
        merged = (self.below[keep] | self.below[gone]) & ~both
        del self.below[gone], self.bit[gone]
        for node in self.below if above is None else above:
            mask = self.below[node]
            if mask & both:
                self.below[node] = (mask & ~both) | self.bit[keep] | merged
        self.below[keep] = merged
