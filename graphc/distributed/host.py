"""The host functions compiled plans call for their collectives (codegen/host.py makes the
HostCalls, runtime/host.py runs them): the graph check, then the collective itself.

An allreduce of a bucket gets the bucket's pieces as separate inputs: they are packed
straight into the output array, which MPI then reduces in place (one copy on the host)."""
from __future__ import annotations

import numpy as np

from graphc.distributed.collectives import INTO
from graphc.distributed.fingerprint import check_same_graph
from graphc.runtime import register_host_function

CONTEXT_ATTRS = ("graph_key", "fingerprint", "graph", "what")


def packed(pieces: list[np.ndarray], out: np.ndarray) -> np.ndarray:
    """The pieces' elements back to back in `out`'s memory (when out's dtype can hold them
    exactly), else in a new array of out's shape."""
    target = out if all(p.dtype == out.dtype for p in pieces) else \
        np.empty(out.shape, pieces[0].dtype)
    flat, start = target.reshape(-1), 0
    for piece in pieces:
        flat[start:start + piece.size] = piece.reshape(-1)
        start += piece.size
    return target


def _host_function(op: str):
    into = INTO[op]

    def run(inputs: list, outputs: list, attrs: dict) -> None:
        context = {k: attrs.pop(k) for k in CONTEXT_ATTRS if k in attrs}
        if "graph_key" in context:
            check_same_graph(context["graph_key"], context["fingerprint"], context["graph"])
        (out,) = outputs
        x = inputs[0] if len(inputs) == 1 else packed(inputs, out)
        into(x, out, what=context.get("what", ""), **attrs)
    run.__name__ = f"host_{op}"
    return run


def register_all() -> None:
    """Register `graphc.<op>` for every collective op."""
    for op in INTO:
        register_host_function(f"graphc.{op}", _host_function(op))
