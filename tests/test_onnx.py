"""graphc.onnx: loading, refusing what it cannot run, binding shapes, folding, the backend,
and a sample of ONNX's own node test cases (the full set: `make onnx-conformance`)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphc as gc  # noqa: E402
import graphc.onnx  # noqa: E402
from graphc.onnx import OnnxImportError, UnsupportedError  # noqa: E402
from graphc.onnx.registry import CONVERTERS  # noqa: E402

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _info(name, dims, elem=F):
    return helper.make_tensor_value_info(name, elem, dims)


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _ops(model) -> list[str]:
    return [n.op for n in gc.Graph.from_outputs(model.outputs).nodes]


# ---- refusals at load time ----

def test_an_unsupported_op_is_refused_at_load_naming_op_node_and_opset():
    model = _model([helper.make_node("TopK", ["x", "k"], ["v", "i"], name="top_scores")],
                   [_info("x", [3, 4]), _info("k", [1], TensorProto.INT64)],
                   [_info("v", [3, 2]), _info("i", [3, 2], TensorProto.INT64)], opset=17)
    with pytest.raises(UnsupportedError, match=r"TopK node 'top_scores' \(opset 17\)"):
        graphc.onnx.load(model)


def test_an_unsupported_attribute_is_refused_at_load():
    node = helper.make_node("Cast", ["x"], ["y"], name="to_half", to=TensorProto.FLOAT16,
                            round_mode="up")
    model = _model([node], [_info("x", [2])], [_info("y", [2], TensorProto.FLOAT16)],
                   opset=25)
    with pytest.raises(UnsupportedError,
                       match=r"Cast node 'to_half' \(opset 25\): attribute round_mode"):
        graphc.onnx.load(model)


def test_an_unsupported_attribute_value_is_refused_before_anything_runs():
    node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], name="cell", hidden_size=2,
                            input_forget=1)
    params = [_init("w", np.ones((1, 8, 3), np.float32)), _init("r", np.ones((1, 8, 2),
                                                                                np.float32))]
    model = _model([node], [_info("x", [4, 1, 3])], [_info("y", [4, 1, 1, 2])], params)
    with pytest.raises(UnsupportedError,
                       match=r"LSTM node 'cell' \(opset 17\): input_forget=1"):
        graphc.onnx.load(model)


def test_an_unsupported_dtype_is_refused_naming_the_input():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = _model([node], [_info("x", [2], TensorProto.UINT64)],
                   [_info("y", [2], TensorProto.UINT64)])
    with pytest.raises(UnsupportedError, match=r"input 'x'.*UINT64"):
        graphc.onnx.load(model)


def test_another_domain_and_a_newer_opset_are_refused():
    node = helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", name="enc")
    graph = helper.make_graph([node], "g", [_info("x", [2])], [_info("y", [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    with pytest.raises(UnsupportedError, match="ai.onnx.ml.LabelEncoder node 'enc'.*domain"):
        graphc.onnx.load(model)
    newest = onnx.defs.onnx_opset_version()
    relu = _model([helper.make_node("Relu", ["x"], ["y"])], [_info("x", [2])],
                  [_info("y", [2])], opset=newest + 1)
    with pytest.raises(UnsupportedError, match=f"opset {newest + 1}"):
        graphc.onnx.load(relu)


def test_a_file_that_is_no_model_is_an_import_error(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x00not a protobuf\xff" * 3)
    with pytest.raises(OnnxImportError, match="broken.onnx"):
        graphc.onnx.load(path)


def test_point_three_ops_all_have_converters():
    wanted = {"Conv", "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool",
              "Gemm", "MatMul", "LSTM", "GRU", "RNN", "LayerNormalization", "Softmax", "Erf",
              "Gelu", "Gather", "Slice", "Reshape", "Transpose", "Concat", "Split",
              "ReduceMean", "ReduceSum", "ReduceMax", "Where", "Cast", "Pad", "Expand",
              "Shape", "Constant", "ConstantOfShape", "Unsqueeze", "Squeeze", "Flatten"}
    assert not wanted - set(CONVERTERS), sorted(wanted - set(CONVERTERS))


# ---- shapes, folding, variables ----

def _dense(symbolic="N"):
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Relu", ["h"], ["y"])]
    return _model(nodes, [_info("x", [symbolic, 4])], [_info("y", [symbolic, 3])],
                  [_init("w", w)]), w


def test_a_symbolic_dim_binds_from_the_first_call_and_a_new_one_respecializes(cl_device):
    proto, w = _dense()
    model = graphc.onnx.load(proto, device=cl_device)
    with pytest.raises(gc.GraphcError, match="not specialized yet"):
        model.inputs
    x2 = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    x5 = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(model(x2)[0], np.maximum(x2 @ w, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(x5)[0], np.maximum(x5 @ w, 0), rtol=1e-5, atol=1e-6)
    assert model.inputs[0].shape == (5, 4) and len(model.specializations) == 2


def test_input_shapes_bind_symbolic_dims_and_are_checked_against_static_ones():
    proto, _ = _dense()
    model = graphc.onnx.load(proto, input_shapes={"x": (7, 4)})
    assert model.inputs[0].shape == (7, 4) and model.outputs[0].shape == (7, 3)
    with pytest.raises(gc.FeedError, match=r"input 'x' has size 4 on axis 1"):
        graphc.onnx.load(proto, input_shapes={"x": (7, 5)})
    with pytest.raises(gc.FeedError, match="input_shapes names"):
        graphc.onnx.load(proto, input_shapes={"y": (7, 4)})


def test_one_dim_name_takes_one_value_across_inputs():
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    proto = _model(nodes, [_info("a", ["N", 2]), _info("b", ["N", 2])], [_info("y", ["N", 2])])
    model = graphc.onnx.load(proto)
    with pytest.raises(gc.FeedError, match="dim 'N' is 3 in input 'a' but 4 in input 'b'"):
        model.run({"a": np.zeros((3, 2), np.float32), "b": np.zeros((4, 2), np.float32)},
                  mode="interpret")


def test_float_initializers_are_variables_and_integer_ones_constants():
    proto, w = _dense()
    model = graphc.onnx.load(proto, input_shapes={"x": (2, 4)})
    assert set(model.variables) == {"w"}
    np.testing.assert_array_equal(model.variables["w"].get_value(), w)
    assert _ops(model) == ["matmul", "relu"]
    nodes = [helper.make_node("Gather", ["table", "i"], ["y"])]
    gather = _model(nodes, [_info("i", [2], TensorProto.INT64)], [_info("y", [2])],
                    [_init("table", np.array([1.0, 2.0, 3.0], np.float32))])
    assert set(graphc.onnx.load(gather).variables) == {"table"}


def test_shape_arithmetic_folds_at_import():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as exporters write a flatten:
    only the reshape reaches the graph."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Constant", [], ["zero"], value=_init("z", np.array(0))),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Constant", [], ["axes"], value=_init("a", np.array([0]))),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Constant", [], ["rest"], value=_init("r", np.array([-1]))),
             helper.make_node("Concat", ["n1", "rest"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    proto = _model(nodes, [_info("x", ["N", 2, 3])], [_info("y", ["N", 6])])
    model = graphc.onnx.load(proto, input_shapes={"x": (4, 2, 3)})
    assert _ops(model) == ["reshape"] and model.outputs[0].shape == (4, 6)


def test_a_shape_given_as_graph_input_is_bound_by_value(cl_device):
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    proto = _model(nodes, [_info("x", [2, 6]), _info("shape", [2], TensorProto.INT64)],
                   [_info("y", [None, None])])
    model = graphc.onnx.load(proto, device=cl_device)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    assert model(x, np.array([3, 4]))[0].shape == (3, 4)
    assert model(x, np.array([4, 3]))[0].shape == (4, 3)
    assert model.by_value == {"shape"} and len(model.specializations) == 2


def test_an_identity_of_a_weight_is_a_weight_of_its_own():
    """torch's exporter names equal initializers once, the duplicates through Identity;
    fine-tuning must not tie them."""
    nodes = [helper.make_node("Identity", ["w"], ["w_copy"]),
             helper.make_node("Mul", ["x", "w"], ["a"]),
             helper.make_node("Add", ["a", "w_copy"], ["y"])]
    proto = _model(nodes, [_info("x", [2])], [_info("y", [2])],
                   [_init("w", np.ones(2, np.float32))])
    model = graphc.onnx.load(proto)
    assert set(model.variables) == {"w", "w_copy"}
    assert model.variables["w"] is not model.variables["w_copy"]


def test_storage_only_types_round_when_they_leave_the_model():
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    bf16 = TensorProto.BFLOAT16
    proto = _model(nodes, [_info("a", [3], bf16), _info("b", [3], bf16)], [_info("y", [3], bf16)])
    import ml_dtypes
    a = np.array([1.0, 2.5, 300.0], ml_dtypes.bfloat16)
    b = np.array([0.00390625, 1.0, 1.0], ml_dtypes.bfloat16)
    (y,) = graphc.onnx.load(proto).run({"a": a, "b": b}, mode="interpret")
    assert y.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(y.astype(np.float32), (a.astype(np.float32) +
                                                         b.astype(np.float32)).astype(
        ml_dtypes.bfloat16).astype(np.float32))
    inner = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT8E4M3FN),
             helper.make_node("Cast", ["h"], ["y"], to=F)]
    proto = _model(inner, [_info("x", [2])], [_info("y", [2])], opset=19)
    with pytest.raises(UnsupportedError, match="cast to FLOAT8E4M3FN that is not a graph output"):
        graphc.onnx.load(proto)


def test_an_op_onnx_defines_as_a_function_is_imported_through_its_body():
    """SwiGLU has no converter: its function body (Swish of A times B, alpha passed on)
    is converted."""
    from onnx.reference import ReferenceEvaluator
    assert "SwiGLU" not in CONVERTERS
    node = helper.make_node("SwiGLU", ["a", "b"], ["y"], name="glu", alpha=1.5)
    proto = _model([node], [_info("a", [2, 3]), _info("b", [2, 3])], [_info("y", [2, 3])],
                   opset=28)
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal((2, 3)).astype(np.float32) for n in "ab"}
    (y,) = graphc.onnx.load(proto).run(feeds, mode="interpret")
    np.testing.assert_allclose(y, ReferenceEvaluator(proto).run(None, feeds)[0],
                               rtol=1e-5, atol=1e-6)
    bernoulli = _model([helper.make_node("Bernoulli", ["x"], ["y"], name="coin")],
                       [_info("x", [3])], [_info("y", [3])], opset=22)
    with pytest.raises(UnsupportedError, match="Bernoulli node 'coin'.*function.*Random"):
        graphc.onnx.load(bernoulli)


# ---- the backend ----

def test_the_backend_prepares_runs_and_names_its_devices(cl_device):
    import graphc.onnx.backend as backend
    proto, w = _dense()
    x = np.ones((3, 4), np.float32)
    out = backend.prepare(proto, "CPU").run([x])
    np.testing.assert_allclose(out[0], np.maximum(x @ w, 0), rtol=1e-5)
    np.testing.assert_allclose(out.y, out[0])
    assert backend.supports_device("CPU") and not backend.supports_device("CUDA")
    node = helper.make_node("Relu", ["x"], ["y"])
    (y,) = backend.run_node(node, [np.array([-1.0, 2.0], np.float32)])
    np.testing.assert_array_equal(y, [0.0, 2.0])
    topk = _model([helper.make_node("NonZero", ["x"], ["y"])], [_info("x", [3])],
                  [_info("y", [1, None], TensorProto.INT64)])
    assert not backend.is_compatible(topk)
