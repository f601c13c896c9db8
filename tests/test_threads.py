"""Calls from several Python threads: each call gets its own correct result, and updates of
variables shared by functions are never lost. A compiled function's calls share its device
buffers, and every function of a device shares its queue, so calls on one device are
serialized (Device.lock); see the README's "Thread safety"."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import graphc as gc

pytestmark = pytest.mark.opencl

THREADS, CALLS = 4, 100


def run_threads(target, count: int = THREADS) -> list:
    """Start `count` threads running target(index) at once; their results or exceptions."""
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def body(index: int) -> None:
        barrier.wait()
        try:
            results[index] = target(index)
        except BaseException as exc:   # re-raised by the test, not lost in the thread
            results[index] = exc
    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def test_one_function_called_from_four_threads_gives_every_call_its_result(cl_device):
    x = gc.placeholder((64, 32), gc.float32, name="x")
    w = gc.constant(np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32))
    fn = gc.function([x], [gc.tanh(x @ w) * 2.0, gc.sum(x, axis=1)], device=cl_device)
    w_value = w.data if isinstance(w.data, np.ndarray) else np.asarray(w.data)

    def worker(thread: int) -> int:
        rng = np.random.default_rng(100 + thread)
        wrong = 0
        for _ in range(CALLS):
            xv = rng.standard_normal((64, 32)).astype(np.float32)
            y, s = fn(xv)
            ok = np.allclose(y, np.tanh(xv @ w_value) * 2.0, atol=1e-5) and \
                np.allclose(s, xv.sum(axis=1), atol=1e-4)
            wrong += not ok
        return wrong
    assert run_threads(worker) == [0] * THREADS
    assert fn.calls == THREADS * CALLS


def test_two_functions_sharing_a_variable_keep_every_update(cl_device):
    """`count` += 1 in one function and += 2 in another, called from two threads each:
    the serial result, 4 * CALLS * 1.5, with no update lost."""
    count = gc.variable(np.zeros((), np.float64 if cl_device.fp64 else np.float32),
                        name="count")
    x = gc.placeholder((16,), gc.float32, name="x")
    add_one = gc.function([x], [gc.sum(x)], updates=[(count, count + 1.0)], device=cl_device)
    add_two = gc.function([x], [gc.max(x)], updates=[(count, count + 2.0)], device=cl_device)

    def worker(thread: int) -> int:
        fn = add_one if thread % 2 else add_two
        wrong = 0
        for k in range(CALLS):
            xv = np.full(16, thread * 1000 + k, np.float32)
            out = fn(xv)[0]
            wrong += out != (xv.sum() if fn is add_one else xv.max())
        return wrong
    assert run_threads(worker) == [0] * THREADS
    assert count.get_value() == 2 * CALLS * 1 + 2 * CALLS * 2


def test_random_ops_called_from_threads_draw_distinct_streams(cl_device):
    """The step counter feeding random ops is read and advanced under the same lock as the
    call: no two calls draw the same numbers."""
    x = gc.placeholder((256,), gc.float32, name="x")
    fn = gc.function([x], [x + gc.random.uniform((256,))], device=cl_device)
    draws = run_threads(lambda _: [fn(np.zeros(256, np.float32))[0] for _ in range(25)])
    flat = [d.tobytes() for thread in draws for d in thread]
    assert len(set(flat)) == len(flat) == THREADS * 25


def test_functions_compiled_in_threads_share_one_copy_of_a_variable(cl_device):
    v = gc.variable(np.arange(8, dtype=np.float32), name="v")
    x = gc.placeholder((8,), gc.float32, name="x")
    graphs = [x * float(k + 3) + v for k in range(THREADS)]     # built here, compiled there
    functions = run_threads(lambda k: gc.function([x], [graphs[k]], device=cl_device))
    assert len(v.data.resident) == 1
    v.set_value(np.full(8, 10, np.float32))
    results = run_threads(lambda k: functions[k](np.ones(8, np.float32))[0])
    for k, result in enumerate(results):
        np.testing.assert_array_equal(result, np.full(8, k + 3 + 10, np.float32))
