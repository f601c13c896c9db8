"""The one ordered list of graph-level passes, and `optimize`, which runs it.

Order, and why:
  fold       before simplify: folding turns constant subgraphs (e.g. broadcast_to of a
             scalar, 2 - 1) into the plain constants that simplify's rules match;
  simplify   also folds the constants its own rewrites expose, so it leaves no work for a
             second fold;
  stack_steps  after simplify (whose reshapes of slices it matches), before
             matmul_sums: one product of every step's input slice by one matrix
             (x[:, t] @ W of an unrolled recurrence written by hand);
  matmul_sums  after simplify (which removes the casts and reshapes between the products
             of a sum), before cse; it makes one product of a sum of many (weight gradients
             of an unrolled recurrence);
  cse        after the rewrites, which expose duplicates (two reshapes of one value that
             both collapse to x) and after fold, whose constants it merges;
  buckets    after cse (an allreduce cse merged is reduced once), fuses allreduces into
             few collectives over flat buffers;
  dce        last: every pass before it may leave values nobody reads.
With this order the pipeline is idempotent: a second run changes nothing (tested).
"""
from __future__ import annotations

from typing import Iterable

from graphc.ir import Graph
from graphc.passes import OnPass, Pass, PassRecord, run_pipeline
from graphc.passes.buckets import buckets
from graphc.passes.cse import cse
from graphc.passes.dce import dce
from graphc.passes.fold import fold
from graphc.passes.matmul_sums import merge_matmuls
from graphc.passes.simplify import simplify
from graphc.passes.stacked_products import stacked_products

GRAPH_PASSES: tuple[Pass, ...] = (fold, simplify, stacked_products, merge_matmuls, cse, buckets,
                                  dce)


def optimize(graph: Graph, verify_each: bool | None = None, on_pass: OnPass | None = None,
             disabled: Iterable[str] = ()) -> tuple[Graph, list[PassRecord]]:
    """Run GRAPH_PASSES over `graph`; see `run_pipeline`."""
    return run_pipeline(graph, GRAPH_PASSES, verify_each, on_pass, disabled)
