"""verify(graph): one hand-broken graph per invariant, each error naming equation and line."""
import inspect
import re

import numpy as np
import pytest

import graphc as gc
from graphc.ir import Graph, Node, TensorType
from graphc.sites import user_site
from graphc.inspection.verify import graphs_equal, verify


def here() -> int:
    """The caller's line number."""
    return inspect.currentframe().f_back.f_lineno


def chain():
    """x -> exp -> add 1 -> multiply -> tanh, and the lines that built each node."""
    x = gc.placeholder((3,), name="x")
    a, line_a = gc.exp(x), here()
    b, line_b = a + 1.0, here()
    c, line_c = b * a, here()
    d, line_d = gc.tanh(c), here()
    return x, [a, b, c, d], [line_a, line_b, line_c, line_d]


def rebuilt(graph: Graph, nodes=None, inputs=None, outputs=None) -> Graph:
    """`graph` with some of its parts replaced."""
    return Graph(graph.inputs if inputs is None else tuple(inputs),
                 graph.nodes if nodes is None else tuple(nodes),
                 graph.outputs if outputs is None else tuple(outputs))


def verify_error(graph: Graph) -> str:
    with pytest.raises(gc.VerifyError) as excinfo:
        verify(graph)
    return str(excinfo.value)


def assert_names_equation(message: str, equation: str, line: int) -> None:
    assert "in equation #" in message and equation in message, message
    assert re.search(rf"created at \S*test_verify\.py:{line}\b", message), message
    assert re.search(rf">>> #\d+: {re.escape(equation)}", message), message


def test_a_well_formed_graph_verifies():
    x, values, _ = chain()
    verify(Graph.from_outputs(values[-1:]))
    verify(Graph.from_outputs(values, inputs=[values[1]]))      # a cut at an intermediate


def test_def_before_use():
    x, values, lines = chain()
    graph = Graph.from_outputs(values[-1:])
    nodes = list(graph.nodes)
    nodes[1], nodes[2] = nodes[2], nodes[1]
    message = verify_error(rebuilt(graph, nodes))
    assert ("operand 0 (c:f32[3]) is used before it is defined: it is defined later, by"
            " equation #3") in message
    assert_names_equation(message, "b:f32[3] = multiply c a", lines[2])


def test_operand_not_defined_in_the_graph():
    x, values, lines = chain()
    graph = Graph.from_outputs(values[-1:])
    message = verify_error(rebuilt(graph, inputs=graph.inputs[1:]))   # drop x
    assert "operand 0 (?1:f32[3]) is used before it is defined: it is not defined" in message
    assert_names_equation(message, "a:f32[3] = exp ?1", lines[0])


def test_literal_operands_must_be_graph_inputs_too():
    x, values, lines = chain()
    graph = Graph.from_outputs(values[-1:])
    kept = [leaf for leaf in graph.inputs if leaf.ndim > 0]
    message = verify_error(rebuilt(graph, inputs=kept))
    assert "(1.0:f32:f32[]) is used before it is defined" in message
    assert_names_equation(message, "b:f32[3] = add a 1.0:f32", lines[1])


def test_single_assignment():
    x, values, lines = chain()
    graph = Graph.from_outputs(values[-1:])
    nodes = list(graph.nodes)
    message = verify_error(rebuilt(graph, nodes[:3] + [nodes[1]] + nodes[3:]))
    assert "value b:f32[3] is assigned twice (single assignment)" in message
    assert_names_equation(message, "b:f32[3] = add a 1.0:f32", lines[1])


def test_node_output_that_is_also_a_graph_input_is_assigned_twice():
    x, values, lines = chain()
    graph = Graph.from_outputs(values[-1:])
    message = verify_error(rebuilt(graph, inputs=(*graph.inputs, values[0])))
    assert "is assigned twice" in message
    assert_names_equation(message, "a:f32[3] = exp x", lines[0])


def test_unknown_op():
    x = gc.placeholder((3,), name="x")
    node, line = Node("frobnicate", [x], {}, [x.type], user_site()), here()
    message = verify_error(Graph((x,), (node,), node.outputs))
    assert "op 'frobnicate' is not in the registry" in message
    assert_names_equation(message, "a:f32[3] = frobnicate x", line)


@pytest.mark.parametrize("attrs,words", [
    ({}, "has attributes [], its record declares ['dtype']"),
    ({"dtype": gc.int32, "axis": 0}, "has attributes ['axis', 'dtype']"),
])
def test_attrs_must_be_exactly_the_records(attrs, words):
    x = gc.placeholder((3,), name="x")
    out = TensorType((3,), gc.int32)
    node, line = Node("cast", [x], attrs, [out], user_site()), here()
    message = verify_error(Graph((x,), (node,), node.outputs))
    assert words in message
    assert_names_equation(message, "a:i32[3] = cast", line)


def test_arity():
    x = gc.placeholder((3,), name="x")
    node, line = Node("add", [x, x, x], {}, [x.type], user_site()), here()
    message = verify_error(Graph((x,), (node,), node.outputs))
    assert "op add takes 2 operands, this node has 3" in message
    assert_names_equation(message, "a:f32[3] = add x x x", line)


def test_stored_type_must_equal_the_rederived_type():
    x = gc.placeholder((3,), name="x")
    wrong = TensorType((3,), gc.float64)
    node, line = Node("exp", [x], {}, [wrong], user_site()), here()
    message = verify_error(Graph((x,), (node,), node.outputs))
    assert "stored output type f64[3] differs from the type f32[3]" in message
    assert_names_equation(message, "a:f64[3] = exp x", line)


def test_shape_rule_rejecting_the_operands():
    x = gc.placeholder((3,), name="x")
    y = gc.placeholder((4,), name="y")
    node, line = Node("add", [x, y], {}, [x.type], user_site()), here()
    message = verify_error(Graph((x, y), (node,), node.outputs))
    assert "shape rule rejects its operands: shapes (3,) and (4,) cannot be broadcast" in message
    assert_names_equation(message, "a:f32[3] = add x y", line)


def test_output_that_names_another_producer():
    x = gc.placeholder((3,), name="x")
    node, line = Node("exp", [x], {}, [x.type], user_site()), here()
    other = Node("exp", [x], {}, [x.type])
    node.outputs = other.outputs
    message = verify_error(Graph((x,), (node,), node.outputs))
    assert "does not name this node as producer" in message
    assert_names_equation(message, "a:f32[3] = exp x", line)


def test_graph_outputs_must_be_defined():
    x, values, lines = chain()
    graph = Graph.from_outputs(values[-1:])
    message = verify_error(rebuilt(graph, nodes=graph.nodes[:-1]))
    assert "graph output ?1:f32[3] is not defined in the graph" in message
    assert re.search(rf"created at \S*test_verify\.py:{lines[3]}\b", message), message


def test_graph_inputs_listed_twice():
    x, values, _ = chain()
    graph = Graph.from_outputs(values[-1:])
    message = verify_error(rebuilt(graph, inputs=(x, *graph.inputs)))
    assert "graph input x:f32[3] is listed twice" in message


def test_context_shows_three_equations_either_side():
    x = gc.placeholder((3,), name="x")
    y = x
    for _ in range(10):
        y = gc.exp(y)
    graph = Graph.from_outputs([y])
    nodes = list(graph.nodes)
    broken = Node("exp", [nodes[4].outputs[0]], {}, [TensorType((3,), gc.int32)], "f.py:7")
    message = verify_error(rebuilt(graph, nodes[:5] + [broken] + nodes[5:]))
    context = message.split("context:\n")[1].splitlines()
    assert [line.split(":")[0].strip() for line in context] == [
        "#3", "#4", "#5", ">>> #6", "#7", "#8", "#9"]
    assert "created at f.py:7" in message


def test_unknown_stage():
    x, values, _ = chain()
    with pytest.raises(ValueError, match="unknown stage 'fused'"):
        verify(Graph.from_outputs(values), stage="fused")


def test_graphs_equal_is_structural():
    def build(scale, name="x"):
        x = gc.placeholder((3,), name=name)
        w = gc.constant(np.array([1.0, 2.0, scale], np.float32))
        return Graph.from_outputs([gc.exp(x * w) + 1.0])
    assert graphs_equal(build(3.0), build(3.0))
    assert not graphs_equal(build(3.0), build(4.0))
    assert not graphs_equal(build(3.0), build(3.0, name="z"))
    x = gc.placeholder((3,), name="x")
    assert not graphs_equal(Graph.from_outputs([gc.exp(x)]), Graph.from_outputs([gc.sin(x)]))
    assert not graphs_equal(Graph.from_outputs([x + 1.0]), Graph.from_outputs([x + 2.0]))
    assert not graphs_equal(Graph.from_outputs([x - x * 2]), Graph.from_outputs([x * 2 - x]))
