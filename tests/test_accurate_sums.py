"""Long float32 sums and means on the device stay within 1e-6 of a float64 sum, in every form
a reduction kernel takes (codegen/loops.py: blocks added with compensation), and integer
means are exact where their sum fits in int64.

Before: the sum of 10^7 x 0.1 was off by 3.9e-4 (sequential float32 accumulation), the mean
of 10^5 int32 values of 50,000 was 49,999.914."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

pytestmark = pytest.mark.opencl

RNG = np.random.default_rng(12)
N = 10**7

# name: (input shape, axis): each about 10^7 elements
FORMS = {
    "split_full_sum": ((N,), None),                   # partial sums, then their sum
    "row_sums": ((256, 40_000), 1),                   # one loop per output
    "column_sums": ((40_000, 256), 0),                # 16 outputs per work item on a CPU
    "split_row_sums": ((16, 1 << 19), 1),             # few long rows: split too
    "middle_axis": ((40, 2_500, 100), (0, 1)),        # a loop over two dimensions
}


def _relative_errors(got, data: np.ndarray, axis, mean: bool) -> float:
    want = data.astype(np.float64).sum(axis=axis)
    if mean:
        want = want / (data.size / np.size(want))
    return float(np.max(np.abs(np.asarray(got, np.float64) - want) / np.abs(want)))


@pytest.mark.parametrize("values", ["tenths", "uniform"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_float32_sums_and_means_within_1e_6_of_float64(cl_device, form, values):
    shape, axis = FORMS[form]
    data = np.full(shape, 0.1, np.float32) if values == "tenths" \
        else RNG.uniform(0.5, 1.5, shape).astype(np.float32)
    x = gc.placeholder(shape, gc.float32, name="x")
    fn = gc.function([x], [gc.sum(x, axis=axis), gc.mean(x, axis=axis)], device=cl_device)
    total, mean = fn(data)
    assert _relative_errors(total, data, axis, False) <= 1e-6
    assert _relative_errors(mean, data, axis, True) <= 1e-6


def test_merged_reductions_are_accurate_too(cl_device):
    """Long sums that horizontal fusion runs as one launch (their partial sums, then their
    combinations)."""
    a = gc.placeholder((1 << 22,), gc.float32, name="a")
    b = gc.placeholder((8, 1 << 20), gc.float32, name="b")
    fn = gc.function([a, b], [gc.sum(a), gc.mean(b, axis=1)], device=cl_device)
    assert any(k.members for k in fn.compiled.kernels), fn.dump()
    da, db = np.full(a.shape, 0.1, np.float32), np.full(b.shape, 0.3, np.float32)
    total, means = fn(da, db)
    assert _relative_errors(total, da, None, False) <= 1e-6
    assert _relative_errors(means, db, 1, True) <= 1e-6


def test_integer_means_are_exact(cl_device):
    x = gc.placeholder((100_000,), gc.int32, name="x")
    big = gc.placeholder((3, 100_000), gc.int32, name="big")
    fn = gc.function([x, big], [gc.mean(x), gc.mean(big, axis=1)], device=cl_device)
    values = RNG.integers(-2**30, 2**30, (3, 100_000)).astype(np.int32)
    mean, means = fn(np.full(100_000, 50_000, np.int32), values)
    assert mean.dtype == np.float32 and float(mean) == 50_000.0
    np.testing.assert_array_equal(means, values.astype(np.int64).sum(axis=1).astype(np.float32)
                                  / np.float32(100_000))


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("axis", [None, 0])
def test_compensated_sums_keep_infinities_and_nans(cl_device, axis, mixed):
    x = gc.placeholder((1000, 20), gc.float32, name="x")
    fn = gc.function([x], [gc.sum(x, axis=axis)], device=cl_device)
    data = RNG.uniform(-1, 1, (1000, 20)).astype(np.float32)
    data[5, :] = np.inf
    data[3, 3] = 3e38                       # the finite sum overflows to inf
    data[4, 3] = 3e38
    if mixed:
        data[600, 1] = -np.inf
        data[700, 2] = np.nan
    with np.errstate(over="ignore", invalid="ignore"):
        want = data.sum(axis=axis)
    (got,) = fn(data)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_array_equal(np.sign(got[np.isinf(got)]), np.sign(want[np.isinf(want)]))
