"""The host functions compiled plans call for their collectives (codegen/host.py makes the
HostCalls, runtime/host.py runs them): the graph check, then the collective itself."""
from __future__ import annotations

from graphc.distributed.collectives import INTO
from graphc.distributed.fingerprint import check_same_graph
from graphc.runtime import register_host_function

CONTEXT_ATTRS = ("graph_key", "fingerprint", "graph", "what")


def _host_function(op: str):
    into = INTO[op]

    def run(inputs: list, outputs: list, attrs: dict) -> None:
        context = {k: attrs.pop(k) for k in CONTEXT_ATTRS if k in attrs}
        if "graph_key" in context:
            check_same_graph(context["graph_key"], context["fingerprint"], context["graph"])
        (x,), (out,) = inputs, outputs
        into(x, out, what=context.get("what", ""), **attrs)
    run.__name__ = f"host_{op}"
    return run


def register_all() -> None:
    """Register `graphc.<op>` for every collective op."""
    for op in INTO:
        register_host_function(f"graphc.{op}", _host_function(op))
