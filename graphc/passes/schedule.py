"""Schedule kernels and plan their memory.

Order: a topological order of the kernels (producers before consumers, and every reader of
a variable before the kernel that overwrites it in place), ties broken by program order,
which keeps forward values short-lived. Memory: liveness intervals over that order, and
whole-buffer reuse (best fit among freed buffers, never a buffer freed by the same kernel),
which works on every OpenCL runtime; the planned peak is the sum of all buffers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from graphc.ir import Tensor
from graphc.passes.fuse import Group, dependency_graph, reads_of
from graphc.passes.views import resolve

REUSE_SLACK = 2         # reuse a free buffer at most this many times larger than needed


def schedule(groups: list[Group], dag: nx.DiGraph) -> list[Group]:
    """Kernels in an order that respects `dag` (kernel_dag: data and in-place
    write-after-read dependences)."""
    position = {id(g): i for i, g in enumerate(groups)}
    try:
        order = list(nx.lexicographical_topological_sort(dag, key=position.__getitem__))
    except nx.NetworkXUnfeasible as exc:
        raise RuntimeError("fusion produced a cycle between kernels") from exc
    by_id = {id(g): g for g in groups}
    return [by_id[i] for i in order]


def kernel_dag(groups: list[Group], in_place: dict[Tensor, Group], stored: set) -> nx.DiGraph:
    """Edges between group ids: producer -> consumer, and reader of a variable's old value
    -> the group that overwrites the variable in place."""
    dag = dependency_graph(groups)
    reads = {id(g): reads_of(g, stored) for g in groups}
    for variable, writer in in_place.items():
        for g in groups:
            if g is not writer and variable in reads[id(g)]:
                dag.add_edge(id(g), id(writer))
    return dag


@dataclass(frozen=True)
class MemoryPlan:
    """Which buffer holds each stored value, the buffers' sizes, and the views: buffers that
    are (parent buffer, byte offset, bytes) of another (passes/views.py)."""

    buffer_of: dict
    sizes: dict
    peak_bytes: int
    views: dict = field(default_factory=dict)


def plan_memory(order: list[Group], scratch: set[Tensor], stored: set,
                fixed: dict[Tensor, str]) -> MemoryPlan:
    """Assign scratch values to reusable buffers; `fixed` values keep their own buffers.
    A value placed in a concatenation gets a view of the concatenation's buffer, which
    lives from the first write of any value in it to the last read of any of them."""
    placement = {t: where for g in order for t, where in g.placed.items()}
    reads = {id(g): _step_reads(g, stored) for g in order}
    owner = {t: resolve(placement, t) for t in scratch}
    end = _ends(order, reads, owner)
    buffer_of, sizes, free, views = dict(fixed), {}, [], {}
    for step, group in enumerate(order):
        for t in group.stores:
            if t not in scratch:
                continue
            root, offset = owner[t]
            if root not in buffer_of:
                buffer_of[root] = _take(free, sizes, max(root.type.nbytes, 1))
            if root is not t:
                buffer_of[t] = _view(views, buffer_of[root], offset, t.type.nbytes)
        touched = {owner[t][0] for t in list(group.stores) + list(reads[id(group)])
                   if t in scratch}
        for root in sorted(touched, key=lambda r: buffer_of[r]):   # not set order: stable plans
            if end[root] <= step and buffer_of[root] not in free:
                free.append(buffer_of[root])
    return MemoryPlan(buffer_of, sizes, sum(sizes.values()), views)


def _step_reads(step, stored: set) -> set[Tensor]:
    """What a step's kernel loads: a horizontal bundle (passes/horizontal.py) reads what
    its members read, all while the one kernel runs."""
    groups = getattr(step, "members", [step])
    return set().union(*(reads_of(g, stored) for g in groups))


def _ends(order: list[Group], reads: dict, owner: dict) -> dict[Tensor, int]:
    """For each buffer-owning value, the last step that writes or reads anything in it."""
    end: dict[Tensor, int] = {}
    for step, group in enumerate(order):
        for t in list(group.stores) + list(reads[id(group)]):
            if t in owner:
                end[owner[t][0]] = step
    return end


def _view(views: dict, parent: str, offset: int, nbytes: int) -> str:
    name = f"{parent}@{offset}+{nbytes}"
    views[name] = (parent, offset, nbytes)
    return name


def _take(free: list, sizes: dict, nbytes: int) -> str:
    fits = [b for b in free if nbytes <= sizes[b] <= nbytes * REUSE_SLACK]
    if fits:
        best = min(fits, key=sizes.__getitem__)
        free.remove(best)
        return best
    name = f"s{len(sizes)}"
    sizes[name] = nbytes
    return name
