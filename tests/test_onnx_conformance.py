"""A sample of ONNX's own node test cases through graphc.onnx.backend: every case of a few
of the core ops on the device, and at least one passing case of every op that has a
converter on the interpreter. The full set with its pass rate is `make onnx-conformance`."""
from __future__ import annotations

import pytest

pytest.importorskip("onnx")

from graphc.onnx import conformance  # noqa: E402
from graphc.onnx.registry import CONVERTERS  # noqa: E402

DEVICE_SAMPLE = [   # the ops torch's CNN, RNN and transformer exports use, a case or two each
    "test_conv_with_strides_and_asymmetric_padding", "test_basic_conv_with_padding",
    "test_batchnorm_example", "test_maxpool_2d_pads", "test_averagepool_2d_pads",
    "test_globalaveragepool", "test_gemm_all_attributes", "test_matmul_3d",
    "test_lstm_with_initial_bias", "test_gru_with_initial_bias", "test_rnn_seq_length",
    "test_layer_normalization_3d_axis_negative_3_epsilon", "test_softmax_axis_1", "test_erf",
    "test_gelu_tanh_2", "test_gather_1", "test_slice_neg_steps", "test_reshape_negative_dim",
    "test_transpose_all_permutations_3", "test_concat_2d_axis_1", "test_split_equal_parts_1d_opset18",
    "test_reduce_mean_keepdims_example", "test_where_example", "test_cast_FLOAT_to_INT4",
    "test_constant_pad", "test_expand_dim_changed", "test_attention_3d",
    "test_resize_upsample_scales_linear", "test_sce_mean_weight",
    "test_if", "test_loop11", "test_scan9_sum", "test_gridsample_bicubic",
    "test_maxpool_3d_dilations", "test_rotary_embedding", "test_batchnorm_example_training_mode",
    "test_maxpool_with_argmax_2d_precomputed_strides", "test_swiglu",
]


@pytest.fixture(scope="module")
def cases():
    return {c["name"]: c for c in conformance.collect()}


@pytest.mark.opencl
@pytest.mark.parametrize("name", DEVICE_SAMPLE)
def test_a_core_op_case_passes_on_the_device(cases, name, cl_device):
    status, detail = conformance.run_case(cases[name], "device")
    assert status == "pass", f"{name}: {status}: {detail}"


def test_every_converted_op_passes_a_case_on_the_interpreter(cases):
    by_op: dict[str, list] = {}
    for case in cases.values():
        by_op.setdefault(case["op"], []).append(case)
    failing = []
    for op in sorted(set(CONVERTERS) & set(by_op)):
        results = [conformance.run_case(c, "interpret") for c in by_op[op][:6]]
        if not any(status == "pass" for status, _ in results):
            failing.append(f"{op}: {results[0]}")
    assert not failing, "\n".join(failing)
