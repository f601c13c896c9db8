"""Reduction kernels on the device against the interpreter, at output counts around the 16
outputs a CPU work item owns in a column reduction (codegen/opencl.py _lanes_kernel)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc
from graphc import compiler

pytestmark = pytest.mark.opencl

COUNTS = [1, 15, 16, 17, 100]
ROWS = 37
SPLIT_ROWS = 2048
RNG = np.random.default_rng(6)


def _nan_column_data(shape, dtype) -> np.ndarray:
    """Random values with NaN at a few places (the first, middle and last element)."""
    data = RNG.standard_normal(shape).astype(dtype)
    data.flat[[0, data.size // 2, data.size - 1]] = np.nan
    return data


ALWAYS, NEVER = (lambda n: n > 1), (lambda n: False)

# name: (input shape for n, the reduction, whether the lane form applies on a CPU for n)
CASES = {
    "column_sum": (lambda n: (ROWS, n), lambda x: gc.sum(x, axis=0), ALWAYS),
    "column_sum_epilogue": (lambda n: (ROWS, n),
                            lambda x: gc.exp(gc.sum(x * 0.5, axis=0)) * 2.0 - 1.0, ALWAYS),
    "row_sum": (lambda n: (n, ROWS), lambda x: gc.sum(x, axis=1), NEVER),
    "column_max_nan": (lambda n: (ROWS, n), lambda x: gc.max(x, axis=0), ALWAYS),
    "column_min_nan": (lambda n: (ROWS, n), lambda x: gc.min(x, axis=0), ALWAYS),
    "row_max_nan": (lambda n: (n, ROWS), lambda x: gc.max(x, axis=1), NEVER),
    "column_argmax": (lambda n: (ROWS, n), lambda x: gc.argmax(x, axis=0), ALWAYS),
    "column_argmin": (lambda n: (ROWS, n), lambda x: gc.argmin(x, axis=0), ALWAYS),
    "multi_axis_sum": (lambda n: (3, ROWS, n), lambda x: gc.sum(x, axis=(0, 1)), ALWAYS),
    "multi_axis_max": (lambda n: (3, 5, n), lambda x: gc.max(x, axis=(0, 1)), ALWAYS),
    "sliced_column_sum": (lambda n: (ROWS, n + 3), lambda x: gc.sum(x[2:, 3:], axis=0), ALWAYS),
    "random_column_sum": (lambda n: (ROWS, n),
                          lambda x: gc.sum(x * gc.random.uniform(x.shape, seed=3), axis=0),
                          ALWAYS),
    # rows of 16 outputs: gid % 16 in the loads; of 12: a division in the loop, not worth it
    "middle_axis_sum_16": (lambda n: (n, 5, 16), lambda x: gc.sum(x, axis=1), lambda n: True),
    "middle_axis_sum_12": (lambda n: (n, 5, 12), lambda x: gc.sum(x, axis=1), lambda n: n == 1),
    "middle_axis_max_16": (lambda n: (n, 5, 16), lambda x: gc.max(x, axis=1), lambda n: n == 1),
    # long loops over few outputs: partial results over chunks, then their combination
    "split_column_sum": (lambda n: (SPLIT_ROWS, n), lambda x: gc.sum(x, axis=0), ALWAYS),
    "split_column_max_nan": (lambda n: (SPLIT_ROWS, n), lambda x: gc.max(x, axis=0), ALWAYS),
}


def _uses_lanes(fn) -> bool:
    return re.search(r"acc\[\d+\];", fn.compiled.plan.source) is not None


@pytest.fixture(params=["device", "lanes_forced"])
def lanes_forced(request, monkeypatch) -> bool:
    """The device's own choice, or 16 outputs per work item as on a CPU whatever the device
    (so that Oclgrind, a 'gpu', checks the CPU form too: test_oclgrind.py)."""
    forced = request.param == "lanes_forced"
    if forced:
        monkeypatch.setattr(compiler, "_items_per_work_item", lambda device: 16)
    return forced


@pytest.mark.parametrize("n", COUNTS)
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reduction_matches_interpreter(cl_device, lanes_forced, case, n, dtype):
    if dtype == "float64" and not cl_device.fp64:
        pytest.skip(f"{cl_device.name} has no double")
    shape, reduce, lanes = CASES[case]
    x = gc.placeholder(shape(n), dtype, name="x")
    y = reduce(x)
    fn = gc.function([x], y, device=cl_device, name=case)
    feed = _nan_column_data(shape(n), dtype) if "nan" in case \
        else RNG.standard_normal(shape(n)).astype(dtype)
    for step in range(2):           # the second call draws the next random numbers
        want = gc.interpret(y, {x: feed}, step=step)
        got = fn(feed)
        assert got.dtype == want.dtype and got.shape == want.shape
        summed = np.prod(shape(n)) // max(np.size(want), 1)    # rounding grows with it
        eps = 1e-6 if dtype == "float32" else 1e-14
        np.testing.assert_allclose(got, want, rtol=10 * eps, atol=2 * eps * summed)
    if cl_device.type != "gpu" or lanes_forced:
        assert _uses_lanes(fn) == lanes(n), "the lane form where it pays, only there"


@pytest.mark.parametrize("n", [15, 100])
def test_column_sum_feeding_an_update(cl_device, lanes_forced, n):
    """A bias gradient's column sum with the SGD update fused after it."""
    x = gc.placeholder((ROWS, n), name="x")
    start = RNG.standard_normal(n).astype(np.float32)
    bias = gc.variable(start.copy(), name="bias")
    new = bias - 0.1 * gc.sum(x * 2.0, axis=0)
    fn = gc.function([x], [], updates=[(bias, new)], device=cl_device)
    feed = RNG.standard_normal((ROWS, n)).astype(np.float32)
    fn(feed)
    fn(feed)
    want = start - 2 * 0.1 * (feed * 2.0).sum(axis=0)
    np.testing.assert_allclose(bias.get_value(), want, rtol=1e-5, atol=1e-5)
    assert _uses_lanes(fn) or (cl_device.type == "gpu" and not lanes_forced)
