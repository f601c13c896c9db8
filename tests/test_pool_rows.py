"""Pools whose windows tile the input exactly run as one work item per row of windows
(codegen/pool_rows.py, templates in codegen/raw.py): max_pool2d, avg_pool2d and avg_pool2d's
gradient against the interpreter over awkward shapes (one window, one-pixel windows, tall
and wide windows, odd sizes, a batch of one), NaN in a max window, float16 and float64; that
the rows kernel is the one that ran (and the loop kernel where windows overlap, leave a rest
or pad); and that a renderer without the template gets the loop kernel."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.built import RawBody
from graphc.codegen.kernel_groups import KernelGroup
from graphc.codegen.pool_rows import build_pool_rows, windows_tile

pytestmark = pytest.mark.opencl

RNG = np.random.default_rng(11)

# (input shape, window): every one tiles its input exactly
TILING = [((2, 3, 6, 8), (2, 2)), ((1, 1, 9, 4), (3, 2)), ((3, 2, 5, 7), (5, 7)),
          ((2, 5, 4, 6), (1, 1)), ((1, 4, 2, 12), (1, 4)), ((4, 1, 12, 3), (4, 1)),
          ((5, 3, 7, 7), (7, 1))]
# (input shape, window, stride, padding): overlapping, a rest left over, or padded
NOT_TILING = [((1, 2, 7, 7), (2, 2), (2, 2), (0, 0)), ((1, 2, 6, 6), (3, 3), (1, 1), (0, 0)),
              ((1, 2, 6, 6), (2, 2), (2, 2), (1, 1))]


def _rows_ops(fn) -> list[str]:
    return [k.body.op for k in fn.compiled.kernels
            if isinstance(k.body, RawBody) and k.body.op.endswith("_rows")]


def _pool(op, x, window, stride=None, padding=0):
    return op(x, window, stride, padding)


@pytest.mark.parametrize("shape, window", TILING, ids=str)
@pytest.mark.parametrize("op", [gc.max_pool2d, gc.avg_pool2d], ids=["max", "avg"])
def test_tiling_pool_runs_as_rows_and_matches_the_interpreter(cl_device, op, shape, window):
    data = RNG.standard_normal(shape).astype(np.float32)
    x = gc.placeholder(shape, gc.float32, name="x")
    y = _pool(op, x, window)
    fn = gc.function([x], y)
    assert _rows_ops(fn) == [f"{y.producer.op}_rows"]
    want = gc.interpret([y], {x: data})[0]
    np.testing.assert_allclose(fn(data), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape, window", TILING, ids=str)
def test_tiling_avg_pool_gradient_runs_as_rows_and_matches(cl_device, shape, window):
    data = RNG.standard_normal(shape).astype(np.float32)
    x = gc.placeholder(shape, gc.float32, name="x")
    y = gc.avg_pool2d(x, window)
    weights = RNG.standard_normal(y.shape).astype(np.float32)
    (dx,) = gc.grad(gc.sum(y * gc.constant(weights)), [x])
    fn = gc.function([x], dx)
    if window != (1, 1):        # a 1 x 1 average is the identity (simplified away)
        assert "avg_pool2d_grad_rows" in _rows_ops(fn)
    want = gc.interpret([dx], {x: data})[0]
    np.testing.assert_allclose(fn(data), want, rtol=1e-6, atol=1e-6)


def test_max_of_a_window_holding_nan_is_nan(cl_device):
    data = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    data[0, 0, 0, 1] = np.nan
    data[0, 1, 3, 3] = np.nan
    data[0, 1, 0, 0] = -np.inf
    x = gc.placeholder(data.shape, gc.float32, name="x")
    fn = gc.function([x], gc.max_pool2d(x, 2))
    got = fn(data)
    want = gc.interpret([gc.max_pool2d(x, 2)], {x: data})[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[0, 0, 0, 0]) and np.isnan(got[0, 1, 1, 1])
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])


@pytest.mark.parametrize("dtype", ["float16", "float64"])
@pytest.mark.parametrize("op", [gc.max_pool2d, gc.avg_pool2d], ids=["max", "avg"])
def test_rows_pool_in_other_dtypes(cl_device, op, dtype):
    if dtype == "float64" and not cl_device.fp64:
        pytest.skip("the device has no float64")
    data = RNG.standard_normal((2, 3, 6, 4)).astype(dtype)
    x = gc.placeholder(data.shape, dtype, name="x")
    y = op(x, 2)
    fn = gc.function([x], y)
    got = fn(data)
    assert got.dtype == np.dtype(dtype) and _rows_ops(fn)
    tolerance = 1e-3 if dtype == "float16" else 1e-12
    np.testing.assert_allclose(got.astype(np.float64),
                               gc.interpret([y], {x: data})[0].astype(np.float64),
                               rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("shape, window, stride, padding", NOT_TILING, ids=str)
@pytest.mark.parametrize("op", [gc.max_pool2d, gc.avg_pool2d], ids=["max", "avg"])
def test_windows_that_do_not_tile_keep_the_loop_kernel(cl_device, op, shape, window, stride,
                                                        padding):
    data = RNG.standard_normal(shape).astype(np.float32)
    x = gc.placeholder(shape, gc.float32, name="x")
    y = op(x, window, stride, padding)
    assert not windows_tile(shape, y.shape, y.producer.attrs)
    fn = gc.function([x], y)
    assert _rows_ops(fn) == []
    np.testing.assert_allclose(fn(data), gc.interpret([y], {x: data})[0], rtol=1e-6, atol=1e-6)


def test_a_renderer_without_the_template_gets_the_loop_kernel():
    x = gc.placeholder((1, 2, 4, 4), gc.float32, name="x")
    y = gc.max_pool2d(x, 2)
    group = KernelGroup("loop", y, (y,))
    buffers = {x: "x", y: "y"}
    nbytes = {"x": 128, "y": 32}
    assert build_pool_rows(group, buffers, nbytes, frozenset()) is None
    built = build_pool_rows(group, buffers, nbytes, frozenset({"max_pool2d_rows"}))
    assert built is not None and built.args == ("x", "y") and built.work_items == 1 * 2 * 2
    relu = gc.max_pool2d(gc.relu(x), 2)     # an operand computed inline: no buffer to read
    assert build_pool_rows(KernelGroup("loop", relu, (relu,)), {x: "x", relu: "y"}, nbytes,
                           frozenset({"max_pool2d_rows"})) is None
