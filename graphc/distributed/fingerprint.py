"""Do the ranks run the same graph? A fingerprint of a compiled graph, compared across ranks
at the first collective each compiled function runs.

The fingerprint covers the graph's structure: every equation's op, attributes and types and
which values it reads, and every leaf's role, name and type. It leaves out what may rightly
differ between ranks: the values of constants and variables, random seeds (a rank may draw
its own dropout masks) and source lines. Ranks that built different models, or compiled
their functions in a different order, differ there; MPI itself would only see buffers of
the wrong size, or silently add the wrong numbers together.
"""
from __future__ import annotations

import hashlib

import numpy as np

from graphc.distributed.collectives import call_mpi
from graphc.distributed.world import DistributedError, world
from graphc.ir import Graph

RECORD_BYTES = 1024         # what each rank says about its graph, padded
IGNORED_ATTRS = ("seed",)

_CHECKED: set = set()


def graph_fingerprint(graph: Graph) -> str:
    """A short hex digest of the graph's structure (see the module doc)."""
    digest = hashlib.sha256()
    number = {}
    for index, leaf in enumerate(graph.inputs):
        number[leaf] = f"l{index}"
        digest.update(f"{leaf.role} {leaf.name} {leaf.type};".encode())
    for index, node in enumerate(graph.nodes):
        for k, out in enumerate(node.outputs):
            number[out] = f"n{index}.{k}"
        attrs = sorted((k, repr(v)) for k, v in node.attrs.items() if k not in IGNORED_ATTRS)
        reads = [number.get(v, "?") for v in node.inputs]
        types = [str(o.type) for o in node.outputs]
        digest.update(f"{node.op} {attrs} {reads} {types};".encode())
    digest.update(str([number.get(v, "?") for v in graph.outputs]).encode())
    return digest.hexdigest()[:16]


def check_same_graph(key: str, fingerprint: str, description: str) -> None:
    """Once per compiled function (`key`): every rank's fingerprint is the same, or a
    DistributedError names this rank's graph and a differing one."""
    here = world()
    if here.comm is None or key in _CHECKED:
        return
    mine = np.zeros(RECORD_BYTES, np.uint8)
    text = f"{fingerprint} {description}".encode()[:RECORD_BYTES]
    mine[:len(text)] = np.frombuffer(text, np.uint8)
    everyone = np.zeros((here.size, RECORD_BYTES), np.uint8)
    call_mpi(lambda comm: comm.Allgather(mine, everyone), mine,
             f"the graph check of {description}")
    records = [bytes(row).rstrip(b"\0").decode(errors="replace") for row in everyone]
    prints = [r.split(" ", 1)[0] for r in records]
    other = next((r for r, p in enumerate(prints) if p != fingerprint), None)
    if other is not None:
        raise DistributedError(
            f"the ranks built different graphs (checked at their first collective):\n"
            f"  rank {here.rank}: graph {records[here.rank]}\n"
            f"  rank {other}: graph {records[other]}\n"
            f"every rank must build the same model and compile its functions in the same "
            f"order")
    _CHECKED.add(key)
