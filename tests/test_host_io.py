"""The host path of a call: zero-copy feeds on unified-memory devices, the step timing."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import Executable, aligned_empty
from graphc.runtime.host_io import address_alignment, is_aligned

from test_runtime import vadd_plan


def aligned_copy(array: np.ndarray) -> np.ndarray:
    """`array`'s values in a page-aligned array (what takes the zero-copy path)."""
    out = aligned_empty(array.shape, array.dtype)
    out[...] = array
    return out


def unaligned_copy(array: np.ndarray, alignment: int) -> np.ndarray:
    """`array`'s values in an array starting 4 bytes past an aligned address."""
    raw = aligned_empty((array.size + 1,), array.dtype)
    out = raw[1:].reshape(array.shape)
    out[...] = array
    assert not is_aligned(out, alignment)
    return out


def test_aligned_empty_is_aligned_and_sized():
    for shape, dtype in [((3, 5), np.float32), ((), np.float64), ((0,), np.int32),
                         ((7,), np.float16)]:
        array = aligned_empty(shape, dtype)
        assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous
        assert array.size == 0 or is_aligned(array, 4096)


@pytest.mark.opencl
def test_aligned_feeds_are_read_in_place_and_unaligned_ones_copied(cl_device):
    if not cl_device.unified_memory:
        pytest.skip("the device does not share the host's memory")
    n = 1000
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, n)).astype(np.float32)
    executable = Executable(cl_device, vadd_plan(n))
    alignment = address_alignment(cl_device)
    xa, ya = aligned_copy(x), aligned_copy(y)
    xu = unaligned_copy(x, alignment)
    # in place, copied, in place again: the kernels' arguments follow each call's feed
    yu = unaligned_copy(y + 1, alignment)     # (y + 1 itself may be aligned by chance)
    for fx, fy in [(xa, ya), (xu, yu), (xa, ya), (xu, ya)]:
        (z,) = executable.run([fx, fy])
        np.testing.assert_array_equal(z, fx + fy)
    assert executable.in_place_feeds == {"x": 2, "y": 3}
    np.testing.assert_array_equal(xa, x)        # inputs are only read


@pytest.mark.opencl
def test_an_array_changed_between_calls_is_read_afresh(cl_device):
    n = 64
    x = aligned_copy(np.arange(n, dtype=np.float32))
    one = aligned_copy(np.ones(n, np.float32))
    executable = Executable(cl_device, vadd_plan(n))
    (first,) = executable.run([x, one])
    x *= 3          # the same array object, new values: no wrapper from the last call
    (second,) = executable.run([x, one])
    np.testing.assert_array_equal(first, np.arange(n) + 1)
    np.testing.assert_array_equal(second, 3 * np.arange(n) + 1)


@pytest.mark.opencl
def test_a_read_only_aligned_feed_still_gives_the_right_answer(cl_device):
    n = 256
    x = aligned_copy(np.linspace(-1, 1, n, dtype=np.float32))
    x.setflags(write=False)
    (z,) = Executable(cl_device, vadd_plan(n)).run([x, x])
    np.testing.assert_array_equal(z, 2 * x)


@pytest.mark.opencl
def test_a_training_step_leaves_its_fed_arrays_untouched(cl_device):
    rng = np.random.default_rng(1)
    xv = aligned_copy(rng.standard_normal((16, 8)).astype(np.float32))
    yv = aligned_copy(rng.integers(0, 3, 16).astype(np.int32))
    x = gc.placeholder((16, 8), gc.float32, name="x")
    y = gc.placeholder((16,), gc.int32, name="y")
    w = gc.variable(rng.standard_normal((8, 3)).astype(np.float32), name="w")
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, x @ w, from_logits=True))
    step = gc.function([x, y], [loss, x * 1], updates=[(w, w - 0.5 * gc.grad(loss, w))],
                       device=cl_device)
    w0 = w.get_value()
    expected = gc.interpret([loss], {x: xv, y: yv})[0]
    before_x, before_y = xv.copy(), yv.copy()
    got, x_again = step(xv, yv)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_array_equal(x_again, before_x)
    np.testing.assert_array_equal(xv, before_x)
    np.testing.assert_array_equal(yv, before_y)
    assert not np.array_equal(w.get_value(), w0)


@pytest.mark.opencl
def test_a_function_returning_its_input_returns_the_fed_values(cl_device):
    x = gc.placeholder((5,), gc.float32, name="x")
    identity = gc.function([x], [x, x + 1], device=cl_device)
    for feed in (aligned_copy(np.arange(5, dtype=np.float32)), np.arange(5, 10, dtype=np.float32)):
        same, plus = identity(feed)
        np.testing.assert_array_equal(same, feed)
        np.testing.assert_array_equal(plus, feed + 1)


@pytest.mark.opencl
def test_profile_records_wall_device_and_host_time(cl_device):
    x = gc.placeholder((4096,), gc.float32, name="x")
    fn = gc.function([x], gc.sum(gc.exp(x) * 2), device=cl_device)
    assert fn.last_timing is None
    fn.profile(np.ones(4096, np.float32))
    timing = fn.last_timing
    kernels = sum(seconds for _, seconds in fn.last_profile)
    assert 0 < kernels <= timing.device_seconds <= timing.wall_seconds
    assert timing.host_seconds == pytest.approx(timing.wall_seconds - timing.device_seconds)


def sgd_regression(device, seed: int = 2):
    """A least-squares SGD step on (16, 4) batches: (step, w, feeds)."""
    rng = np.random.default_rng(seed)
    x = gc.placeholder((16, 4), gc.float32, name="x")
    y = gc.placeholder((16,), gc.float32, name="y")
    w = gc.variable(rng.standard_normal(4).astype(np.float32), name="w")
    loss = gc.mean(gc.square(x @ w - y))
    step = gc.function([x, y], loss, updates=[(w, w - 0.1 * gc.grad(loss, w))], device=device)
    feeds = [(rng.standard_normal((16, 4)).astype(np.float32),
              rng.standard_normal(16).astype(np.float32)) for _ in range(5)]
    return step, w, feeds


@pytest.mark.opencl
def test_async_calls_run_in_order_and_give_what_calls_give(cl_device):
    step, w, feeds = sgd_regression(cl_device)
    twin, w_twin, _ = sgd_regression(cl_device)
    pending = [step.call_async(*f) for f in feeds]
    in_turn = [twin(*f) for f in feeds]
    got = [p.result() for p in pending]
    np.testing.assert_array_equal(got, in_turn)
    np.testing.assert_array_equal(w.get_value(), w_twin.get_value())
    assert len(set(float(v) for v in got)) == len(got)     # each saw the last one's update


@pytest.mark.opencl
def test_a_variable_read_after_an_async_call_sees_its_update(cl_device):
    step, w, feeds = sgd_regression(cl_device, seed=4)
    twin, w_twin, _ = sgd_regression(cl_device, seed=4)
    before = w.get_value()
    pending = step.call_async(*feeds[0])
    expected = twin(*feeds[0])
    after = w.get_value()           # read while the call may still be queued
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, w_twin.get_value())
    assert float(pending.result()) == float(expected)


@pytest.mark.opencl
def test_an_async_call_without_outputs_can_be_waited_for(cl_device):
    w = gc.variable(np.zeros(3, np.float32), name="w")
    bump = gc.function([], [], updates=[(w, w + 1)], device=cl_device)
    pending = [bump.call_async() for _ in range(3)]
    assert pending[-1].result() == []
    np.testing.assert_array_equal(w.get_value(), [3, 3, 3])
