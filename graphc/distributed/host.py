"""The host functions compiled plans call for their collectives (codegen/host.py makes the
HostCalls, runtime/host.py runs them): the graph check, then the collective itself.

An allreduce of a bucket gets the bucket's pieces as separate inputs: they are reduced
into the output array without a concatenation kernel (collectives.allreduce_pieces_into)."""
from __future__ import annotations

from graphc.distributed.collectives import INTO, allreduce_pieces_into
from graphc.distributed.fingerprint import check_same_graph
from graphc.runtime import register_host_function

CONTEXT_ATTRS = ("graph_key", "fingerprint", "graph", "what")


def _host_function(op: str):
    into = INTO[op]

    def run(inputs: list, outputs: list, attrs: dict) -> None:
        context = {k: attrs.pop(k) for k in CONTEXT_ATTRS if k in attrs}
        if "graph_key" in context:
            check_same_graph(context["graph_key"], context["fingerprint"], context["graph"])
        (out,) = outputs
        what = context.get("what", "")
        if len(inputs) > 1:             # only allreduce gathers (codegen/host.py)
            allreduce_pieces_into(inputs, out, what=what, **attrs)
        else:
            into(inputs[0], out, what=what, **attrs)
    run.__name__ = f"host_{op}"
    return run


def register_all() -> None:
    """Register `graphc.<op>` for every collective op."""
    for op in INTO:
        register_host_function(f"graphc.{op}", _host_function(op))
