"""Error context for every stage: an equation with its neighbours and the user's line, and
the equations a kernel computes."""
from __future__ import annotations

from graphc.inspection.anatomy import anatomy, value_names
from graphc.inspection.printer import format_equation, with_sites
from graphc.inspection.verify import names_for_message
from graphc.ir import Graph, Tensor

CONTEXT = 3


def equation_context(graph: Graph, node, radius: int = CONTEXT) -> str:
    """`node` (a Node or its output) in IR text, the user's line, and ±radius neighbours."""
    node = node.producer if isinstance(node, Tensor) else node
    if node is None:
        return "  (a graph input: no equation)"
    names = names_for_message(graph)
    index = next((i for i, n in enumerate(graph.nodes) if n is node), None)
    head = [f"  in equation{'' if index is None else f' #{index + 1}'}: "
            f"{format_equation(node, names)}", f"  created at {node.site or '<unknown>'}"]
    if index is None:
        return "\n".join(head)
    lo, hi = max(0, index - radius), min(len(graph.nodes), index + radius + 1)
    context = [f"  {'>>>' if i == index else '   '} #{i + 1}: "
               f"{format_equation(graph.nodes[i], names)}" for i in range(lo, hi)]
    return "\n".join(head + ["  context:"] + context)


def kernel_context(compiled, kernel_name: str) -> str:
    """The equations (with the user's lines) of the launches of kernel `kernel_name`."""
    views = anatomy(compiled)
    names = value_names(compiled, views)
    lines = []
    for view in views:
        if view.launch.name == kernel_name:
            body = [format_equation(n, names) for n in view.nodes]
            lines += [f"  kernel #{view.index} {kernel_name} computes:"]
            lines += ["    " + s for s in with_sites(body, [n.site for n in view.nodes])]
    return "\n".join(lines) or f"  (no kernel named {kernel_name!r})"
