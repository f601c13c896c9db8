"""gc.function's documented errors: bad feeds, an absent device, an allocation above the
device's limit, bad updates. Each test asserts the error's text, and that nothing was
built or launched when the error comes before that."""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import graphc as gc
from graphc.runtime.device import format_bytes

pytestmark = pytest.mark.opencl

HERE = "test_function_errors.py"
# what graphc.sites records for this file: relative to the working directory when inside it
THIS_FILE = os.path.relpath(__file__) if __file__.startswith(os.getcwd() + os.sep) else __file__


@pytest.fixture
def counter_step(cl_device):
    """x: f32[4,3], k: i32[4]; out = x * 2 + k[:, None]; a counter variable += 1 per call."""
    x = gc.placeholder((4, 3), gc.float32, name="x")
    k = gc.placeholder((4,), gc.int32, name="k")
    calls = gc.variable(np.zeros((), np.float32), name="calls")
    fn = gc.function([x, k], [x * 2.0 + gc.cast(k, gc.float32)[:, None]],
                     updates=[(calls, calls + 1.0)], device=cl_device)
    return fn, calls


def good_feeds():
    return np.ones((4, 3), np.float32), np.arange(4, dtype=np.int32)


class LaunchSpy:
    """Counts runs of a function's executable."""

    def __init__(self, fn, monkeypatch):
        self.runs = 0
        real = fn.executable.run

        def run(*args, **kwargs):
            self.runs += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(fn.executable, "run", run)


def assert_nothing_ran(fn, calls, spy):
    assert spy.runs == 0
    assert fn.calls == 0
    assert calls.get_value() == 0.0


# ---- bad feeds ----

def test_good_feeds_run(counter_step):
    fn, calls = counter_step
    (out,) = fn(*good_feeds())
    np.testing.assert_array_equal(out, np.ones((4, 3)) * 2 + np.arange(4)[:, None])
    assert calls.get_value() == 1.0


def test_wrong_shape_names_the_placeholder_and_the_shape_expected(counter_step, monkeypatch):
    fn, calls = counter_step
    spy = LaunchSpy(fn, monkeypatch)
    with pytest.raises(gc.FeedError) as info:
        fn(np.ones((3, 4), np.float32), np.arange(4, dtype=np.int32))
    text = str(info.value)
    assert "placeholder 'x' expects shape (4, 3), got (3, 4)" in text
    assert "f32[4,3]" in text
    assert "placeholder created at" in text and HERE in text
    assert_nothing_ran(fn, calls, spy)


def test_float_fed_to_an_int_placeholder(counter_step, monkeypatch):
    fn, calls = counter_step
    spy = LaunchSpy(fn, monkeypatch)
    with pytest.raises(gc.FeedError) as info:
        fn(np.ones((4, 3), np.float32), np.arange(4, dtype=np.float32))
    text = str(info.value)
    assert "placeholder 'k' expects dtype int32, got float32" in text
    assert HERE in text
    assert_nothing_ran(fn, calls, spy)


def test_python_floats_fed_to_an_int_placeholder(counter_step, monkeypatch):
    fn, calls = counter_step
    spy = LaunchSpy(fn, monkeypatch)
    with pytest.raises(gc.FeedError, match="placeholder 'k' expects dtype int32, got float64"):
        fn(np.ones((4, 3), np.float32), [0.5, 1.0, 2.0, 3.0])
    assert_nothing_ran(fn, calls, spy)


def test_ragged_feed(counter_step, monkeypatch):
    fn, calls = counter_step
    spy = LaunchSpy(fn, monkeypatch)
    with pytest.raises(gc.FeedError, match="placeholder 'x' expects .*cannot make an array"):
        fn([[1.0, 2.0, 3.0], [1.0]], np.arange(4, dtype=np.int32))
    assert_nothing_ran(fn, calls, spy)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_wrong_number_of_inputs(counter_step, monkeypatch, count):
    fn, calls = counter_step
    spy = LaunchSpy(fn, monkeypatch)
    feeds = (list(good_feeds()) + [np.zeros(1, np.float32)])[:count]
    with pytest.raises(gc.FeedError) as info:
        fn(*feeds)
    assert str(info.value) == f"function 'function' takes 2 inputs (x, k), got {count}"
    assert_nothing_ran(fn, calls, spy)


def test_a_bad_feed_leaves_the_function_usable(counter_step):
    fn, calls = counter_step
    with pytest.raises(gc.FeedError):
        fn(np.ones((4, 4), np.float32), np.arange(4, dtype=np.int32))
    fn(*good_feeds())
    assert fn.calls == 1 and calls.get_value() == 1.0


def test_feed_errors_are_value_errors_and_graphc_errors():
    assert issubclass(gc.FeedError, ValueError) and issubclass(gc.FeedError, gc.GraphcError)
    assert issubclass(gc.DeviceError, gc.GraphcError)


# ---- errors at gc.function time: nothing is built ----

def test_placeholder_missing_from_the_inputs(cl_device):
    x = gc.placeholder((3,), gc.float32, name="x")
    y = gc.placeholder((3,), gc.float32, name="y")
    builds = len(cl_device.build_stats)
    with pytest.raises(gc.FeedError) as info:
        gc.function([x], [x + y], device=cl_device)
    text = str(info.value)
    assert "the outputs depend on placeholder 'y' (f32[3], created at" in text
    assert HERE in text and "which is not among the function's inputs" in text
    assert len(cl_device.build_stats) == builds


def test_placeholder_missing_from_the_inputs_through_an_update(cl_device):
    x = gc.placeholder((3,), gc.float32, name="x")
    v = gc.variable(np.zeros(3, np.float32), name="v")
    builds = len(cl_device.build_stats)
    with pytest.raises(gc.FeedError, match="placeholder 'x'"):
        gc.function([], [], updates=[(v, v + x)], device=cl_device)
    assert len(cl_device.build_stats) == builds
    assert (v.get_value() == 0).all()


def test_inputs_must_be_placeholders(cl_device):
    v = gc.variable(np.zeros(3, np.float32), name="v")
    with pytest.raises(gc.GraphcError, match="function inputs must be placeholders, got"):
        gc.function([v], [v * 2.0], device=cl_device)


def test_update_with_the_wrong_shape(cl_device):
    W = gc.variable(np.zeros((2, 3), np.float32), name="W")
    builds = len(cl_device.build_stats)
    with pytest.raises(gc.ShapeError) as info:
        gc.function([], [], updates=[(W, gc.sum(W, axis=0))], device=cl_device)
    text = str(info.value)
    assert "update of variable 'W': new value has shape (3,), the variable (2, 3)" in text
    assert HERE in text
    assert len(cl_device.build_stats) == builds


def test_update_with_the_wrong_dtype_kind(cl_device):
    W = gc.variable(np.zeros(3, np.float32), name="W")
    with pytest.raises(gc.DTypeError, match="update of variable 'W': new value is int32, "
                                            "the variable float32"):
        gc.function([], [], updates=[(W, gc.cast(W, gc.int32))], device=cl_device)


def test_update_of_something_not_a_variable(cl_device):
    x = gc.placeholder((3,), gc.float32, name="x")
    with pytest.raises(gc.GraphcError, match="updates must be .variable, new value. pairs"):
        gc.function([x], [], updates=[(x, x + 1.0)], device=cl_device)


def test_variable_updated_twice(cl_device):
    W = gc.variable(np.zeros(3, np.float32), name="W")
    with pytest.raises(gc.ShapeError, match="variable 'W' is updated twice in one function"):
        gc.function([], [], updates=[(W, W + 1.0), (W, W * 2.0)], device=cl_device)


# ---- devices ----

def test_absent_device_lists_the_available_ones(cl_device):
    with pytest.raises(gc.DeviceError) as info:
        gc.function([], [gc.constant(np.ones(2, np.float32)) * 2.0], device="no-such-device")
    text = str(info.value)
    assert text.startswith("device 'no-such-device' not found; available devices:")
    for d in gc.runtime.devices():
        assert f"{d.index}: {d.name} ({d.platform_name}, {d.backend})" in text


def test_device_index_out_of_range(cl_device):
    count = len(gc.runtime.devices())
    with pytest.raises(gc.DeviceError, match=f"device {count} not found; available devices:"):
        gc.function([], [gc.constant(np.ones(2, np.float32)) * 2.0], device=count)


def test_absent_device_from_the_environment(cl_device, monkeypatch):
    monkeypatch.setenv("GRAPHC_DEVICE", "no-such-device")
    with pytest.raises(gc.DeviceError) as info:
        gc.function([], [gc.constant(np.ones(2, np.float32)) * 2.0])
    assert str(info.value).startswith(
        "device from $GRAPHC_DEVICE 'no-such-device' not found; available devices:")
    assert cl_device.name in str(info.value)


def test_device_by_name_substring_and_index(cl_device):
    x = gc.placeholder((2,), gc.float32, name="x")
    for spec in (cl_device.name[:6], cl_device.index, cl_device):
        fn = gc.function([x], [x * 2.0], device=spec)
        assert fn.device is cl_device or fn.device.name == cl_device.name


# ---- allocations above the device's limit: checked before OpenCL is asked ----

def too_many_floats(device) -> int:
    return device.max_mem_alloc_size // 4 + 1


def assert_too_large(text: str, buffer: str, nbytes: int, device) -> None:
    assert f"buffer {buffer!r} needs {nbytes} bytes ({format_bytes(nbytes)}), above the " \
           f"device's max allocation of {device.max_mem_alloc_size} bytes" in text
    assert device.name in text


def test_placeholder_above_the_allocation_limit(cl_device):
    n = too_many_floats(cl_device)
    line = inspect.currentframe().f_lineno + 1
    x = gc.placeholder((n,), gc.float32, name="huge")
    with pytest.raises(gc.DeviceError) as info:
        gc.function([x], [gc.sum(x)], device=cl_device)
    assert_too_large(str(info.value), "in:huge", 4 * n, cl_device)
    assert f"holds input 'huge' (f32[{n}]), created at " \
        f"{THIS_FILE}:{line}" in str(info.value)


def test_output_above_the_allocation_limit(cl_device):
    n = too_many_floats(cl_device)
    x = gc.placeholder((1,), gc.float32, name="x")
    line = inspect.currentframe().f_lineno + 2
    with pytest.raises(gc.DeviceError) as info:
        gc.function([x], [gc.broadcast_to(x, (n,)) * 2.0], device=cl_device)
    text = str(info.value)
    assert_too_large(text, "out0", 4 * n, cl_device)
    assert f"holds output 0 of the function, computed by multiply (f32[{n}]), created at " \
           f"{THIS_FILE}:{line}" in text


def test_intermediate_above_the_allocation_limit(cl_device):
    """An expensive value read by several kernels is stored in a scratch buffer."""
    n = too_many_floats(cl_device)
    x = gc.placeholder((1,), gc.float32, name="x")
    line = inspect.currentframe().f_lineno + 1
    h = gc.exp(gc.tanh(gc.exp(gc.broadcast_to(x, (n,)))))
    fn_outputs = [gc.sum(h), gc.max(h), gc.min(h)]
    with pytest.raises(gc.DeviceError) as info:
        gc.function([x], fn_outputs, device=cl_device)
    text = str(info.value)
    scratch = text.split("buffer '")[1].split("'")[0]
    assert scratch.startswith("s"), text
    assert_too_large(text, scratch, 4 * n, cl_device)
    assert f"holds an intermediate value, computed by exp (f32[{n}]), created at " \
           f"{THIS_FILE}:{line}" in text


def test_variable_above_the_allocation_limit_names_the_variable(cl_device, monkeypatch):
    """A variable counts too; a (pretend) smaller limit keeps the host array small."""
    small = replace_limits(cl_device, monkeypatch, max_alloc=1024)
    line = inspect.currentframe().f_lineno + 1
    w = gc.variable(np.zeros(300, np.float32), name="w")
    x = gc.placeholder((1,), gc.float32, name="x")
    with pytest.raises(gc.DeviceError) as info:
        gc.function([x], [gc.sum(w) + x], device=small)
    text = str(info.value)
    assert_too_large(text, "var:w", 1200, small)
    assert f"holds variable 'w' (f32[300]), created at " \
        f"{THIS_FILE}:{line}" in text


def replace_limits(device, monkeypatch, max_alloc=None, memory=None):
    """`device` with smaller limits for one test (the same context, queue and caches)."""
    if max_alloc is not None:
        monkeypatch.setattr(device, "max_mem_alloc_size", max_alloc)
    if memory is not None:
        monkeypatch.setattr(device, "global_mem_size", memory)
    return device


def test_nothing_is_generated_or_built_when_a_buffer_is_too_large(cl_device, monkeypatch):
    import graphc.compiler as compiler
    generated, builds = [], len(cl_device.build_stats)
    real = compiler._build_kernels
    monkeypatch.setattr(compiler, "_build_kernels",
                        lambda *args: generated.append(args) or real(*args))
    monkeypatch.setattr(cl_device, "build", lambda *args: pytest.fail("a program was built"))
    x = gc.placeholder((1,), gc.float32, name="x")
    with pytest.raises(gc.DeviceError, match="above the device's max allocation"):
        gc.function([x], [gc.broadcast_to(x, (too_many_floats(cl_device),)) * 2.0],
                    device=cl_device)
    assert generated == []
    assert len(cl_device.build_stats) == builds


def outputs_over_the_memory(device):
    """(count, floats): `count` outputs of `floats` each, each within the device's max
    allocation, all together above its global memory."""
    floats = min(device.max_mem_alloc_size, device.global_mem_size) // 4
    count = device.global_mem_size // (4 * floats) + 1
    return count, floats


def test_planned_peak_above_the_device_memory_is_refused_before_building(cl_device,
                                                                         monkeypatch):
    count, floats = outputs_over_the_memory(cl_device)
    builds = len(cl_device.build_stats)
    monkeypatch.setattr(cl_device, "build", lambda *args: pytest.fail("a program was built"))
    x = gc.placeholder((1,), gc.float32, name="x")
    line = inspect.currentframe().f_lineno + 1
    outs = [gc.broadcast_to(x, (floats,)) * float(k + 2) for k in range(count)]
    with pytest.raises(gc.DeviceError) as info:
        gc.function([x], outs, device=cl_device)
    text = str(info.value)
    total = 4 * floats * count + 4
    assert f"the planned peak of {total} bytes ({format_bytes(total)}" in text
    assert f"above the device's memory of {cl_device.global_mem_size} bytes " \
           f"({format_bytes(cl_device.global_mem_size)}) on {cl_device.describe()}" in text
    assert f"'out0': {format_bytes(4 * floats)}, output 0 of the function, computed by multiply " \
           f"(f32[{floats}]), created at " \
        f"{THIS_FILE}:{line}" in text
    assert len(cl_device.build_stats) == builds


def test_the_peak_counts_variables_and_constants(cl_device, monkeypatch):
    """48 KiB of variable and 48 KiB of constant: accepted on the device, refused where the
    device has only those 96 KiB (and no room for the input and output)."""
    w = gc.variable(np.ones(12288, np.float32), name="w")
    c = gc.constant(np.arange(12288, dtype=np.float32))
    x = gc.placeholder((1,), gc.float32, name="x")
    fits = gc.function([x], [gc.sum(w * c) + x], device=cl_device)
    expected = np.sum(np.arange(12288, dtype=np.float64)) + 1.0
    np.testing.assert_allclose(fits(np.ones(1, np.float32))[0], [expected], rtol=1e-6)
    replace_limits(cl_device, monkeypatch, memory=2 * 12288 * 4)
    with pytest.raises(gc.DeviceError) as info:
        gc.function([x], [gc.sum(w * c) + x], device=cl_device)
    text = str(info.value)
    assert "'var:w': 48.0 KiB, variable 'w' (f32[12288])" in text
    assert "'const:" in text and "48.0 KiB, constant (f32[12288])" in text
