"""Convolutions as implicit GEMMs (codegen/conv_gemm.py): values and gradients against
gc.interpret over awkward shapes, on both GEMM variants (CPU and GPU) of the device.

test_oclgrind.py runs this file again under Oclgrind (GRAPHC_TEST_TINY: the small cases)."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

import graphc as gc
from graphc import compiler
import graphc.codegen.conv_gemm as conv_gemm
import graphc.codegen.gemm as gemm

TINY = os.environ.get("GRAPHC_TEST_TINY", "") not in ("", "0")

# (x shape, w shape, conv2d keyword arguments, dtype)
CASES = [
    ((1, 1, 7, 7), (3, 1, 3, 3), {}, np.float32),
    ((2, 3, 11, 13), (5, 3, 3, 2), dict(stride=2, padding=1), np.float32),
    ((3, 4, 9, 7), (6, 2, 3, 3), dict(padding=(2, 1), dilation=2, groups=2), np.float32),
    ((1, 6, 6, 5), (6, 1, 3, 3), dict(padding=1, groups=6), np.float64),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=(2, 1), padding=1), np.float64),
    ((2, 4, 13, 11), (6, 2, 3, 2), dict(stride=(3, 2), padding=(1, 2), dilation=(2, 1),
                                        groups=2), np.float32),
    ((2, 5, 17, 19), (7, 5, 5, 5), dict(padding=2), np.float32),
    ((5, 2, 33, 31), (3, 2, 1, 1), {}, np.float32),
    ((2, 37, 5, 5), (41, 37, 2, 2), dict(dilation=(1, 2)), np.float64),
    ((3, 1, 28, 28), (6, 1, 5, 5), {}, np.float32),          # LeNet's first layer
    ((2, 6, 12, 12), (16, 6, 5, 5), {}, np.float32),         # LeNet's second layer
    # input gradients along rows padded to 16 pixels (12 -> 16, 15 -> 16), or not (16)
    ((2, 4, 12, 12), (6, 2, 5, 3), dict(padding=(1, 2), dilation=(1, 2), groups=2),
     np.float64),
    ((2, 6, 5, 15), (4, 6, 3, 3), dict(padding=1), np.float32),
    ((1, 2, 5, 16), (3, 2, 2, 3), dict(padding=(0, 1)), np.float64),
    ((1, 3, 5, 16), (2, 3, 1, 1), {}, np.float32),     # vectors of columns past the last
    # weight gradients copying runs of 8 pixels as 4 x 4 blocks
    ((2, 4, 9, 11), (6, 2, 2, 4), dict(dilation=(2, 1), groups=2), np.float64),
    ((2, 3, 11, 10), (4, 3, 3, 3), dict(stride=(2, 1)), np.float32),
    # forward convolutions loading runs of 4 output columns (rows of 8 and 12 pixels)
    ((2, 4, 10, 11), (6, 2, 3, 4), dict(stride=(2, 1), dilation=(1, 1), groups=2),
     np.float64),
    ((1, 3, 7, 16), (5, 3, 2, 5), dict(dilation=(2, 1)), np.float32),
    # forward convolutions along output rows padded to 16 or 32 columns (28 -> 32, 14 -> 16,
    # 13 -> 16), their windows past the image's width masked
    ((1, 1, 12, 28), (6, 1, 5, 5), dict(padding=2), np.float32),
    ((1, 4, 7, 14), (6, 2, 3, 3), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2),
                                        groups=2), np.float64),
    ((1, 3, 9, 13), (4, 3, 2, 3), dict(padding=(0, 1)), np.float32),
    # forward convolutions loading pairs of output columns (rows of 10 and 6 pixels)
    ((2, 6, 14, 14), (16, 6, 5, 5), {}, np.float32),      # LeNet-5's second layer
    ((2, 2, 5, 8), (3, 2, 2, 3), dict(stride=(2, 1)), np.float64),
]
SMALL = 2000        # x elements of the cases Oclgrind runs
# Every compiled function stays alive: Oclgrind's uninitialized-value check misreads device
# memory at the address of a freed buffer (it flags a later buffer's bytes past the freed
# one's size, for loop kernels as much as GEMMs).
KEPT: list = []


def cases():
    return [c for c in CASES if not TINY or np.prod(c[0]) <= SMALL]


def conv_step(x_shape, w_shape, kwargs, dtype):
    """(function, feeds, outputs, placeholders): relu(conv2d + bias) and both gradients."""
    rng = np.random.default_rng(1)
    x = gc.placeholder(x_shape, dtype, name="x")
    w = gc.placeholder(w_shape, dtype, name="w")
    b = gc.placeholder((w_shape[0],), dtype, name="b")
    y = gc.relu(gc.conv2d(x, w, **kwargs) + gc.reshape(b, (1, -1, 1, 1)))
    g = gc.placeholder(y.shape, dtype, name="g")
    dx, dw = gc.grad(gc.sum(y * g), [x, w])
    feeds = {p: rng.standard_normal(p.shape).astype(dtype) for p in (x, w, b, g)}
    step = gc.function(list(feeds), [y, dx, dw])
    KEPT.append(step)
    return step, feeds, [y, dx, dw]


def gemm_variant(monkeypatch, kind: str | None, **overrides) -> None:
    """Make the compiler generate GEMMs for `kind` ('cpu' or 'gpu') on the test device, as
    if the device had `overrides` (DeviceInfo fields)."""
    if kind is not None:
        overrides["type"] = kind
    real = gemm.device_info_from
    monkeypatch.setattr(compiler, "device_info_from",
                        lambda device: dataclasses.replace(real(device), **overrides))


def made_as_gemms(step) -> dict[str, bool]:
    """For each convolution kernel's prefix: is it a GEMM with a gathered operand?"""
    source = step.compiled.plan.source
    return {k.name.split("_")[0]: f"{k.name}_b_row(" in source
            for k in step.compiled.plan.launches if k.name.startswith("CONV")}


@pytest.mark.opencl
@pytest.mark.parametrize("kind", [None, "cpu", "gpu"])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, dtype", cases())
def test_conv_gemm_matches_the_interpreter(cl_device, monkeypatch, kind, x_shape, w_shape,
                                          kwargs, dtype):
    if dtype == np.float64 and not cl_device.fp64:
        pytest.skip("no float64 on this device")
    gemm_variant(monkeypatch, kind)
    step, feeds, outs = conv_step(x_shape, w_shape, kwargs, dtype)
    got = step(*feeds.values())
    want = gc.interpret(outs, feeds)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for name, a, b in zip(("y", "dx", "dw"), got, want):
        scale = np.abs(b).max() + 1.0
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale * 10, err_msg=name)


@pytest.mark.opencl
@pytest.mark.parametrize("kind", ["cpu", "gpu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_gradient_split_over_the_images_sums_its_parts(cl_device, monkeypatch, kind,
                                                              dtype):
    if dtype == np.float64 and not cl_device.fp64:
        pytest.skip("no float64 on this device")
    gemm_variant(monkeypatch, kind, compute_units=64)
    monkeypatch.setattr(conv_gemm, "SPLIT_MIN_DEPTH", 16)
    # the second: no padding, rows of 8 pixels (4 x 4 blocks in each part)
    for x_shape, padding, label in (((6, 2, 7, 6), (1, 0), "PCONVDW_3_2_3_3_6_7_4_6_"),
                                    ((6, 2, 7, 10), 0, "PCONVDW_3_2_3_3_6_5_8_6_")):
        step, feeds, outs = conv_step(x_shape, (3, 2, 3, 3), dict(padding=padding), dtype)
        names = [k.name for k in step.compiled.plan.launches]
        assert any(name.startswith(label) for name in names), names
        got, want = step(*feeds.values())[2], gc.interpret(outs, feeds)[2]
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * (np.abs(want).max() + 1) * 10)


@pytest.mark.opencl
@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_convolutions_and_their_gradients_run_as_gemms(cl_device, monkeypatch, kind):
    gemm_variant(monkeypatch, kind)
    for kwargs in (dict(padding=1, groups=3), dict(stride=(2, 3), padding=1, dilation=2, groups=3)):
        step, _, _ = conv_step((2, 3, 8, 8), (6, 1, 3, 3), kwargs, np.float32)
        assert made_as_gemms(step) == {"CONV": True, "CONVDX": True, "CONVDW": True}, kwargs
        tiles = {k.local_size for k in step.compiled.plan.launches if k.name.startswith("CONV")}
        assert tiles == ({(1, 1, 1)} if kind == "cpu" else {(16, 16, 1)})
