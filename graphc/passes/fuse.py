"""Fusion: decide which values live in buffers and group the rest into kernels.

The rules, beyond TVM's (injective into injective, injective into reductions, elementwise
epilogues after reductions and contractions):

* Elementwise and movement ops never get a kernel of their own: their consumers compute
  them inline (movement ops are index arithmetic, see codegen/lower.py).
* Recompute versus store (the cost model): an inlined value is recomputed by every kernel
  that reads it. It is stored instead when it has several consumers and its inline cost
  (ops in its cone, transcendental ops counting TRANSCENDENTAL_COST) times the number of
  extra consumers exceeds RECOMPUTE_BUDGET, or when a windowed op (matmul, conv, pooling,
  softmax rows) would read it many times over and its cone does arithmetic.
* A loop op (reduction, contraction, pooling) takes elementwise consumers of its own
  shape, that read it at the same index, as an epilogue in the same kernel; it then
  stores its own value only if something else needs it.
* Elementwise kernels of one shape that share inputs and do not depend on each other
  become one kernel with several outputs.
* A softmax cross-entropy and its gradient over the same logits become one row kernel
  writing both (codegen/cross_entropy.py), whose targets and row scale are computed inline.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from graphc.codegen.cross_entropy import INLINE_OPERANDS, XENT_OPS, fusable
from graphc.codegen.gemm_epilogue import operand_view
from graphc.codegen.lower import inlinable
from graphc.codegen.raw import RAW_OPS
from graphc.codegen.reductions import LOOP_OPS
from graphc.ir import Graph, Tensor, is_among
from graphc.passes.views import plan_views
from graphc.ops import get_op
from graphc.passes.reach import Reachability

RECOMPUTE_BUDGET = 8
TRANSCENDENTAL_COST = 4
TRANSCENDENTAL = {"exp", "log", "sqrt", "tanh", "sigmoid", "sin", "cos", "power", "erf"}
REREADING_OPS = {"matmul", "conv2d", "conv2d_grad_input", "conv2d_grad_weight",
                 "max_pool2d", "avg_pool2d", "avg_pool2d_grad", "take_grad"} | RAW_OPS
BUFFER_OPERAND_OPS = RAW_OPS | {"take"}     # operands read directly by hand-written code
COMPUTED_OPERANDS = {"take": (1,), **INLINE_OPERANDS}   # ...except these positions
RESHAPE_READERS = RAW_OPS - XENT_OPS     # read a reshaped buffer's bytes in place


@dataclass(eq=False)                # groups are compared by identity, as their tensors are
class Group:
    """One kernel to be: its kind, the value it is built around, and what it stores."""

    kind: str                       # elementwise | loop | raw | alias
    root: Tensor
    stores: list[Tensor] = field(default_factory=list)
    epilogues: list[Tensor] = field(default_factory=list)
    placed: dict = field(default_factory=dict)     # alias: value -> (container, byte offset)


def node_cost(t: Tensor) -> int:
    """The cost of computing `t` once from its inputs."""
    if t.producer is None or get_op(t.producer.op).kind != "elementwise":
        return 0
    return TRANSCENDENTAL_COST if t.producer.op in TRANSCENDENTAL else 1


def cone(t: Tensor, stored: set) -> list[Tensor]:
    """The inlined values computed when `t` is computed: stop at stored values and leaves."""
    seen, order, stack = set(), [], [t]
    while stack:
        value = stack.pop()
        if value in seen:
            continue
        seen.add(value)
        order.append(value)
        if value.producer is not None and (value is t or value not in stored):
            stack.extend(v for v in value.producer.inputs
                         if v not in stored and v.producer is not None)
    return order


def should_store(t: Tensor, consumers: list, stored: set) -> bool:
    """The recompute-versus-store decision for an inlinable value (see the module doc)."""
    cost = sum(node_cost(v) for v in cone(t, stored))
    if any(c.op in BUFFER_OPERAND_OPS and _read_from_buffer(c, t)
           and not (c.op in RESHAPE_READERS and _reshaped_buffer(t, stored))
           for c in consumers):
        return True
    if any(c.op in REREADING_OPS for c in consumers) and cost > 0:
        return True
    return cost * (len(consumers) - 1) > RECOMPUTE_BUDGET


def _read_from_buffer(consumer, t: Tensor) -> bool:
    """Does `consumer`'s hand-written code load `t` from a buffer (not compute it inline)?"""
    computed = COMPUTED_OPERANDS.get(consumer.op, ())
    return any(v is t and i not in computed for i, v in enumerate(consumer.inputs))


def _reshaped_buffer(t: Tensor, stored: set) -> bool:
    """A reshape of a buffer: hand-written kernels read its bytes in place."""
    view = operand_view(t, lambda v: v in stored or v.producer is None)
    return view is not None and not view[1] and view[0] is not t


def choose_stored(graph: Graph, outputs: list[Tensor]) -> set[Tensor]:
    """The values that get a buffer."""
    users = graph.users()
    stored = set(outputs)
    for node in graph.nodes:
        for t in node.outputs:
            if not inlinable(t):
                stored.add(t)
    for node in graph.nodes:        # producers first, so a cone's cost is known when asked
        for t in node.outputs:
            if t not in stored and should_store(t, users.get(t, []), stored):
                stored.add(t)
        if node.op == "matmul":
            _store_gemm_operands(node, stored)
    return stored


def _store_gemm_operands(node, stored: set) -> None:
    """The tiled GEMM reads its operands from memory: buffers, reshapes of buffers, and
    transposes of those (a layout flag). Anything else (a concatenation, a sum...) is
    stored first; for a transpose, the value under it, so the transpose stays free."""
    def is_buffer(v):
        return v in stored or v.producer is None
    for operand in node.inputs:
        if operand_view(operand, is_buffer) is not None:
            continue
        producer = operand.producer
        if producer.op == "transpose" and operand_view(producer.inputs[0], is_buffer) is None:
            stored.add(producer.inputs[0])
        if operand_view(operand, is_buffer) is None:
            stored.add(operand)


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
    op = t.producer.op
    kind = "raw" if op in RAW_OPS else "loop" if op in LOOP_OPS else "elementwise"
    return Group(kind, t, stores=[t])


def _fuse_epilogues(groups: dict, stored: set, strict: bool = False) -> None:
    """Move elementwise groups into the loop group they read at the same index. Checks are
    per value; when the kernels they make depend on each other in a cycle (a host whose
    other epilogue depends on the new one), `strict` fuses only epilogues that read no
    other loop output except at their own index, and no concatenations of pieces."""
    for t, group in list(groups.items()):
        if group.kind != "elementwise":
            continue
        source = _epilogue_source(t, stored, groups, strict)
        if source is None and not strict:
            source = _pieces_source(t, stored, groups)
        if source is None:
            continue
        host = groups[source]
        host.epilogues.append(t)
        host.stores.append(t)
        del groups[t]


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
    """Does every path from `t` to `loop` run through elementwise ops of `t`'s shape?"""
    reaching: dict = {}

    def reaches(value) -> bool:
        if value is loop:
            return True
        if value not in computed or value.producer is None or value in reaching:
            return reaching.get(value, False)
        reaching[value] = False             # guards against revisiting during the walk
        hits = [reaches(i) for i in value.producer.inputs]
        reaching[value] = any(hits)
        return reaching[value]

    reaches(t)
    for value, hit in reaching.items():
        node = value.producer
        if hit and (get_op(node.op).kind != "elementwise" or value.shape != t.shape
                    or (is_among(loop, node.inputs) and loop.shape != t.shape)):
            return False
    return True


def _drop_unread_roots(groups: list[Group], stored: set, outputs: set) -> None:
    """A loop value that only its own epilogues read needs no buffer."""
    hosts = [g for g in groups if g.epilogues and g.root not in outputs]
    if not hosts:
        return
    # dropping a root leaves every group's reads as they were: read them once
    reads = {id(g): reads_of(g, stored) for g in groups}
    for host in hosts:
        if not any(host.root in reads[id(g)] for g in groups if g is not host):
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
                     and fusable(h.root, group.root) and not nx.has_path(dag, id(h), id(group))),
                    None)
        if host is None:
            kept.append(group)
            continue
        host.stores.append(group.root)
        nx.contracted_nodes(dag, id(host), id(group), self_loops=False, copy=False)
    return kept


def _merge_siblings(groups: list[Group], stored: set) -> list[Group]:
    """Merge elementwise groups of one shape that share an input (siblings), or where one
    reads the other's values at its own index with no kernel in between (a chain); and
    give a loop group an independent elementwise group of its shape to finish with."""
    dag = dependency_graph(groups)
    state = _Merging(dag, Reachability(dag), stored)
    merged: list[Group] = []
    for group in groups:
        partner = next((m for m in merged if _can_merge(m, group, state)), None)
        if partner is None:
            merged.append(group)
            continue
        partner.stores.extend(group.stores)
        nx.contracted_nodes(dag, id(partner), id(group), self_loops=False, copy=False)
        state.reach.merge(id(partner), id(group))
    return merged


@dataclass
class _Merging:
    """What sibling merging consults: the kernel DAG, its reachability, the read sets."""

    dag: nx.DiGraph
    reach: Reachability
    stored: set
    leaves: dict = field(default_factory=dict)

    def independent(self, a: Group, b: Group) -> bool:
        """Neither group depends on the other."""
        return not (self.reach.path(id(a), id(b)) or self.reach.path(id(b), id(a)))

    def only_direct(self, a: Group, b: Group) -> bool:
        """Is the edge a -> b the only path from a to b?"""
        return not any(self.reach.path(c, id(b)) for c in self.dag.successors(id(a))
                       if c != id(b))


def _can_merge(a: Group, b: Group, state: _Merging) -> bool:
    if a.root.shape != b.root.shape or b.kind != "elementwise":
        return False
    if a.kind == "loop":        # an independent elementwise job rides along after the loop
        return state.independent(a, b)
    if a.kind != "elementwise":
        return False
    stored = state.stored
    if state.dag.has_edge(id(a), id(b)):
        return state.only_direct(a, b) and _reads_at_own_index(b, set(a.stores), stored)
    if not _leaves_read(a, stored, state.leaves) & _leaves_read(b, stored, state.leaves):
        return False        # the cheaper test first: most pairs share no input
    return state.independent(a, b)


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
    dag = nx.DiGraph()
    dag.add_nodes_from(id(g) for g in groups)
    for g in groups:
        for value in reads_of(g, set(writer)):
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
