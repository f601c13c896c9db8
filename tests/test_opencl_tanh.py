"""tanh on OpenCL devices: the renderer's helper (kernels_cl/tanh.cl) instead of the built-in
scalar call, as exact as the built-in up to a few ulp, with tanh's special values."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

ULP32 = 2.0 ** -23


def _tanh_on_device(values: np.ndarray, device):
    x = gc.placeholder(values.shape, values.dtype, name="x")
    f = gc.function([x], gc.tanh(x), device=device)
    return f(values), f.compiled.plan.source


def _float32_values() -> np.ndarray:
    tiny = np.float32(10.0) ** -np.arange(0, 38, dtype=np.float32)
    around = np.linspace(-1.0, 1.0, 20001, dtype=np.float32)    # both sides of 0.25
    wide = np.linspace(-12.0, 12.0, 4001, dtype=np.float32)
    edges = np.float32([0.25, -0.25, np.nextafter(np.float32(0.25), np.float32(0)), 9.0, 9.1,
                        40.0, -40.0, 1e30, -1e30])
    return np.concatenate([tiny, -tiny, around, wide, edges]).astype(np.float32)


@pytest.mark.opencl
def test_float32_tanh_is_the_vectorizing_helper_within_3_ulp(cl_device):
    values = _float32_values()
    got, source = _tanh_on_device(values, cl_device)
    assert "graphc_tanh_float(" in source
    want = np.tanh(values.astype(np.float64))
    error = np.abs(got - want) / np.maximum(np.abs(want), np.finfo(np.float32).tiny)
    assert error.max() <= 3 * ULP32, values[np.argmax(error)]


@pytest.mark.opencl
def test_float32_tanh_keeps_the_special_values(cl_device):
    values = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45])
    got, _ = _tanh_on_device(values, cl_device)
    np.testing.assert_array_equal(got[:4], np.float32([0.0, -0.0, 1.0, -1.0]))
    assert np.signbit(got[1]) and not np.signbit(got[0])
    assert np.isnan(got[4])
    np.testing.assert_array_equal(got[5:], values[5:])


@pytest.mark.opencl
def test_float64_tanh_keeps_the_built_in(cl_device):
    if not cl_device.fp64:
        pytest.skip("no float64 on this device")
    values = np.linspace(-5.0, 5.0, 1001)
    got, source = _tanh_on_device(values, cl_device)
    assert "graphc_tanh_double(" in source and "#define GRAPHC_TANH_DOUBLE" in source
    np.testing.assert_allclose(got, np.tanh(values), rtol=1e-15, atol=0)
