"""Zero-size work on the device: empty results of the right shape, forward and backward, and
sums over nothing are zeros (before: a batched matmul with batch 0 raised `ValueError:
invalid GemmSpec`, a conv2d with 0 output channels `ZeroDivisionError`)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(0)


def _run(inputs, outputs, device):
    """Device results, checked against the interpreter (shapes, dtypes, values)."""
    feeds = [RNG.standard_normal(p.shape).astype(p.dtype) for p in inputs]
    got = gc.function(inputs, outputs, device=device)(*feeds)
    want = gc.interpret(outputs, dict(zip(inputs, feeds)))
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    return got


@pytest.mark.opencl
def test_batched_matmul_with_batch_0(cl_device):
    a, b = gc.placeholder((0, 3, 4), name="a"), gc.placeholder((0, 4, 5), name="b")
    y = gc.relu(gc.matmul(a, b) + 1.0)
    ga, gb = gc.grad(gc.sum(y), [a, b])
    got = _run([a, b], [y, ga, gb], cl_device)
    assert [g.shape for g in got] == [(0, 3, 5), (0, 3, 4), (0, 4, 5)]


@pytest.mark.opencl
@pytest.mark.parametrize("batch", [(), (2,)])
def test_matmul_over_an_empty_depth_is_zeros(cl_device, batch):
    a = gc.placeholder(batch + (3, 0), name="a")
    b = gc.placeholder(batch + (0, 5), name="b")
    bias = gc.placeholder((5,), name="bias")
    y, with_bias = gc.matmul(a, b), gc.matmul(a, b) + bias
    got = _run([a, b, bias], [y, with_bias], cl_device)
    np.testing.assert_array_equal(got[0], np.zeros(batch + (3, 5), np.float32))


@pytest.mark.opencl
def test_conv2d_with_no_output_channels(cl_device):
    x, w = gc.placeholder((2, 3, 5, 5), name="x"), gc.placeholder((0, 3, 3, 3), name="w")
    b = gc.placeholder((0,), name="b")
    y = gc.conv2d(x, w) + gc.reshape(b, (1, 0, 1, 1))
    gx, gw, gb = gc.grad(gc.sum(y * y), [x, w, b])
    got = _run([x, w, b], [y, gx, gw, gb], cl_device)
    assert [g.shape for g in got] == [(2, 0, 3, 3), (2, 3, 5, 5), (0, 3, 3, 3), (0,)]
    np.testing.assert_array_equal(got[1], np.zeros((2, 3, 5, 5), np.float32))


@pytest.mark.opencl
def test_conv2d_and_pools_over_an_empty_batch(cl_device):
    x, w = gc.placeholder((0, 3, 6, 6), name="x"), gc.placeholder((4, 3, 3, 3), name="w")
    y = gc.conv2d(x, w, padding=1)
    pooled = gc.max_pool2d(y, 2) + gc.avg_pool2d(y, 2)
    gx, gw = gc.grad(gc.sum(pooled), [x, w])
    got = _run([x, w], [y, pooled, gx, gw], cl_device)
    assert [g.shape for g in got] == [(0, 4, 6, 6), (0, 4, 3, 3), (0, 3, 6, 6), (4, 3, 3, 3)]
    np.testing.assert_array_equal(got[3], np.zeros((4, 3, 3, 3), np.float32))


@pytest.mark.opencl
def test_conv2d_with_no_input_channels_is_its_bias(cl_device):
    x, w = gc.placeholder((2, 0, 5, 5), name="x"), gc.placeholder((4, 0, 3, 3), name="w")
    y = gc.conv2d(x, w) + 1.5
    (got,) = _run([x, w], [y], cl_device)
    np.testing.assert_array_equal(got, np.full((2, 4, 3, 3), 1.5, np.float32))


@pytest.mark.opencl
def test_sums_over_an_empty_axis(cl_device):
    x = gc.placeholder((0, 4), name="x")
    outs = [gc.sum(x, axis=0), gc.sum(x), gc.sum(x, axis=1), gc.mean(x, axis=0)]
    got = gc.function([x], outs, device=cl_device)(np.zeros((0, 4), np.float32))
    np.testing.assert_array_equal(got[0], np.zeros(4, np.float32))
    assert got[1] == 0 and got[2].shape == (0,)
    assert np.isnan(got[3]).all() and got[3].shape == (4,)


def test_max_over_an_empty_axis_is_refused_where_it_is_built():
    x = gc.placeholder((0, 4), name="x")
    line = sys._getframe().f_lineno + 2
    with pytest.raises(gc.ShapeError) as error:
        gc.max(x, axis=0)
    assert "reduce_max(f32[0,4])" in str(error.value) and "empty axis 0" in str(error.value)
    assert f"test_degenerate_shapes.py:{line}" in str(error.value)
