"""Host calls (collectives) in plans: the runtime runs them between kernels, the compiler
places them early and waits late, bucketing fuses allreduces. A single process: every
collective is the identity, so results compare with the interpreter and numpy."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.passes.buckets import bucket_allreduces
from graphc.runtime import (BufferArg, BufferSpec, Executable, HostCall, IOBinding,
                            KernelLaunch, Plan, ScalarArg, register_host_function)
from graphc.runtime.launch import plan_problems

N = 37
SOURCE = """
__kernel void vadd(__global const float *a, __global const float *b, __global float *out,
                   const int n) {
    const int i = get_global_id(0);
    if (i < n) out[i] = a[i] + b[i];
}
"""
CALLS: list = []


def _double(inputs, outputs, attrs):
    CALLS.append(dict(attrs))
    outputs[0][...] = inputs[0] * attrs["factor"]


register_host_function("test.scale", _double)


def _vector(name, buffer=None):
    return IOBinding(name, buffer or name, (N,), "float32")


def _vadd(a, b, out):
    return KernelLaunch("vadd", (BufferArg(a), BufferArg(b), BufferArg(out),
                                 ScalarArg(N, "int32")), (N,), None)


def host_plan(start: int = 1, wait: int = 2, function: str = "test.scale") -> Plan:
    """s = x + y; [host: t = 3 s]; u = x + x (independent); z = t + y."""
    buffers = tuple(BufferSpec(n, 4 * N, role) for n, role in
                    (("x", "input"), ("y", "input"), ("s", "scratch"), ("t", "scratch"),
                     ("u", "output"), ("z", "output")))
    call = HostCall("SCALE", function, (_vector("s"),), (_vector("t"),),
                    (("factor", 3.0),), start, wait)
    return Plan(SOURCE, "", buffers, (_vector("x"), _vector("y")),
                (_vector("u"), _vector("z")), (),
                (_vadd("x", "y", "s"), _vadd("x", "x", "u"), _vadd("t", "y", "z")), (call,))


@pytest.mark.opencl
@pytest.mark.parametrize("start,wait", [(1, 1), (1, 2), (2, 2)])
def test_a_host_call_runs_between_kernels(cl_device, start, wait):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, N)).astype(np.float32)
    exe = Executable(cl_device, host_plan(start, wait))
    for _ in range(2):
        u, z = exe(x, y)
        np.testing.assert_allclose(u, x + x)
        np.testing.assert_allclose(z, 3 * (x + y) + y, rtol=1e-6)
    assert CALLS[-1] == {"factor": 3.0}


@pytest.mark.opencl
@pytest.mark.parametrize("start,wait", [(1, 1), (1, 2)])
def test_a_host_call_through_copies_where_buffers_are_not_mapped(cl_device, monkeypatch,
                                                                 start, wait):
    """A device that does not share the host's memory (a discrete GPU): operands are copied
    out and results copied in, synchronously or overlapped, never mapped."""
    from graphc.runtime import host
    made = host.HostSteps.__init__

    def not_unified(self, *args, **kwargs):
        made(self, *args, **kwargs)
        self.mapped = False
    monkeypatch.setattr(host.HostSteps, "__init__", not_unified)
    monkeypatch.setattr(host.HostSteps, "_run_mapped",
                        lambda self, call: pytest.fail("a buffer was mapped"))
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, N)).astype(np.float32)
    exe = Executable(cl_device, host_plan(start, wait))
    for _ in range(2):
        u, z = exe(x, y)
        np.testing.assert_allclose(u, x + x)
        np.testing.assert_allclose(z, 3 * (x + y) + y, rtol=1e-6)


@pytest.mark.opencl
def test_a_host_call_in_debug_mode_runs_synchronously(cl_device):
    x, y = np.ones((2, N), np.float32)
    seen = []
    exe = Executable(cl_device, host_plan(1, 2))
    u, z = exe.run([x, y], after_launch=seen.append)
    assert seen == [0, 1, 2] and np.allclose(z, 7.0)


@pytest.mark.opencl
def test_an_unregistered_host_function_is_named(cl_device):
    with pytest.raises(KeyError, match="host function 'test.missing'.*not registered"):
        Executable(cl_device, host_plan(function="test.missing"))


def test_plan_problems_check_host_call_positions_and_buffers():
    bad = host_plan(start=2, wait=1)
    assert any("start 2 and wait 1" in p for p in plan_problems(bad))
    call = HostCall("X", "test.scale", (_vector("s", "nowhere"),), (_vector("t"),), (), 0, 0)
    plan = host_plan()
    plan = Plan(plan.source, "", plan.buffers, plan.inputs, plan.outputs, (), plan.launches,
                (call,))
    assert any("unknown buffer 'nowhere'" in p for p in plan_problems(plan))


# ---- the compiler: placement and overlap ----

def two_layer_step(bucket_bytes=None, monkeypatch=None):
    """A step whose gradients go through allreduces; (function, feeds, outputs)."""
    rng = np.random.default_rng(1)
    x = gc.placeholder((8, 5), name="x")
    w1 = gc.variable(rng.standard_normal((5, 16)).astype(np.float32), name="w1")
    w2 = gc.variable(rng.standard_normal((16, 16)).astype(np.float32), name="w2")
    w3 = gc.variable(rng.standard_normal((16, 3)).astype(np.float32), name="w3")
    loss = gc.sum(gc.tanh(gc.tanh(x @ w1) @ w2) @ w3)
    grads = [gc.distributed.allreduce(g) for g in gc.grad(loss, [w1, w2, w3])]
    fn = gc.function([x], [loss] + grads, name="step")
    return fn, rng.standard_normal((8, 5)).astype(np.float32), [loss] + grads, x


@pytest.mark.opencl
def test_a_collective_starts_early_and_is_waited_for_late(cl_device, monkeypatch):
    monkeypatch.setenv("GRAPHC_BUCKET_BYTES", "1")          # one collective per gradient
    fn, feed, outputs, x = two_layer_step()
    calls = fn.compiled.plan.host_calls
    assert len(calls) == 3
    assert any(c.wait > c.start for c in calls), [(c.start, c.wait) for c in calls]
    for got, want in zip(fn(feed), gc.interpret(outputs, {x: feed})):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    text = fn.dump()
    assert "collectives (run by the host):" in text and "HAZARD" not in text
    assert "ALLREDUCE_16_16" in text and "test_host_calls.py" in text


@pytest.mark.opencl
def test_overlap_off_waits_right_away(cl_device, monkeypatch):
    monkeypatch.setenv("GRAPHC_BUCKET_BYTES", "1")
    monkeypatch.setenv("GRAPHC_OVERLAP", "0")
    fn, feed, outputs, x = two_layer_step()
    assert all(c.wait == c.start for c in fn.compiled.plan.host_calls)
    for got, want in zip(fn(feed), gc.interpret(outputs, {x: feed})):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.opencl
def test_a_collective_of_a_variable_and_of_a_scalar_constant(cl_device):
    v = gc.variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="v")
    outputs = [gc.distributed.broadcast(v, 0), gc.distributed.allreduce(gc.constant(2.5)),
               gc.distributed.allgather(gc.reshape(v, (3, 2)))]
    fn = gc.function([], outputs, updates=[(v, gc.distributed.allreduce(v * 2, op="sum"))])
    got = fn()
    np.testing.assert_array_equal(got[0], np.arange(6).reshape(2, 3))
    assert got[1] == 2.5 and got[2].shape == (3, 2)
    np.testing.assert_array_equal(v.get_value(), 2 * np.arange(6).reshape(2, 3))


# ---- bucketing ----

def _allreduce_count(graph) -> int:
    return sum(node.op == "allreduce" for node in graph.nodes)


def _graph(outputs):
    return gc.Graph.from_outputs(outputs)


def _gradients_allreduced(shapes, op="average"):
    params = [gc.placeholder(s, name=f"p{i}") for i, s in enumerate(shapes)]
    return params, [gc.distributed.allreduce(gc.tanh(p) * 2.0, op=op) for p in params]


def test_independent_allreduces_share_one_bucket():
    params, reduced = _gradients_allreduced([(3, 4), (5,), (2, 2, 2)])
    graph = _graph(reduced)
    bucketed = bucket_allreduces(graph)
    assert _allreduce_count(graph) == 3 and _allreduce_count(bucketed) == 1
    (node,) = [n for n in bucketed.nodes if n.op == "allreduce"]
    assert node.output.shape == (12 + 5 + 8,)
    feeds = {p: np.random.default_rng(2).standard_normal(p.shape).astype(np.float32)
             for p in params}
    gc.verify(bucketed)
    for a, b in zip(gc.interpret(list(graph.outputs), feeds),
                    gc.interpret(list(bucketed.outputs), feeds)):
        np.testing.assert_array_equal(a, b)
    assert bucket_allreduces(bucketed) is bucketed          # idempotent


def test_buckets_respect_the_size_cap_kind_and_dtype(monkeypatch):
    monkeypatch.setenv("GRAPHC_BUCKET_BYTES", str(4 * 20))
    _, reduced = _gradients_allreduced([(10,), (10,), (10,), (10,)])
    assert _allreduce_count(bucket_allreduces(_graph(reduced))) == 2
    monkeypatch.delenv("GRAPHC_BUCKET_BYTES")
    _, sums = _gradients_allreduced([(4,), (4,)], op="sum")
    _, means = _gradients_allreduced([(4,), (4,)])
    doubles = [gc.distributed.allreduce(gc.placeholder((4,), gc.float64)) for _ in range(2)]
    assert _allreduce_count(bucket_allreduces(_graph(sums + means + doubles))) == 3


def test_an_allreduce_of_an_allreduce_keeps_its_own_call():
    a, b = gc.placeholder((4,)), gc.placeholder((4,))
    first = gc.distributed.allreduce(a)
    second = gc.distributed.allreduce(first * b)
    third = gc.distributed.allreduce(b + 1.0)
    bucketed = bucket_allreduces(_graph([second, third]))
    assert _allreduce_count(bucketed) == 2          # first and third share a bucket
    gc.verify(bucketed)


@pytest.mark.opencl
def test_a_function_with_collectives_is_not_exported(cl_device, tmp_path):
    x = gc.placeholder((3,), name="x")
    fn = gc.function([x], gc.distributed.allreduce(x * 2.0), name="reduced")
    with pytest.raises(gc.ExportError, match="'reduced': it runs collectives on the host"):
        fn.export(tmp_path / "reduced")
    assert not (tmp_path / "reduced").exists()
