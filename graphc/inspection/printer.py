"""Print the IR like a jaxpr: one typed equation per line, creation sites as comments.

    graph(x:f32[64,784], W:f32[784,10] var, c:f32[3] const=[0.5,1.0,2.0]) {
      a:f32[64,10] = matmul x W                 # models/mlp.py:12
      b:f32[] = reduce_sum[axes=(0,1) keepdims=False] a
      return (b)
    }

`graphc.inspection.parser.parse` reads this text back; `debugprint` is a secondary tree view.
"""
from __future__ import annotations

import keyword
from typing import Iterator, Sequence

import numpy as np

from graphc import dtypes
from graphc.ir import Graph, Node, Tensor, position_of

MAX_CONST_PRINTED = 64
SITE_COLUMN_CAP = 72
# Words of the text format itself, which no value may be called.
RESERVED = frozenset({"graph", "return", "var", "const", "inf", "nan", *dtypes.FROM_SHORT})


# ---- values and attributes ----

def format_scalar(value, dtype: np.dtype) -> str:
    """A scalar as text that parses back to the same bits (floats print their shortest form)."""
    dtype = np.dtype(dtype)
    if dtypes.is_bool(dtype):
        return str(bool(value))
    if dtypes.is_int(dtype):
        return str(int(value))
    return str(dtype.type(value))


def is_literal(value: Tensor) -> bool:
    """True for a 0-d constant, which prints inline where it is used."""
    return value.role == "constant" and value.producer is None and value.ndim == 0


def format_literal(value: Tensor) -> str:
    """`0.5:f32`, `3:i32`, `True:bool`."""
    return f"{format_scalar(value.data[()], value.dtype)}:{dtypes.short_name(value.dtype)}"


def format_attr_value(value) -> str:
    """An attribute value: tuples without spaces, dtypes by short name, strings quoted."""
    if isinstance(value, tuple):
        items = ",".join(format_attr_value(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, np.dtype):
        return dtypes.short_name(value)
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return repr(value)


def format_attrs(attrs: dict) -> str:
    """`[key=value ...]` sorted by key, or nothing when there are no attributes."""
    if not attrs:
        return ""
    return "[" + " ".join(f"{k}={format_attr_value(attrs[k])}" for k in sorted(attrs)) + "]"


def format_constant_values(value: Tensor) -> str:
    """The flat row-major list of a constant's values, or `<elided>` when it is large."""
    if value.size > MAX_CONST_PRINTED:
        return "<elided>"
    flat = np.asarray(value.data).reshape(-1)
    return "[" + ",".join(format_scalar(v, value.dtype) for v in flat) + "]"


# ---- names ----

def generated_names() -> Iterator[str]:
    """a, b, ..., z, ba, bb, ... (jaxpr style), skipping keywords and reserved words."""
    index = 0
    while True:
        name, n = "", index
        while not name or n:
            n, digit = divmod(n, 26)
            name = chr(ord("a") + digit) + name
        index += 1
        if name not in RESERVED and not keyword.iskeyword(name):
            yield name


def is_valid_name(name) -> bool:
    """A user's name the text can carry: an identifier that is no keyword or reserved word,
    or a scoped one whose parts are identifiers (`dense_3/kernel`, as layers name weights)."""
    return (isinstance(name, str) and name.isascii() and name not in RESERVED
            and all(part.isidentifier() and not keyword.iskeyword(part)
                    for part in name.split("/")))


def header_leaves(graph: Graph) -> list[Tensor]:
    """The leaves printed in the header: every graph input but the inline literals."""
    return [leaf for leaf in graph.inputs if not is_literal(leaf)]


def assign_names(graph: Graph) -> dict[Tensor, str]:
    """Deterministic printed names: users' leaf names where usable, then a, b, c, ..."""
    leaves = list(dict.fromkeys(header_leaves(graph)))
    counts: dict = {}
    for leaf in leaves:
        counts[leaf.name] = counts.get(leaf.name, 0) + 1
    names = {leaf: leaf.name for leaf in leaves
             if is_valid_name(leaf.name) and counts[leaf.name] == 1}
    taken = set(names.values())
    fresh = (name for name in generated_names() if name not in taken)
    unnamed = [leaf for leaf in leaves if leaf not in names]
    outs = [out for node in graph.nodes for out in node.outputs]
    for value in unnamed + outs:
        if value not in names:          # a node listed twice keeps its first names
            names[value] = next(fresh)
    return names


# ---- equations and graphs ----

def format_operand(value: Tensor, names: dict[Tensor, str]) -> str:
    """A variable's name, or a literal inline."""
    if is_literal(value):
        return format_literal(value)
    return names.get(value, "?")


def format_binder(value: Tensor, names: dict[Tensor, str]) -> str:
    """`name:f32[3]`."""
    return f"{format_operand(value, names)}:{value.type}"


def format_equation(node: Node, names: dict[Tensor, str]) -> str:
    """`a:f32[3] = op[attrs] x y`, without indentation or site."""
    binders = ", ".join(format_binder(out, names) for out in node.outputs)
    operands = "".join(" " + format_operand(v, names) for v in node.inputs)
    return f"{binders} = {node.op}{format_attrs(node.attrs)}{operands}"


def format_leaf(leaf: Tensor, names: dict[Tensor, str]) -> str:
    """A header binder: `x:f32[3]`, `W:f32[3] var` or `c:f32[3] const=[...]`."""
    text = format_binder(leaf, names)
    if leaf.role == "variable":
        return text + " var"
    if leaf.role == "constant":
        return f"{text} const={format_constant_values(leaf)}"
    return text


def with_sites(lines: Sequence[str], sites: Sequence[str]) -> list[str]:
    """Append `# site` comments, aligned in one column (capped for very long equations)."""
    widths = [len(line) for line, site in zip(lines, sites) if site]
    column = min(max(widths, default=0), SITE_COLUMN_CAP)
    return [f"{line:<{column}}  # {site}" if site else line for line, site in zip(lines, sites)]


def format_graph(graph: Graph, sites: bool = True) -> str:
    """The whole graph as text, one equation per line."""
    names = assign_names(graph)
    title = "graph" if graph.name == "graph" else f"graph {graph.name}"
    header = ", ".join(format_leaf(leaf, names) for leaf in header_leaves(graph))
    body = ["  " + format_equation(node, names) for node in graph.nodes]
    if sites:
        body = with_sites(body, [node.site for node in graph.nodes])
    returned = ", ".join(format_operand(v, names) for v in graph.outputs)
    return "\n".join([f"{title}({header}) {{", *body, f"  return ({returned})", "}"])


def as_graph(obj) -> Graph:
    """A Graph from a Graph, a Tensor or a list of Tensors."""
    if isinstance(obj, Graph):
        return obj
    if isinstance(obj, Tensor):
        return Graph.from_outputs([obj])
    if isinstance(obj, (list, tuple)) and all(isinstance(t, Tensor) for t in obj):
        return Graph.from_outputs(obj)
    raise TypeError(f"cannot dump {type(obj).__name__}: expected a Tensor, a list of Tensors"
                    " or a Graph")


# ---- tree view ----

TREE_DEPTH = 64     # levels under one root; a deeper subtree continues as a root of its own


def debugprint(outputs) -> str:
    """A PyTensor-style tree; a shared subexpression is printed once, then `[id X] ···`.
    A subtree deeper than TREE_DEPTH levels is cut (`[id X] ↓`) and printed after the
    tree as a root of its own, so a deep chain prints in lines of bounded width."""
    roots = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ids: dict[Tensor, str] = {}
    lines: list[str] = []
    cut: list[Tensor] = []
    for out in roots:
        _tree_lines(out, ids, lines, cut)
    while cut:
        lines.append("")
        _tree_lines(cut.pop(0), ids, lines, cut, continued=True)
    return "\n".join(lines)


def _tree_head(value: Tensor) -> str:
    """What a tree line calls a value: its op (with attrs), a leaf's name, or a literal."""
    if value.producer is None:
        return format_literal(value) if is_literal(value) else (value.name or value.role)
    node = value.producer
    index = f".{position_of(value, node.outputs)}" if len(node.outputs) > 1 else ""
    return f"{node.op}{format_attrs(node.attrs)}{index}"


def _tree_tail(value: Tensor) -> str:
    """The type, then a leaf's role or a node's site."""
    if value.producer is None:
        return f"{value.type} {value.role}" if value.name else str(value.type)
    site = value.producer.site
    return f"{value.type}  # {site}" if site else str(value.type)


def _tree_lines(root: Tensor, ids: dict, lines: list, cut: list,
                continued: bool = False) -> None:
    """Append the subtree of `root` (a stack, not recursion: graphs can be deep); subtrees
    below TREE_DEPTH go to `cut`. A `continued` root was cut before and has its id."""
    stack = [(root, "", " ", 0)]
    while stack:
        value, lead, child_lead, depth = stack.pop()
        if value in ids and not (continued and value is root):
            lines.append(f"{lead}{_tree_head(value)} [id {ids[value]}] ···")
            continue
        ids.setdefault(value, _tree_id(len(ids)))
        inputs = value.producer.inputs if value.producer is not None else ()
        if depth == TREE_DEPTH and inputs:
            lines.append(f"{lead}{_tree_head(value)} [id {ids[value]}] ↓")
            cut.append(value)
            continue
        lines.append(f"{lead}{_tree_head(value)} [id {ids[value]}] {_tree_tail(value)}")
        for i in reversed(range(len(inputs))):
            last = i == len(inputs) - 1
            stack.append((inputs[i], child_lead + ("└─ " if last else "├─ "),
                          child_lead + ("   " if last else "│  "), depth + 1))


def _tree_id(index: int) -> str:
    """A, B, ..., Z, BA, BB, ... ."""
    name, n = "", index
    while not name or n:
        n, digit = divmod(n, 26)
        name = chr(ord("A") + digit) + name
    return name
