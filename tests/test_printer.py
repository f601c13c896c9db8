"""IR text: golden dumps, parse(dump(g)) round trips for every op, the tree view, parse errors.
The golden files' graphs are built right below the imports (their line numbers are sites in
the golden texts). Regenerate with GRAPHC_UPDATE_GOLDEN=1.
"""
import os
import re
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.builder import apply
from graphc.inspection.dump import dump
from graphc.inspection.parser import parse
from graphc.inspection.printer import assign_names, debugprint, format_attrs, format_graph
from graphc.inspection.verify import graphs_equal, verify


def mlp_forward():
    x = gc.placeholder((64, 784), gc.float32, name="x")
    W1 = gc.variable(np.zeros((784, 32), np.float32), name="W1")
    b1 = gc.variable(np.zeros(32, np.float32), name="b1")
    W2 = gc.variable(np.zeros((32, 10), np.float32), name="W2")
    b2 = gc.variable(np.zeros(10, np.float32), name="b2")
    hidden = gc.relu(x @ W1 + b1)
    return [gc.softmax(hidden @ W2 + b2, axis=-1)]


def constants_and_literals():
    x = gc.placeholder((2, 3), gc.float32, name="x")
    k = gc.placeholder((3,), gc.int32, name="k")
    table = gc.constant([[0.1, -2.5, 1e-8], [3e38, -0.0, 7.0]], name="table")
    big = gc.constant(np.arange(100, dtype=np.float32).reshape(10, 10), name="big")
    mask = gc.constant([True, False, True])
    y = (x * table + 0.5) / 3 - gc.sum(big) * float("inf")
    z = gc.where(mask, k * 3 + gc.constant(-7, gc.int32), 2)
    return [gc.where(gc.logical_and(mask, True), y, np.nan), z, gc.cast(x, gc.float64) * 0.1]


def attrs_of_every_kind():
    x = gc.placeholder((2, 3, 4), gc.float32, name="x")
    total = gc.sum(x, axis=(0, 2), keepdims=True)           # tuple, bool
    rows = gc.max(x, axis=1)                                # 1-tuple
    padded = gc.pad(x, [(0, 0), (1, 2), (0, 1)])            # nested tuples, float
    labels = gc.argmax(x, axis=-1)                          # int
    hot = gc.one_hot(labels, 5, dtype=gc.int64)             # dtype
    noise = gc.random.uniform((3,), low=-0.5, high=0.5, seed=7)
    return [total, rows, padded, hot, noise]


GOLDEN = Path(__file__).parent / "golden"
REPO_ROOT = Path(__file__).resolve().parent.parent
GOLDEN_GRAPHS = {"mlp_forward": mlp_forward, "constants_and_literals": constants_and_literals,
                 "attrs_of_every_kind": attrs_of_every_kind}


@pytest.fixture
def at_repo_root(monkeypatch):
    """Sites are paths relative to the working directory: make them `tests/...`."""
    monkeypatch.chdir(REPO_ROOT)


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name>.txt, or rewrite it when GRAPHC_UPDATE_GOLDEN=1."""
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("GRAPHC_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text + "\n")
    assert path.exists(), f"{path} is missing: run the tests with GRAPHC_UPDATE_GOLDEN=1"
    assert text + "\n" == path.read_text(), f"{name}: dump differs from {path}"


@pytest.mark.parametrize("name", sorted(GOLDEN_GRAPHS))
def test_dump_matches_golden_text(name, at_repo_root):
    check_golden(name, dump(GOLDEN_GRAPHS[name]()))


def test_golden_mlp_text_reads_like_a_jaxpr(at_repo_root):
    text = dump(mlp_forward())
    assert text.startswith("graph(x:f32[64,784], W1:f32[784,32] var, b1:f32[32] var,")
    assert re.search(r"\n  a:f32\[64,32\] = matmul x W1 +# tests/test_printer\.py:\d+\n", text)
    assert "= softmax[axis=1] " in text and text.endswith("  return (f)\n}")


# ---- round trips ----

def assert_round_trip(outputs) -> None:
    graph = gc.Graph.from_outputs(outputs)
    text = dump(graph)
    names = assign_names(graph)
    elided = {names[c]: c.data for c in graph.inputs if c.role == "constant" and c.size > 64}
    parsed = parse(text, values=elided)
    verify(graph)
    verify(parsed)
    assert graphs_equal(parsed, graph), text
    assert dump(parsed) == text
    assert [n.site for n in parsed.nodes] == [n.site for n in graph.nodes]


@pytest.mark.parametrize("name", sorted(GOLDEN_GRAPHS))
def test_golden_graphs_round_trip(name):
    assert_round_trip(GOLDEN_GRAPHS[name]())


def _f32(*shape):
    return gc.placeholder(shape, gc.float32)


def _grads(fn, *shapes):
    """fn's outputs and the gradients of their sum by each input (builds the *_grad ops)."""
    inputs = [_f32(*shape) for shape in shapes]
    out = fn(*inputs)
    return [out, *gc.grad(gc.sum(out * out), inputs)]


def _max_pool_select():
    x = _f32(1, 2, 4, 4)
    h = _f32(1, 2, 4, 4)
    return [apply("max_pool2d_select", [x, h], kernel=(2, 2), stride=(2, 2), padding=(0, 0))]


def _strided_slice_grad():
    x = _f32(5, 6)
    return gc.grad(gc.sum(x[::2, 1::3]), [x])


OP_EXAMPLES = {  # op -> builder of a small graph that uses it (elementwise ops are generated)
    "matmul": lambda: [gc.matmul(_f32(2, 3, 4), _f32(4, 5))],
    "conv2d": lambda: _grads(lambda x, w: gc.conv2d(x, w, stride=2, padding=1, dilation=1),
                             (1, 2, 5, 5), (3, 2, 3, 3)),
    "max_pool2d": lambda: _grads(lambda x: gc.max_pool2d(x, 2), (1, 2, 4, 4)),
    "max_pool2d_select": _max_pool_select,
    "avg_pool2d": lambda: _grads(lambda x: gc.avg_pool2d(x, 3, stride=2, padding=1),
                                 (1, 1, 5, 5)),
    "slice": lambda: [_f32(4, 5)[1:3, ::-2, None]],
    "slice_grad": _strided_slice_grad,
    "take": lambda: _grads(lambda x: gc.take(x, gc.constant([2, 0, 2]), axis=1), (2, 3)),
    "reshape": lambda: [gc.reshape(_f32(2, 6), (3, -1))],
    "transpose": lambda: [gc.transpose(_f32(2, 3, 4), (2, 0, 1))],
    "broadcast_to": lambda: [gc.broadcast_to(_f32(3), (2, 3))],
    "concatenate": lambda: [gc.concatenate([_f32(2, 3), _f32(2, 1), _f32(2, 2)], axis=1)],
    "pad": lambda: [gc.pad(_f32(2, 3), [(1, 0), (2, 2)])],
    "softmax": lambda: [gc.softmax(_f32(2, 5), axis=0)],
    "log_softmax": lambda: [gc.log_softmax(_f32(2, 5))],
    "softmax_cross_entropy": lambda: _grads(
        lambda x: gc.softmax_cross_entropy(x, gc.placeholder((2,), gc.int32), axis=0), (5, 2)),
    "one_hot": lambda: [gc.one_hot(gc.placeholder((4,), gc.int32), 3)],
    "reduce_sum": lambda: [gc.sum(_f32(2, 3, 4), axis=(0, 2))],
    "reduce_max": lambda: [gc.max(_f32(2, 3), axis=1, keepdims=True)],
    "reduce_min": lambda: [gc.min(_f32(2, 3))],
    "argmax": lambda: [gc.argmax(_f32(2, 3), axis=0)],
    "argmin": lambda: [gc.argmin(_f32(2, 3), axis=1)],
    "random_uniform": lambda: [gc.random.uniform((2, 3), seed=1)],
    "random_normal": lambda: [gc.random.normal((4,), mean=1.0, std=2.0, seed=2)],
    "random_bernoulli": lambda: [gc.random.bernoulli((5,), 0.25, seed=3)],
    "cast": lambda: [gc.cast(_f32(3), gc.int64), gc.cast(gc.placeholder((2,), gc.bool_), "f16")],
    "allreduce": lambda: [gc.distributed.allreduce(_f32(2, 3), op="sum")],
    "allgather": lambda: _grads(gc.distributed.allgather, (2, 3)),
    "broadcast": lambda: _grads(lambda x: gc.distributed.broadcast(x, 0), (4,)),
    "layer_norm": lambda: _grads(lambda x, g, b: gc.layer_norm(x, g, b, epsilon=1e-5),
                                 (2, 3), (3,), (3,)),
}
ALSO_BUILT_BY = {  # ops that only appear in another op's example (gradients)
    "conv2d_grad_input": "conv2d", "conv2d_grad_weight": "conv2d", "take_grad": "take",
    "max_pool2d_grad": "max_pool2d", "avg_pool2d_grad": "avg_pool2d",
    "softmax_cross_entropy_grad": "softmax_cross_entropy",
    "allgather_grad": "allgather", "broadcast_grad": "broadcast",
    "layer_norm_grad": "layer_norm",
}
TRIAL_TYPES = [gc.float32, gc.int32, gc.bool_]
TRIAL_SHAPES = [(2, 3), (3,), (1, 1)]


def generated_example(name: str):
    """Operands of the first dtype the op's shape rule accepts, broadcasting shapes."""
    opdef = gc.REGISTRY[name]
    for dtype in TRIAL_TYPES:
        types = [gc.TensorType(TRIAL_SHAPES[i], dtype) for i in range(opdef.arity)]
        if name == "where":
            types[0] = gc.TensorType(types[0].shape, gc.bool_)
        try:
            opdef.infer(types)
        except (gc.ShapeError, gc.DTypeError):
            continue
        return [apply(name, [gc.placeholder(t.shape, t.dtype) for t in types])]
    raise AssertionError(f"no trial dtype fits op {name}")


def example_for(name: str):
    """The round-trip example graph of a registered op."""
    opdef = gc.REGISTRY[name]
    if name in OP_EXAMPLES or name in ALSO_BUILT_BY:
        return OP_EXAMPLES[ALSO_BUILT_BY.get(name, name)]()
    if opdef.kind == "elementwise" and not opdef.attrs and opdef.arity:
        return generated_example(name)
    pytest.fail(f"no round-trip example for op {name}: add one to OP_EXAMPLES in {__file__}")


@pytest.mark.parametrize("name", sorted(gc.load_all()))
def test_every_registered_op_round_trips(name):
    outputs = example_for(name)
    graph = gc.Graph.from_outputs(outputs)
    assert name in {node.op for node in graph.nodes}, dump(graph)
    assert_round_trip(outputs)


def test_parsed_graph_evaluates_like_the_original():
    outputs = constants_and_literals()[:1]
    graph = gc.Graph.from_outputs(outputs)
    big = next(leaf for leaf in graph.inputs if leaf.name == "big")
    parsed = parse(dump(graph), values={"big": big.data})
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    expected = gc.interpret(outputs, {graph.placeholders[0]: value})
    got = gc.interpret(list(parsed.outputs), {parsed.placeholders[0]: value})
    np.testing.assert_array_equal(got[0], expected[0])


def test_edge_values_and_a_named_graph_round_trip():
    x = gc.placeholder((), gc.float16, name="μ")                 # not ASCII: generated name
    w = gc.variable(np.float16(2), name="W")
    empty = gc.constant(np.zeros((0, 3), np.int64), name="empty")
    wide = gc.constant(np.array([2**62, -5], np.int64), name="wide")
    halves = gc.constant(np.array([0.1, 65504, np.inf, -np.nan, -0.0], np.float16))
    outputs = [x * w + halves, gc.sum(empty, axis=0)[:2] + wide]
    plain = gc.Graph.from_outputs(outputs)
    graph = gc.Graph(plain.inputs, plain.nodes, plain.outputs, name="loss")
    text = dump(graph)
    assert text.startswith("graph loss(a:f16[], W:f16[] var, b:f16[5] const=[0.1,6.55e+04,inf,"
                           "nan,-0.0], empty:i64[0,3] const=[], wide:i64[2]"
                           " const=[4611686018427387904,-5]) {")
    parsed = parse(text)
    assert parsed.name == "loss" and graphs_equal(parsed, graph) and dump(parsed) == text


def test_unusable_leaf_names_are_generated_and_round_trip():
    a = gc.placeholder((2,), name="a")
    dup1, dup2 = gc.placeholder((2,), name="dup"), gc.placeholder((2,), name="dup")
    odd = gc.placeholder((2,), name="not an identifier")
    kw = gc.variable(np.ones(2, np.float32), name="return")
    anon = gc.variable(np.ones(2, np.float32))
    y = a + dup1 + dup2 + odd + kw + anon
    text = dump(y)
    assert text.startswith("graph(a:f32[2], b:f32[2], c:f32[2], d:f32[2], e:f32[2] var,"
                           " f:f32[2] var) {\n  g:f32[2] = add a b")
    assert_round_trip([y])


def test_node_names_skip_leaf_names_and_go_on_after_z():
    x = gc.placeholder((2,), name="b")
    y = x
    for _ in range(30):
        y = gc.exp(y)
    text = format_graph(gc.Graph.from_outputs([y]), sites=False)
    names = re.findall(r"^  (\w+):", text, re.M)
    assert names[:3] == ["a", "c", "d"] and names[-5:] == ["ba", "bb", "bc", "bd", "be"]
    assert "#" not in text


def test_multi_output_equations_and_literal_outputs_round_trip():
    text = "\n".join(["graph(x:f32[3]) {", "  a:f32[3] = exp x", "  return (a, 2:i32, x)", "}"])
    graph = parse(text)
    assert dump(graph) == text and graph.outputs[1].data == 2
    node = gc.Node("exp", [graph.inputs[0]], {}, [gc.TensorType((3,), gc.float32)] * 2)
    names = {graph.inputs[0]: "x", node.outputs[0]: "a", node.outputs[1]: "b"}
    from graphc.inspection.printer import format_equation
    assert format_equation(node, names) == "a:f32[3], b:f32[3] = exp x"


def test_sites_align_in_one_column():
    lines = dump(mlp_forward()).splitlines()[1:-2]
    assert len({line.index("#") for line in lines}) == 1


def test_dump_accepts_a_tensor_a_list_or_a_graph():
    x = gc.placeholder((2,), name="x")
    y = gc.exp(x)
    graph = gc.Graph.from_outputs([y])
    assert dump(y) == dump([y]) == dump(graph) == str(graph) == format_graph(graph)
    with pytest.raises(TypeError, match="cannot dump"):
        dump(3)


# ---- attributes ----

ATTR_VALUES = [  # value, text
    (3, "3"), (-1, "-1"), (0.5, "0.5"), (1e-05, "1e-05"), (float("-inf"), "-inf"),
    (True, "True"), (None, "None"), ("same", "'same'"), ("it's", '"it\'s"'),
    ((0, 1), "(0,1)"), ((3,), "(3,)"), ((), "()"), (((1, 2), (3, 4)), "((1,2),(3,4))"),
    (gc.float32, "f32"), (gc.bool_, "bool"), ((gc.int64, None, "a b"), "(i64,None,'a b')"),
]


@pytest.mark.parametrize("value,text", ATTR_VALUES, ids=str)
def test_attr_values_print_and_parse_back(value, text):
    from graphc.inspection.parser import Cursor, parse_attrs
    printed = format_attrs({"k": value, "a": 1})
    assert printed == f"[a=1 k={text}]"
    parsed = parse_attrs(Cursor(printed, 1))
    assert parsed == {"a": 1, "k": value} and type(parsed["k"]) is type(value)


# ---- parse: values, errors ----

def test_parse_takes_variable_and_elided_constant_values():
    text = dump(constants_and_literals())
    with pytest.raises(gc.ParseError, match=r"line 1: the values of constant 'big' are elided"):
        parse(text)
    big = np.arange(100, dtype=np.float32).reshape(10, 10)
    graph = parse(text, values={"big": big})
    np.testing.assert_array_equal(graph.inputs[3].data, big)
    weights = parse(dump(mlp_forward()), values={"b2": np.ones(10)})
    assert weights.variables[3].get_value().tolist() == [1.0] * 10
    assert weights.variables[0].get_value().shape == (784, 32)
    with pytest.raises(gc.ParseError, match=r"values\['b2'\] has shape \(3,\)"):
        parse(dump(mlp_forward()), values={"b2": np.ones(3)})


HEAD = "graph(x:f32[3], i:i32[3]) {"
PARSE_ERRORS = [  # body lines (after HEAD), line number, message pattern
    (["  a:f32[3] = frob x", "  return (a)", "}"], 2, "unknown op 'frob'"),
    (["  a:f32[4] = exp x", "  return (a)", "}"], 2, r"op exp gives type f32\[3\], the text"),
    (["  a:f32[3] = add x i", "  return (a)", "}"], 2, "op add: operands must share one dtype"),
    (["  a:f32[3] = exp y", "  return (a)", "}"], 2, "'y' is not defined"),
    (["  x:f32[3] = exp x", "  return (x)", "}"], 2, "'x' is defined twice"),
    (["  a:q8[3] = exp x", "  return (a)", "}"], 2, "unknown dtype 'q8'"),
    (["  a:f32[3] = exp x x", "  return (a)", "}"], 2, "op exp takes 1 operands, got 2"),
    (["  a:f32[3] = exp[axis=1] x", "  return (a)", "}"], 2, r"takes attributes \[\]"),
    (["  a:f32[3] = cast x", "  return (a)", "}"], 2, r"takes attributes \['dtype'\]"),
    (["  a:f32[3] = exp x;", "  return (a)", "}"], 2, "unexpected character ';'"),
    (["  a:f32[3] = exp x", "}"], 3, r"expected 'return \(...\)' before '\}'"),
    (["  a:f32[3] = exp x", "  return (a)"], 3, r"expected '\}' after the return line"),
    (["  return (x)", "}", "junk"], 4, r"text after the closing '\}'"),
    (["  return (x", "}"], 2, "expected ',', got end of line"),
    (["  a:f32[3] = exp 1.5", "  return (a)", "}"], 2, "expected ':', got end of line"),
    (["  a:f32[3] = exp", "  return (a)", "}"], 2, "op exp takes 1 operands, got 0"),
]


@pytest.mark.parametrize("body,line,pattern", PARSE_ERRORS, ids=lambda p: str(p)[:40])
def test_parse_errors_name_the_line(body, line, pattern):
    text = "\n".join([HEAD, *body])
    with pytest.raises(gc.ParseError) as excinfo:
        parse(text)
    message = str(excinfo.value)
    assert re.search(rf"^line {line}: .*{pattern}", message), message
    assert message.splitlines()[-1].strip() == text.splitlines()[line - 1].strip()


@pytest.mark.parametrize("text,pattern", [
    ("", "empty text"),
    ("graf(x:f32[3]) {", "expected 'graph\\('"),
    ("graph(x:f32[3] const=[1.0]) {\n  return (x)\n}", "has 1 values"),
    ("graph(x:f32[2,a]) {\n  return (x)\n}", "expected a dimension"),
    ("graph(x:f32[3], x:f32[3]) {\n  return (x)\n}", "'x' is defined twice"),
])
def test_parse_header_errors(text, pattern):
    with pytest.raises(gc.ParseError, match=pattern):
        parse(text)


# ---- tree view ----

def test_debugprint_shows_shared_subexpressions_once():
    x = gc.placeholder((3,), name="x")
    shared = gc.exp(x)
    y = shared * 2.0 + shared
    site = y.producer.site
    assert debugprint(y).splitlines() == [
        f"add [id A] f32[3]  # {site}",
        f" ├─ multiply [id B] f32[3]  # {site}",
        f" │  ├─ exp [id C] f32[3]  # {shared.producer.site}",
        " │  │  └─ x [id D] f32[3] placeholder",
        " │  └─ 2.0:f32 [id E] f32[]",
        " └─ exp [id C] ···",
    ]
