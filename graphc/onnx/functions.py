"""ONNX ops that graphc has no converter for but that ONNX defines as functions of other
ops (SwiGLU, LinearAttention, CausalConvWithState, ...): the node is replaced by its
function body, converted like a subgraph (in the function's own opset), with the node's
attributes substituted where the body refers to them."""
from __future__ import annotations

import numpy as np

from graphc import dtypes
from graphc.ir import Tensor
from graphc.onnx import types

_ELEM = {dtypes.float16: types.FLOAT16, dtypes.float32: types.FLOAT,
         dtypes.float64: types.DOUBLE, dtypes.int32: types.INT32, dtypes.int64: types.INT64,
         dtypes.bool_: types.BOOL}


def schema_of(node, opset: int):
    """The op's schema at `opset`, or None when ONNX does not define it."""
    import onnx
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return None


def has_body(node, opset: int) -> bool:
    schema = schema_of(node, opset)
    if schema is None:
        return False
    versions = list(schema.function_opset_versions) + \
        list(schema.context_dependent_function_opset_versions)
    return any(v <= opset for v in versions)


def body(node, opset: int, inputs: list[Tensor | None], stated: list):
    """The FunctionProto that defines `node` at `opset` (context-dependent ones are built
    for the node's input types and shapes)."""
    from onnx import FunctionProto, helper
    schema = schema_of(node, opset)
    plain = [v for v in schema.function_opset_versions if v <= opset]
    proto = FunctionProto()
    if plain:
        proto.ParseFromString(schema.get_function_with_opset_version(max(plain)))
        return proto
    dependent = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
    type_protos = []
    for x, elem in zip(inputs, stated):
        if x is None:
            type_protos.append(helper.TypeProto().SerializeToString())
            continue
        elem = elem or _ELEM[np.dtype(x.dtype)]
        type_protos.append(helper.make_tensor_type_proto(elem, x.shape).SerializeToString())
    proto.ParseFromString(schema.get_context_dependent_function_with_opset_version(
        max(dependent), node.SerializeToString(), type_protos))
    return proto


def as_graph(node, function, schema):
    """The function body as a GraphProto whose inputs are the function's formal inputs,
    with attribute references resolved to the node's attributes or their defaults."""
    from onnx import helper
    given = {a.name: a for a in node.attribute}
    defaults = {name: a.default_value for name, a in schema.attributes.items()
                if a.default_value.name}
    nodes = []
    for inner in function.node:
        copy = type(inner)()
        copy.CopyFrom(inner)
        del copy.attribute[:]
        for attr in inner.attribute:
            if not attr.ref_attr_name:
                copy.attribute.append(attr)
                continue
            source = given.get(attr.ref_attr_name) or defaults.get(attr.ref_attr_name)
            if source is not None:
                resolved = type(attr)()
                resolved.CopyFrom(source)
                resolved.name = attr.name
                copy.attribute.append(resolved)
        nodes.append(copy)
    inputs = [helper.make_empty_tensor_value_info(n) for n in function.input]
    outputs = [helper.make_empty_tensor_value_info(n) for n in function.output]
    return helper.make_graph(nodes, f"{node.op_type}_function", inputs, outputs)


def function_opset(function, default: int) -> int:
    versions = [o.version for o in function.opset_import if o.domain in ("", "ai.onnx")]
    return versions[0] if versions else default
