"""Walk an ONNX graph's nodes in order, converting each through its entry in CONVERTERS.

`check_model` refuses, before any shape is known, what graphc cannot import: a domain or
opset it does not know, an op with no converter, an attribute its converter does not read,
a subgraph. `convert_nodes` then builds the graphc graph for known input shapes; a node
whose inputs are all constants is evaluated on the spot (constant folding), so the Shape
arithmetic that exporters emit never reaches the device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.builder import constant
from graphc.errors import GraphcError
from graphc.interp import interpret
from graphc.ir import Graph, Tensor
from graphc.onnx import functions, ops  # noqa: F401  (ops fills CONVERTERS)
from graphc.onnx.errors import NeedsValue, OnnxImportError, UnsupportedError, node_label
from graphc.onnx.registry import CONVERTERS, NodeView
from graphc.sites import name_scope

DOMAINS = ("", "ai.onnx")
MIN_OPSET = 1


def newest_opset() -> int:
    import onnx
    return onnx.defs.onnx_opset_version()


def model_opset(model) -> int:
    """The model's ai.onnx opset; UnsupportedError for one newer than the installed onnx's."""
    versions = [o.version for o in model.opset_import if o.domain in DOMAINS]
    opset = versions[0] if versions else 1
    if opset > newest_opset():
        raise UnsupportedError(f"the model uses opset {opset}; this onnx knows up to"
                               f" {newest_opset()}")
    return opset


def check_model(model, opset: int) -> None:
    """Every node, in subgraphs too, has a converter that reads all of its attributes
    (load-time refusal)."""
    check_graph(model.graph, opset)


def check_graph(graph, opset: int) -> None:
    for node in graph.node:
        check_node(node, opset)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                check_graph(sub, opset)


def check_node(node, opset: int) -> None:
    label = node_label(node, opset)
    if node.domain not in DOMAINS:
        raise UnsupportedError(f"{label}: domain {node.domain!r} is not supported (graphc "
                               f"imports the default ai.onnx domain)")
    entry = CONVERTERS.get(node.op_type)
    if entry is None and node.domain in DOMAINS and functions.has_body(node, opset):
        return                                  # expanded to its function body
    if entry is None:
        raise UnsupportedError(f"{label}: op {node.op_type} is not supported by graphc's "
                               f"ONNX importer")
    unknown = sorted(a.name for a in node.attribute if a.name not in entry.attrs)
    if unknown:
        raise UnsupportedError(f"{label}: attribute {', '.join(unknown)} is not supported")
    extra = [i for i, name in enumerate(node.output) if name and i >= entry.max_outputs]
    if extra:
        raise UnsupportedError(f"{label}: output {extra[0]} of {node.op_type} is not"
                               f" supported")


def attributes(node) -> dict:
    """The node's attributes as Python values (strings decoded, tensors left as protos)."""
    from onnx import helper
    parsed = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        parsed[attr.name] = value
    return parsed


def declared_types(graph, outer: dict | None = None) -> dict[str, int]:
    """The ONNX element type of every value the graph (or its outer scope) states one for."""
    stated = dict(outer or {})
    stated.update({t.name: t.data_type for t in graph.initializer})
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            stated[info.name] = info.type.tensor_type.elem_type
    return stated


@dataclass
class Scope:
    """What converting one graph (the model's, or a subgraph of If, Loop, Scan) shares."""

    opset: int
    source: str
    weights: dict | None
    stated: dict
    graph_outputs: frozenset
    prefix: str = ""


def convert_nodes(model, opset: int, env: dict[str, Tensor], source: str,
                  weights: dict | None = None) -> None:
    """Convert every node, adding its outputs to `env` (ONNX value name -> tensor);
    `weights` (the model's variables) receives the variables converters create."""
    graph = model.graph
    scope = Scope(opset, source, weights, declared_types(graph),
                  frozenset(o.name for o in graph.output))
    convert_graph(graph, env, scope)


def convert_graph(graph, env: dict[str, Tensor], scope: Scope) -> None:
    for index, node in enumerate(graph.node):
        label = node_label(node, scope.opset)
        view = NodeView(node.op_type, node.name, scope.opset, attributes(node),
                        [env[n] if n else None for n in _inputs(node, env, label)],
                        list(node.input), list(node.output), scope.weights,
                        [scope.stated.get(n) for n in node.input], scope.graph_outputs)
        view.subgraph = _subgraph_runner(env, scope)
        if node.op_type == "Cast" and node.output:
            scope.stated.setdefault(node.output[0], view.attr("to"))
        name = scope.prefix + (node.name or f"{node.op_type}_{index}")
        with name_scope(name, f"{scope.source} node {index}"):
            if node.op_type in CONVERTERS:
                outputs = _run_converter(view, label)
            elif node.domain in DOMAINS and functions.has_body(node, scope.opset):
                outputs = _expand_function(node, view, scope, label)
            else:
                check_node(node, scope.opset)       # raises: no converter, no function
                outputs = []
        _bind_outputs(node, outputs, env, label)


def _expand_function(node, view: NodeView, scope: Scope, label: str) -> list[Tensor]:
    """A node ONNX defines as a function of other ops: its body, converted in place."""
    function = functions.body(node, scope.opset, view.inputs, view.input_types)
    graph = functions.as_graph(node, function, functions.schema_of(node, scope.opset))
    bindings = {formal: x for formal, x in zip(function.input, view.inputs) if x is not None}
    opset = functions.function_opset(function, scope.opset)
    try:
        return view.subgraph(graph, bindings, "function", opset=opset)
    except UnsupportedError as exc:
        raise UnsupportedError(f"{label}, expanded to its ONNX function: {exc}") from None


def _subgraph_runner(outer_env: dict, scope: Scope):
    """run(graph, bindings, tag) -> the subgraph's outputs: its nodes converted in a scope
    that sees the outer values (ONNX's lexical scoping), its inputs bound to `bindings`."""
    def run(graph, bindings: dict[str, Tensor], tag: str, opset: int | None = None):
        env = dict(outer_env)
        env.update(bindings)
        env.update(_initializers(graph))
        inner = Scope(opset or scope.opset, scope.source, scope.weights,
                      declared_types(graph, scope.stated), frozenset(),
                      f"{scope.prefix}{tag}/")
        convert_graph(graph, env, inner)
        return [env[o.name] for o in graph.output]
    return run


def _initializers(graph) -> dict[str, Tensor]:
    from onnx import numpy_helper
    from graphc.onnx.ops.shape import constant_of
    return {t.name: constant_of(numpy_helper.to_array(t)) for t in graph.initializer}


def _inputs(node, env: dict, label: str) -> list[str]:
    for name in node.input:
        if name and name not in env:
            raise OnnxImportError(f"{label}: input {name!r} is produced by no earlier node, "
                                  f"initializer or graph input")
    return list(node.input)


def _run_converter(view: NodeView, label: str) -> list[Tensor]:
    entry = CONVERTERS[view.op_type]
    if view.opset < entry.min_opset:
        raise UnsupportedError(f"{label}: opsets below {entry.min_opset} are not supported")
    try:
        result = entry.fn(view)
    except NeedsValue:
        raise
    except UnsupportedError as exc:
        raise UnsupportedError(f"{label}: {exc}") from None
    except GraphcError as exc:
        raise type(exc)(f"{label}: {exc}") from None
    outputs = list(result) if isinstance(result, (list, tuple)) else [result]
    if all(x is None or x.role == "constant" for x in view.inputs):
        outputs = [_folded(x) for x in outputs]
    return outputs


def _folded(x: Tensor) -> Tensor:
    """A node output computed from constants only, evaluated now (a subgraph's node may
    read outer values though its own inputs are constants: those stay)."""
    if x is None or x.role == "constant":
        return x
    if any(leaf.role != "constant" for leaf in Graph.from_outputs([x]).inputs):
        return x
    return constant(np.asarray(interpret(x)), x.dtype)


def _bind_outputs(node, outputs: list[Tensor], env: dict, label: str) -> None:
    for i, name in enumerate(node.output):
        if not name:
            continue
        if i >= len(outputs) or outputs[i] is None:
            raise UnsupportedError(f"{label}: output {i} ({name!r}) is not supported")
        env[name] = outputs[i]
