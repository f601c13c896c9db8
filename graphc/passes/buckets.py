"""Bucketing: allreduces of one kind become one allreduce over a flat buffer.

One MPI call per gradient costs a latency each (a training step has one per weight); a
bucket concatenates several flattened operands, reduces them in one call and slices the
result back (Horovod's tensor fusion, PyTorch DDP's buckets). Which allreduces share a
bucket: those of one reduction and dtype whose operands depend on no allreduce (so no
member can depend on another, and buckets cannot depend on each other in a cycle), taken
in the order their operands were made (the backward pass makes the last layer's gradients
first), while the bucket stays under GRAPHC_BUCKET_BYTES (default BUCKET_BYTES): the first
buckets can then run while the kernels of the earlier layers' gradients still do
(codegen/host.py). Allreduces that depend on another allreduce keep their own call. An
allreduce of a concatenation is taken to be a bucket already (the pass is idempotent).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from graphc.ir import Graph, Node, Tensor
from graphc.passes import Pass
from graphc.rewrite import make, rebuild

BUCKET_ENV = "GRAPHC_BUCKET_BYTES"
BUCKET_BYTES = 16 << 20


@dataclass(frozen=True)
class Candidate:
    """An allreduce that may join a bucket."""

    node: Node
    made: int               # creation serial of its operand's node (-1: a leaf)
    nbytes: int


@dataclass
class Bucket:
    """Allreduces reduced in one call."""

    members: list = field(default_factory=list)
    nbytes: int = 0


def bucket_bytes() -> int:
    """The bucket size cap in bytes (GRAPHC_BUCKET_BYTES; 0 turns bucketing off)."""
    text = os.environ.get(BUCKET_ENV, "").strip()
    return int(text) if text else BUCKET_BYTES


def bucket_allreduces(graph: Graph) -> Graph:
    """The graph with its allreduces fused into buckets (see the module doc)."""
    if not any(node.op == "allreduce" for node in graph.nodes):
        return graph
    buckets = [b for b in _buckets(_candidates(graph), bucket_bytes()) if len(b.members) > 1]
    if not buckets:
        return graph
    return _rewrite(graph, buckets)


def _candidates(graph: Graph) -> list[Candidate]:
    """Allreduces whose operand depends on no allreduce and is not a concatenation."""
    after_allreduce: set = set()
    found = []
    for node in graph.nodes:
        tainted = any(v in after_allreduce for v in node.inputs)
        if node.op == "allreduce" and not tainted:
            (operand,) = node.inputs
            if operand.producer is None or operand.producer.op != "concatenate":
                made = operand.producer.serial if operand.producer is not None else -1
                nbytes = int(np.prod(operand.shape, dtype=np.int64)) * operand.dtype.itemsize
                found.append(Candidate(node, made, nbytes))
        if tainted or node.op == "allreduce":
            after_allreduce.update(node.outputs)
    return found


def _buckets(candidates: list[Candidate], cap: int) -> list[Bucket]:
    """Greedy, in the order operands were made: one open bucket per (reduction, dtype)."""
    closed: list[Bucket] = []
    open_: dict = {}
    for c in sorted(candidates, key=lambda c: (c.made, c.node.serial)):
        key = (c.node.attrs["reduce"], c.node.output.dtype)
        bucket = open_.get(key)
        if bucket is None or bucket.nbytes + c.nbytes > cap:
            if bucket is not None:
                closed.append(bucket)
            bucket = open_[key] = Bucket()
        bucket.members.append(c)
        bucket.nbytes += c.nbytes
    return closed + list(open_.values())


def _rewrite(graph: Graph, buckets: list[Bucket]) -> Graph:
    """Each member's result replaced by its slice of the bucket's result; `rebuild` defines
    a bucket (and its operands) where its first member was."""
    replacement: dict[Node, Tensor] = {}
    for bucket in buckets:
        replacement.update(_emit(bucket))
    return rebuild(graph, lambda node, inputs: replacement.get(node))


def _emit(bucket: Bucket) -> dict[Node, Tensor]:
    """flat = concatenate(reshape(x_i)); r = allreduce(flat); member i -> its slice of r."""
    first = bucket.members[0].node
    flat = [make("reshape", [c.node.inputs[0]], c.node.site, shape=(c.node.output.size,))
            for c in bucket.members]
    joined = make("concatenate", flat, first.site, axis=0)
    reduced = make("allreduce", [joined], first.site, reduce=first.attrs["reduce"])
    pieces, start = {}, 0
    for c in bucket.members:
        size = c.node.output.size
        piece = make("slice", [reduced], c.node.site, starts=(start,), stops=(start + size,),
                     steps=(1,))
        pieces[c.node] = make("reshape", [piece], c.node.site, shape=c.node.output.shape)
        start += size
    return pieces


buckets = Pass("buckets", bucket_allreduces)
