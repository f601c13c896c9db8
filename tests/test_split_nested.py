"""A long reduction with few outputs is split in two kernels (codegen/build.py split_factor);
a split of the loop's outer dimension is preferred when it has at least half the chunks of the
best split, so that each chunk runs the inner dimensions as nested loops (a bias gradient over
(N, H, W): no division per element). Against the interpreter, and the split chosen."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.build import split_factor

RNG = np.random.default_rng(21)


def test_split_factor_prefers_the_outer_dimension():
    assert split_factor(6, 64 * 24 * 24, "sum") == 36            # flat: the best divisor
    assert split_factor(6, 64 * 24 * 24, "sum", 64) == 32        # 32 of 64 images per chunk
    assert split_factor(6, 7 * 24 * 24, "sum", 7) == 7            # 7 of the best 14 chunks
    assert split_factor(6, 3 * 32 * 32, "sum", 3) == 12          # 3 is under half of 12
    assert split_factor(6, 64 * 24 * 24, "sum", 64) * 6 >= 128
    assert split_factor(300, 64 * 24 * 24, "sum", 64) == 1       # enough outputs already


@pytest.mark.opencl
@pytest.mark.parametrize("shape", [(64, 6, 24, 24), (20, 3, 13, 17), (7, 2, 25, 24)], ids=str)
def test_bias_gradient_split_over_images_matches_the_interpreter(cl_device, shape):
    data = RNG.standard_normal(shape).astype(np.float32)
    x = gc.placeholder(shape, gc.float32, name="x")
    total = gc.sum(x, axis=(0, 2, 3))
    fn = gc.function([x], total)
    np.testing.assert_allclose(fn(data), gc.interpret([total], {x: data})[0], rtol=1e-5,
                               atol=1e-4)
    np.testing.assert_allclose(fn(data), data.astype(np.float64).sum(axis=(0, 2, 3)),
                               rtol=1e-5, atol=1e-4)
