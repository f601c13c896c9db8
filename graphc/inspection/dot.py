"""Graphviz views of graphs and compiled functions, and SVG rendering.

`graph_dot` draws a graph's equations; `compiled_dot` draws a compiled function's equations
grouped into their kernels, one `subgraph cluster_<kernel>` each, stored values drawn with
a double border and the buffer they go to. SVG comes from pygraphviz when it is importable,
else from Graphviz's `dot` program; without either, `render_svg` raises GraphvizMissing
saying what to install (`save` keeps the .dot file).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from graphc.inspection.anatomy import (anatomy, buffer_labels, compiled_parts, graph_of,
                                       value_names)
from graphc.errors import GraphcError
from graphc.ir import Graph, Tensor, is_among
from graphc.inspection.printer import (assign_names, format_equation, format_leaf,
                                       header_leaves)

INSTALL_HINT = ("rendering SVG needs Graphviz: install the `dot` program (Debian/Ubuntu: "
                "apt-get install graphviz; macOS: brew install graphviz) or pip install "
                "pygraphviz")
DOT_TIMEOUT_S = 300
ROLE_SHAPES = {"placeholder": "invhouse", "variable": "cylinder", "constant": "note"}


class GraphvizMissing(GraphcError, RuntimeError):
    """Neither pygraphviz nor the `dot` program is available."""


def dot_of(obj, stage: str = "graph") -> str:
    """DOT text of a graph (stage "graph"/"optimized") or of a compiled function's kernels."""
    if stage == "kernels":
        compiled, name, _ = compiled_parts(obj)
        return compiled_dot(compiled, name)
    return graph_dot(graph_of(obj, stage))


def quote(text: str) -> str:
    """A DOT double-quoted string; newlines become centered line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _header(title: str) -> list[str]:
    return [f"digraph {quote(title)} {{", "  rankdir=TB;",
            '  graph [fontname="Helvetica", fontsize=11, labelloc=t, label=' + quote(title)
            + "];",
            '  node [shape=box, style="rounded,filled", fillcolor="#f7f7f7", '
            'fontname="Courier", fontsize=10];',
            '  edge [color="#777777", arrowsize=0.6];']


def _leaf_lines(graph: Graph, names: dict) -> tuple[list[str], dict[Tensor, str]]:
    """Leaf nodes (inputs, variables, constants) and their DOT ids."""
    lines, ids = [], {}
    for i, leaf in enumerate(header_leaves(graph)):
        ids[leaf] = f"l{i}"
        label = format_leaf(leaf, names).split(" const=")[0]
        shape = ROLE_SHAPES.get(leaf.role, "ellipse")
        lines.append(f'  l{i} [label={quote(label)}, shape={shape}, fillcolor="#e8f0fe"];')
    return lines, ids


def _node_label(node, names: dict, extra: str = "") -> str:
    site = f"\n{node.site}" if node.site else ""
    return format_equation(node, names) + site + extra


def _edge_lines(edges: list[tuple[str, str]]) -> list[str]:
    return [f"  {src} -> {dst};" for src, dst in dict.fromkeys(edges)]


def graph_dot(graph: Graph) -> str:
    """DOT text: one box per equation, edges along the values, outputs double-bordered."""
    names = assign_names(graph)
    lines = _header("graph" if graph.name == "graph" else f"graph {graph.name}")
    leaf_lines, ids = _leaf_lines(graph, names)
    lines += leaf_lines
    outputs = set(graph.outputs)
    edges = []
    for i, node in enumerate(graph.nodes):
        border = ", peripheries=2" if outputs & set(node.outputs) else ""
        lines.append(f"  n{i} [label={quote(_node_label(node, names))}{border}];")
        edges += [(ids[v], f"n{i}") for v in node.inputs if v in ids]
        ids.update((out, f"n{i}") for out in node.outputs)
    return "\n".join(lines + _edge_lines(edges) + ["}"]) + "\n"


def cluster_ids(names: list[str]) -> list[str]:
    """`cluster_<kernel>` per launch; a kernel launched again gets `_2`, `_3`, ..."""
    seen: dict[str, int] = {}
    ids = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        ids.append(f"cluster_{name}" if seen[name] == 1 else f"cluster_{name}_{seen[name]}")
    return ids


def compiled_dot(compiled, name: str = "function") -> str:
    """DOT text of a compiled function: each kernel a cluster of the equations it computes."""
    views = anatomy(compiled)
    names = value_names(compiled, views)
    labels = buffer_labels(compiled)
    lines = _header(f"function {name}: {len(views)} kernels")
    leaf_lines, leaf_ids = _leaf_lines(compiled.graph, names)
    lines += leaf_lines
    writer: dict[Tensor, str] = {}
    edges: list[tuple[str, str]] = []
    clusters = cluster_ids([v.launch.name for v in views])
    for view, cluster in zip(views, clusters):
        local: dict[Tensor, str] = {}
        body = []
        for j, node in enumerate(view.nodes):
            node_id = f"k{view.index}_{j}"
            body.append(_kernel_node(node_id, node, view, names, labels))
            edges += [(src, node_id) for src in
                      (local.get(v) or writer.get(v) or leaf_ids.get(v) for v in node.inputs)
                      if src]
            local.update((out, node_id) for out in node.outputs)
        lines += _cluster(cluster, view, body)
        writer.update((t, local[t]) for t in view.writes.values() if t in local)
    return "\n".join(lines + _edge_lines(edges) + ["}"]) + "\n"


def _kernel_node(node_id: str, node, view, names: dict, labels: dict) -> str:
    """One equation inside a kernel cluster; a stored value names its buffer."""
    stored = [b for b, t in view.writes.items() if is_among(t, node.outputs)]
    if not stored:
        return f"    {node_id} [label={quote(_node_label(node, names))}];"
    extra = "\n-> " + ", ".join(labels.get(b, b) for b in stored)
    return (f"    {node_id} [label={quote(_node_label(node, names, extra))}, peripheries=2, "
            f'fillcolor="#fff4d6"];')


def _cluster(cluster: str, view, body: list[str]) -> list[str]:
    launch = view.launch
    label = (f"#{view.index} {launch.name}\nglobal={'x'.join(map(str, launch.global_size))}"
             f"  flops={launch.flops}  bytes={launch.bytes_read + launch.bytes_written}")
    return ([f"  subgraph {cluster} {{", f"    label={quote(label)};",
             '    style="rounded,filled"; fillcolor="#eef6ee"; color="#4a8a4a";']
            + body + ["  }"])


# ---- rendering ----

def render_svg(dot_text: str) -> str:
    """SVG text of a DOT graph, through pygraphviz or the `dot` program."""
    try:
        import pygraphviz
    except ImportError:
        pygraphviz = None
    if pygraphviz is not None:
        svg = pygraphviz.AGraph(string=dot_text).draw(format="svg", prog="dot")
        return svg.decode() if isinstance(svg, bytes) else svg
    program = shutil.which("dot")
    if program is None:
        raise GraphvizMissing(INSTALL_HINT)
    done = subprocess.run([program, "-Tsvg"], input=dot_text, capture_output=True, text=True,
                          timeout=DOT_TIMEOUT_S)
    if done.returncode != 0:
        raise GraphcError(f"dot -Tsvg failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def save(dot_text: str, path) -> Path:
    """Write `path` (.dot as is, .svg rendered); without Graphviz, keep the .dot and raise."""
    path = Path(path)
    if path.suffix != ".svg":
        path.write_text(dot_text)
        return path
    try:
        path.write_text(render_svg(dot_text))
    except GraphvizMissing as exc:
        kept = path.with_suffix(".dot")
        kept.write_text(dot_text)
        raise GraphvizMissing(f"wrote {kept} instead of {path}: {exc}") from None
    return path
