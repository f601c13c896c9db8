"""Schedule kernels and plan their memory.

Order: a topological order of the kernels (producers before consumers, and every reader of
a variable before the kernel that overwrites it in place), ties broken by program order,
which keeps forward values short-lived. Memory: liveness intervals over that order, and
whole-buffer reuse (best fit among freed buffers, never a buffer freed by the same kernel),
which works on every OpenCL runtime; the planned peak is the sum of all buffers.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from graphc.ir import Tensor
from graphc.passes.fuse import Group, dependency_graph, reads_of

REUSE_SLACK = 2         # reuse a free buffer at most this many times larger than needed


def schedule(groups: list[Group], in_place: dict[Tensor, Group], stored: set) -> list[Group]:
    """Kernels in an order that respects data and in-place (write-after-read) dependences."""
    dag = dependency_graph(groups)
    position = {id(g): i for i, g in enumerate(groups)}
    reads = {id(g): reads_of(g, stored) for g in groups}
    for variable, writer in in_place.items():
        for g in groups:
            if g is not writer and variable in reads[id(g)]:
                dag.add_edge(id(g), id(writer))
    try:
        order = list(nx.lexicographical_topological_sort(dag, key=position.__getitem__))
    except nx.NetworkXUnfeasible as exc:
        raise RuntimeError("fusion produced a cycle between kernels") from exc
    by_id = {id(g): g for g in groups}
    return [by_id[i] for i in order]


@dataclass(frozen=True)
class MemoryPlan:
    """Which buffer holds each stored value, and the buffers' sizes."""

    buffer_of: dict
    sizes: dict
    peak_bytes: int


def plan_memory(order: list[Group], scratch: set[Tensor], stored: set,
                fixed: dict[Tensor, str]) -> MemoryPlan:
    """Assign scratch values to reusable buffers; `fixed` values keep their own buffers."""
    reads = {id(g): reads_of(g, stored) for g in order}
    last_use = _last_uses(order, reads)
    buffer_of, sizes, free = dict(fixed), {}, []
    for step, group in enumerate(order):
        for t in group.stores:
            if t in scratch:
                buffer_of[t] = _take(free, sizes, max(t.type.nbytes, 1))
        for t in group.stores:
            if t in scratch and last_use.get(t, step) <= step:
                free.append(buffer_of[t])
        for t in reads[id(group)]:
            if t in scratch and last_use.get(t) == step and buffer_of[t] not in free:
                free.append(buffer_of[t])
    return MemoryPlan(buffer_of, sizes, sum(sizes.values()))


def _last_uses(order: list[Group], reads: dict) -> dict[Tensor, int]:
    last = {}
    for step, group in enumerate(order):
        for t in reads[id(group)]:
            last[t] = step
    return last


def _take(free: list, sizes: dict, nbytes: int) -> str:
    fits = [b for b in free if nbytes <= sizes[b] <= nbytes * REUSE_SLACK]
    if fits:
        best = min(fits, key=sizes.__getitem__)
        free.remove(best)
        return best
    name = f"s{len(sizes)}"
    sizes[name] = nbytes
    return name
