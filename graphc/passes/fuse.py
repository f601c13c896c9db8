"""Fusion: decide which values live in buffers and group the rest into kernels.

The rules, beyond TVM's (injective into injective, injective into reductions, elementwise
epilogues after reductions and contractions):

* Elementwise and movement ops never get a kernel of their own: their consumers compute
  them inline (movement ops are index arithmetic, see codegen/lower.py).
* Recompute versus store (the cost model): an inlined value is recomputed by every kernel
  that reads it. It is stored instead when it has several consumers and its inline cost
  (ops in its cone, transcendental ops counting TRANSCENDENTAL_COST) times the number of
  extra consumers exceeds RECOMPUTE_BUDGET, or when a windowed op (matmul, conv, pooling,
  softmax rows) would read it many times over and its cone does arithmetic
  (passes/stored.py).
* A loop op (reduction, contraction, pooling) takes elementwise consumers of its own
  shape, that read it at the same index, as an epilogue in the same kernel; it then
  stores its own value only if something else needs it.
* Elementwise kernels of one shape that share inputs and do not depend on each other
  become one kernel with several outputs.
* A softmax cross-entropy and its gradient over the same logits become one row kernel
  writing both (codegen/cross_entropy.py), whose targets and row scale are computed inline.
* No kernel grows past the caps of passes/kernel_size.py (ops computed inline, reshapes on
  a path, buffer arguments): deep chains are cut into pieces, wide merges stop.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from graphc.codegen.lowerings import kernel_kind, share_kernel
from graphc.ir import Graph, Tensor, is_among
from graphc.passes.views import plan_views
from graphc.ops.registry import get_op
from graphc.passes.kernel_size import MAX_KERNEL_OPS, within_caps
from graphc.passes.reach import Reachability
from graphc.passes.stored import (RECOMPUTE_BUDGET, TRANSCENDENTAL_COST,  # noqa: F401
                                  choose_stored, cone, should_store)

MERGE_WINDOW = 512     # groups sibling merging compares at once (a training step: < 300)


@dataclass(eq=False)                # groups are compared by identity, as their tensors are
class Group:
    """One kernel to be: its kind, the value it is built around, and what it stores."""

    kind: str                       # elementwise | loop | raw | alias | host (a collective)
    root: Tensor
    stores: list[Tensor] = field(default_factory=list)
    epilogues: list[Tensor] = field(default_factory=list)
    placed: dict = field(default_factory=dict)     # alias: value -> (container, byte offset)


def make_groups(graph: Graph, outputs: list[Tensor]) -> list[Group]:
    """Kernels for the graph, before scheduling; a concatenation its pieces' kernels write
    in place (passes/views.py) is an "alias" group, which launches nothing."""
    stored = choose_stored(graph, outputs)
    views = plan_views(graph, stored, set(outputs))
    for strict in (False, True):
        groups = {t: _group_for(t) for node in graph.nodes for t in node.outputs if t in stored}
        for t, placed in views.items():
            groups[t].kind, groups[t].placed = "alias", placed
        _fuse_epilogues(groups, stored, strict)
        if strict or nx.is_directed_acyclic_graph(dependency_graph(list(groups.values()))):
            break
    _drop_unread_roots(list(groups.values()), stored, set(outputs))
    return _merge_siblings(_merge_cross_entropy(list(groups.values())), stored)


def _group_for(t: Tensor) -> Group:
    return Group(kernel_kind(t.producer.op), t, stores=[t])


def _fuse_epilogues(groups: dict, stored: set, strict: bool = False) -> None:
    """Move elementwise groups into the loop group they read at the same index. Checks are
    per value; when the kernels they make depend on each other in a cycle (a host whose
    other epilogue depends on the new one), `strict` fuses only epilogues that read no
    other loop output except at their own index, and no concatenations of pieces."""
    load: dict = {}         # host id -> (ops, buffers) of its kernel so far
    for t, group in list(groups.items()):
        if group.kind != "elementwise":
            continue
        source = _epilogue_source(t, stored, groups, strict)
        if source is None and not strict:
            source = _pieces_source(t, stored, groups)
        if source is None or not _host_fits(groups[source], group, stored, load):
            continue
        host = groups[source]
        host.epilogues.append(t)
        host.stores.append(t)
        del groups[t]


def _host_fits(host: Group, guest: Group, stored: set, load: dict) -> bool:
    """Does `host`'s kernel stay under the caps with `guest` added (then count it in)?"""
    if id(host) not in load:
        load[id(host)] = (kernel_ops(host, stored), reads_of(host, stored) | set(host.stores))
    ops, buffers = load[id(host)]
    ops += kernel_ops(guest, stored)
    buffers = buffers | reads_of(guest, stored) | set(guest.stores)
    if not within_caps(ops, buffers):
        return False
    load[id(host)] = ops, buffers
    return True


def kernel_ops(group: Group, stored: set) -> int:
    """A bound on the ops `group`'s kernel computes inline (shared cones counted per root)."""
    roots = dict.fromkeys([group.root] + group.epilogues + group.stores)
    return sum(len(cone(t, stored)) for t in roots)


def _epilogue_source(t: Tensor, stored: set, groups: dict, strict: bool) -> Tensor | None:
    """The loop output to host `t` as an epilogue: one that `t` reads only through
    same-shape elementwise ops, and whose kernel would not need a value computed after it."""
    candidates = _loop_inputs(t, stored, groups, strict)
    for source in sorted(candidates, key=lambda c: sum(_reaches(c, o) for o in candidates)):
        if not _depends_on_other_stored(t, source, stored):
            return source
    return None


def _pieces_source(t: Tensor, stored: set, groups: dict) -> Tensor | None:
    """The GEMM whose kernel can compute every piece of the concatenation `t` at its own
    index (the pieces read its output and epilogue values only there): its epilogue then
    stores each piece into its block of `t` (several stores per element; codegen/stores.py)."""
    node = t.producer
    if node.op != "concatenate" or t.dtype.name not in ("float32", "float64"):
        return None
    pieces = list(node.inputs)
    if any(p.shape != pieces[0].shape for p in pieces):
        return None
    job = Group("elementwise", pieces[0], stores=pieces)
    read = _leaves_of(job, stored) | (set(pieces) & stored)
    for host in groups.values():
        own = set(host.stores)
        if host.kind != "loop" or host.root.producer.op != "matmul" \
                or host.root.shape != pieces[0].shape or not read & own \
                or any(p in stored and p not in own for p in pieces):
            continue
        if _reads_at_own_index(job, own, stored) \
                and not any(_reaches(host.root, v) for v in read - own):
            return host.root
    return None


def _loop_inputs(t: Tensor, stored: set, groups: dict, strict: bool = False) -> list:
    """Loop outputs that `t`'s cone reads only at `t`'s own index, through same-shape
    elementwise ops. A loop output it also reads through anything else (a transpose, a
    broadcast, a reduction...) cannot host it; it is then a plain load, like any buffer
    (`strict`: then none can host it)."""
    computed = cone(t, stored)
    inside = set(computed)
    found = list(dict.fromkeys(
        i for value in computed if value.producer is not None and (value is t or
                                                                   value not in stored)
        for i in value.producer.inputs
        if i in groups and groups[i].kind == "loop" and i is not t))
    hosts = [loop for loop in found if _read_at_own_index(t, loop, inside)]
    return [] if strict and len(hosts) < len(found) else hosts


def _read_at_own_index(t: Tensor, loop: Tensor, computed: set) -> bool:
    """Does every path from `t` to `loop` run through elementwise ops of `t`'s shape, or
    reshapes of `t`'s size (which keep each element's row-major position: a Dense layer's
    (batch * steps, units) rows seen as (batch, steps, units) by a residual add)?"""
    reaching = _reaching(t, loop, computed)
    for value, hit in reaching.items():
        node = value.producer
        if not hit:
            continue
        if value.size != t.size or node.op != "reshape" and (
                get_op(node.op).kind != "elementwise"
                or any(i.shape != value.shape for i in node.inputs
                       if i is loop or reaching.get(i, False))):
            return False
    return True


def _reaching(t: Tensor, loop: Tensor, computed: set) -> dict:
    """For each value computed on the way from `t` down: does it read `loop`? (Children
    first, on an explicit stack: cones can be deep.)"""
    reaching: dict = {}
    stack = [(t, False)]
    while stack:
        value, expanded = stack.pop()
        if expanded:
            reaching[value] = any(i is loop or reaching.get(i, False)
                                  for i in value.producer.inputs)
        elif value is not loop and value in computed and value.producer is not None \
                and value not in reaching:
            reaching[value] = False         # visited; its inputs are done before it
            stack.append((value, True))
            stack.extend((i, False) for i in value.producer.inputs)
    return reaching


def _drop_unread_roots(groups: list[Group], stored: set, outputs: set) -> None:
    """A loop value that only its own epilogues read needs no buffer."""
    hosts = [g for g in groups if g.epilogues and g.root not in outputs]
    if not hosts:
        return
    # dropping a root leaves every group's reads as they were: read them once
    readers: dict[Tensor, set] = {}
    for g in groups:
        for value in reads_of(g, stored):
            readers.setdefault(value, set()).add(id(g))
    for host in hosts:
        if not readers.get(host.root, set()) - {id(host)}:
            host.stores = [s for s in host.stores if s is not host.root]


def _depends_on_other_stored(t: Tensor, source: Tensor, stored: set) -> bool:
    """Fusing would make a cycle if `t` reads a stored value computed from `source`."""
    for value in cone(t, stored):
        if value.producer is None:
            continue
        for i in value.producer.inputs:
            if i in stored and i is not source and _reaches(source, i):
                return True
    return False


def _reaches(a: Tensor, b: Tensor) -> bool:
    """Does `b` depend on `a`? (Nodes created before `a`'s cannot.)"""
    oldest = a.producer.serial if a.producer is not None else -1
    stack, seen = [b], set()
    while stack:
        v = stack.pop()
        if v is a:
            return True
        if v in seen or v.producer is None or v.producer.serial < oldest:
            continue
        seen.add(v)
        stack.extend(v.producer.inputs)
    return False


def _merge_cross_entropy(groups: list[Group]) -> list[Group]:
    """A softmax cross-entropy and its gradient over the same logits share one row kernel,
    unless the gradient depends on the loss (then the loss must be written first)."""
    dag = dependency_graph(groups)
    rows = [g for g in groups if g.kind == "raw"]
    kept = []
    for group in groups:
        host = next((h for h in rows if group.kind == "raw" and len(h.stores) == 1
                     and share_kernel(h.root, group.root)
                     and not nx.has_path(dag, id(h), id(group))), None)
        if host is None:
            kept.append(group)
            continue
        host.stores.append(group.root)
        nx.contracted_nodes(dag, id(host), id(group), self_loops=False, copy=False)
    return kept


def _merge_siblings(groups: list[Group], stored: set) -> list[Group]:
    """Merge elementwise groups of one shape that share an input (siblings), or where one
    reads the other's values at its own index with no kernel in between (a chain); and
    give a loop group an independent elementwise group of its shape to finish with.
    Past MERGE_WINDOW groups, merging looks within windows of that many consecutive groups
    of a topological order (every path between two of them stays inside theirs), so a deep
    graph merges in linear time."""
    dag = dependency_graph(groups)
    if len(groups) <= MERGE_WINDOW:
        return _merge_within(groups, dag, stored)
    rank = {node: i for i, node in enumerate(nx.topological_sort(dag))}
    ordered = sorted(groups, key=lambda g: rank[id(g)])
    merged: list[Group] = []
    for start in range(0, len(ordered), MERGE_WINDOW):
        window = ordered[start:start + MERGE_WINDOW]
        merged += _merge_within(window, dag.subgraph(id(g) for g in window).copy(), stored)
    return merged


def _merge_within(groups: list[Group], dag: nx.DiGraph, stored: set) -> list[Group]:
    """Sibling merging over `groups`, the nodes of `dag`, in order: each joins the first
    open group it can merge with."""
    state = _Merging(dag, Reachability(dag), stored)
    merged: list[Group] = []
    open_: list[Group] = []     # merged groups that can still take one more (not full)
    for group in groups:
        partner = None if group.kind != "elementwise" else \
            next((m for m in open_ if _can_merge(m, group, state)), None)
        if partner is None:
            merged.append(group)
            open_.append(group)
            continue
        state.absorb(partner, group)
        nx.contracted_nodes(dag, id(partner), id(group), self_loops=False, copy=False)
        state.reach.merge(id(partner), id(group), nx.ancestors(dag, id(partner)))
        if state.full(partner):
            open_.remove(partner)
    return merged


@dataclass
class _Merging:
    """What sibling merging consults: the kernel DAG, its reachability, the read sets."""

    dag: nx.DiGraph
    reach: Reachability
    stored: set
    leaves: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)

    def fits(self, a: Group, b: Group) -> bool:
        """Would `a` and `b` merged stay under the kernel caps (passes/kernel_size.py)?"""
        buffers = _leaves_read(a, self.stored, self.leaves) | \
            _leaves_read(b, self.stored, self.leaves) | set(a.stores) | set(b.stores)
        return within_caps(self.ops(a) + self.ops(b), buffers)

    def absorb(self, partner: Group, group: Group) -> None:
        """`partner` takes `group`'s stores; what it reads and computes adds up."""
        leaves = _leaves_read(partner, self.stored, self.leaves) | \
            _leaves_read(group, self.stored, self.leaves)
        ops = self.ops(partner) + self.ops(group)
        partner.stores.extend(group.stores)
        self.leaves[(id(partner), len(partner.stores))] = leaves
        self.sizes[(id(partner), len(partner.stores))] = ops

    def full(self, group: Group) -> bool:
        """Would any merge take `group` past a cap? (A merge adds an op and a store.)"""
        buffers = _leaves_read(group, self.stored, self.leaves) | set(group.stores)
        return not within_caps(self.ops(group) + 1, buffers, more_buffers=1)

    def ops(self, group: Group) -> int:
        """kernel_ops of `group`, remembered until its stores change."""
        key = (id(group), len(group.stores))
        if key not in self.sizes:
            self.sizes[key] = kernel_ops(group, self.stored)
        return self.sizes[key]

    def independent(self, a: Group, b: Group) -> bool:
        """Neither group depends on the other."""
        return not (self.reach.path(id(a), id(b)) or self.reach.path(id(b), id(a)))

    def only_direct(self, a: Group, b: Group) -> bool:
        """Is the edge a -> b the only path from a to b?"""
        return not any(self.reach.path(c, id(b)) for c in self.dag.successors(id(a))
                       if c != id(b))


def _can_merge(a: Group, b: Group, state: _Merging) -> bool:
    if a.root.shape != b.root.shape or b.kind != "elementwise" \
            or a.kind not in ("loop", "elementwise"):
        return False
    direct = a.kind == "elementwise" and state.dag.has_edge(id(a), id(b))
    if not direct and not state.independent(a, b):      # the cheap test that rejects most
        return False
    if state.ops(a) + state.ops(b) > MAX_KERNEL_OPS:
        return False
    if a.kind == "loop":        # an independent elementwise job rides along after the loop
        return state.fits(a, b)
    stored = state.stored
    if direct:
        return state.only_direct(a, b) and _reads_at_own_index(b, set(a.stores), stored) \
            and state.fits(a, b)
    return bool(_leaves_read(a, stored, state.leaves) & _leaves_read(b, stored, state.leaves)) \
        and state.fits(a, b)


def _reads_at_own_index(group: Group, values: set, stored: set) -> bool:
    """Does `group` read `values` only through elementwise ops of its own shape?"""
    shape = group.root.shape
    for t in group.stores:
        for value in cone(t, stored):
            node = value.producer
            if node is None or (value is not t and value in stored):
                continue
            if any(i in values for i in node.inputs) and (
                    get_op(node.op).kind != "elementwise" or value.shape != shape
                    or any(i.shape != shape for i in node.inputs if i in values)):
                return False
    return True


def _leaves_read(group: Group, stored: set, memo: dict) -> set:
    """The stored values and leaves `group` reads, remembered in `memo` until its stores
    change (a merge extends them)."""
    key = (id(group), len(group.stores))
    if key not in memo:
        memo[key] = _leaves_of(group, stored)
    return memo[key]


def _leaves_of(group: Group, stored: set) -> set:
    read = set()
    for t in group.stores:
        for value in cone(t, stored):
            if value.producer is not None:
                read.update(i for i in value.producer.inputs
                            if i in stored or i.producer is None)
    return read


def dependency_graph(groups: list[Group]) -> nx.DiGraph:
    """Group ids, with an edge from the group storing a value to each group reading it."""
    writer = {t: g for g in groups for t in g.stores}
    stored = set(writer)
    dag = nx.DiGraph()
    dag.add_nodes_from(id(g) for g in groups)
    for g in groups:
        for value in reads_of(g, stored):
            if value in writer and writer[value] is not g:
                dag.add_edge(id(writer[value]), id(g))
    return dag


def reads_of(group: Group, stored: set) -> set[Tensor]:
    """The stored values and leaves that `group`'s kernel loads."""
    read = set()
    roots = [group.root] + group.epilogues + group.stores   # merged groups add stores
    for t in roots:
        for value in cone(t, stored):
            if value.producer is not None:
                read.update(i for i in value.producer.inputs if i in stored or i.producer is None)
    return read - set(group.stores) - {group.root} - set(group.epilogues)
