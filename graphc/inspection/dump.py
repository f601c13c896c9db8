"""gc.dump: the one entry point of every view of a graph or a compiled function."""
from __future__ import annotations

from graphc.inspection.dot import dot_of, render_svg
from graphc.inspection.printer import as_graph, format_graph
from graphc.inspection.report import html_page
from graphc.inspection.text import text_of

FORMATS = ("text", "dot", "svg", "html")
STAGES = ("graph", "optimized", "kernels")


def dump(obj, format: str = "text", stage: str = "graph", source: bool = False) -> str:
    """gc.dump: a Tensor, a list of Tensors, a Graph or a compiled Function as "text", "dot",
    "svg" or "html", at stage "graph" (as built), "optimized" (after the graph passes) or
    "kernels" (functions: kernels, fused equations, buffers, memory; `source` adds the
    kernels' source)."""
    if format not in FORMATS:
        raise ValueError(f"unknown dump format {format!r}: expected one of {', '.join(FORMATS)}")
    if stage not in STAGES:
        raise ValueError(f"unknown dump stage {stage!r}: expected one of {', '.join(STAGES)}")
    if format == "text" and stage == "graph" and not hasattr(obj, "compiled"):
        return format_graph(as_graph(obj))
    if format == "html":
        return html_page(obj, stage)
    if format in ("dot", "svg"):
        text = dot_of(obj, stage)
        return text if format == "dot" else render_svg(text)
    return text_of(obj, stage, source)
