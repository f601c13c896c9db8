"""Indices past 2^31 - 1: kernels index with `long` only where an index needs it.

Every kernel kind is checked three ways: kernels of ordinary sizes keep `int`; with the
32-bit limit lowered to 1000 (so small tensors need 64-bit indices) every kind runs in its
`long` form and matches the interpreter; and programs with tensors past 2^31 elements build
on the device (compiled only: nothing that big is allocated). The slow test sums 2^31 + 5
elements for real (a broadcast scalar: no big buffer).
"""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

import graphc as gc
from graphc import compiler
from graphc.codegen import gemm, width
from graphc.compiler import compile_graph

pytestmark = pytest.mark.opencl

RNG = np.random.default_rng(31)
# Oclgrind's uninitialized-value check mistakes a freed buffer's reuse (test_device_ops.py):
# under Oclgrind no function is freed.
KEEP_ALIVE: list = []
BIG = 2**31 + 5
WIDE = re.compile(r"\blong (gid|start|first|row|r\w*|i)\b")


def _data(shape, dtype=np.float32) -> np.ndarray:
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(0, 7, shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def _elementwise():
    x, y = gc.placeholder((50, 60), name="x"), gc.placeholder((60,), name="y")
    return [x, y], [gc.exp(x) * 2.0 + y]


def _row_sum():
    x = gc.placeholder((300, 40), name="x")
    return [x], [gc.sum(x, axis=1)]


def _column_sum_lanes():
    x = gc.placeholder((100, 300), name="x")        # past 64 rows: compensated blocks
    return [x], [gc.sum(x[2:, 3:], axis=0)]         # alone: not merged, 16 lanes on CPUs


def _column_argmax_lanes():
    x = gc.placeholder((40, 300), name="x")
    return [x], [gc.argmax(x, axis=0)]


def _split_sum():
    x = gc.placeholder((5000,), name="x")
    return [x], [gc.sum(x), gc.max(x)]


def _take():
    table, idx = gc.placeholder((400, 8), name="table"), gc.placeholder((50,), gc.int32,
                                                                        name="idx")
    return [table, idx], [gc.take(table, idx, axis=0) * 2.0]


def _concat():
    a, b = gc.placeholder((30, 40), name="a"), gc.placeholder((20, 40), name="b")
    return [a, b], [gc.concatenate([a, b], axis=0) * 2.0]


def _random():
    x = gc.placeholder((50, 60), name="x")
    return [x], [x + gc.random.uniform((50, 60), seed=5)]


def _softmax_pool():
    x = gc.placeholder((2, 3, 20, 20), name="x")
    pooled = gc.max_pool2d(x, 2)
    return [x], [gc.softmax(gc.reshape(x, (6, 400)), axis=1), pooled,
                 gc.grad(gc.sum(pooled * pooled), x)]


def _cross_entropy():
    logits, labels = gc.placeholder((64, 30), name="logits"), gc.placeholder((64,), gc.int32,
                                                                             name="labels")
    loss = gc.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return [logits, labels], [loss, gc.grad(gc.sum(loss), logits)]


def _matmul_conv():
    a, b = gc.placeholder((64, 50), name="a"), gc.placeholder((50, 40), name="b")
    x, w = gc.placeholder((2, 3, 12, 12), name="x"), gc.placeholder((4, 3, 3, 3), name="w")
    y = gc.conv2d(x, w, padding=1)
    gx, gw = gc.grad(gc.sum(y * y), [x, w])
    return [a, b, x, w], [gc.relu(a @ b), y, gx, gw]


def _bundle():
    x, i = gc.placeholder((50, 70), name="x"), gc.placeholder((30, 110), gc.int32, name="i")
    rows = gc.placeholder((1200, 3), name="rows")      # with the others, a range past 1000
    return [x, i, rows], [gc.sum(x, axis=0), gc.max(i, axis=1), gc.argmax(x, axis=1),
                          gc.min(x[2:, 1:]), gc.sum(rows, axis=1)]


CASES = {"elementwise": _elementwise, "row_sum": _row_sum,
         "column_sum_lanes": _column_sum_lanes, "column_argmax_lanes": _column_argmax_lanes,
         "split_sum": _split_sum, "take": _take,
         "concat": _concat, "random": _random, "softmax_pool": _softmax_pool,
         "cross_entropy": _cross_entropy, "matmul_conv": _matmul_conv, "bundle": _bundle}


def _feeds(inputs) -> list[np.ndarray]:
    feeds = []
    for p in inputs:
        if p.name in ("idx", "labels"):
            high = 400 if p.name == "idx" else 30
            feeds.append(RNG.integers(-5 if p.name == "idx" else 0, high, p.shape)
                         .astype(np.int32))
        else:
            feeds.append(_data(p.shape, p.dtype))
    return feeds


@pytest.mark.parametrize("case", sorted(CASES))
def test_ordinary_sizes_index_with_int(cl_device, case):
    inputs, outputs = CASES[case]()
    fn = gc.function(inputs, outputs, device=cl_device)
    source = fn.compiled.plan.source
    assert not WIDE.search(source) and " long " not in source.replace("ulong", ""), source


@pytest.mark.parametrize("forms", ["device", "cpu"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_kernel_kind_in_its_64_bit_form_matches_the_interpreter(cl_device, monkeypatch,
                                                                      case, forms):
    """`forms`: the device's kernel forms, or a CPU's (16 elements or outputs per work
    item) on any device, so that Oclgrind checks those too (test_oclgrind.py)."""
    if forms == "cpu":
        if cl_device.type == "cpu":
            pytest.skip("the device's forms are the CPU's")
        monkeypatch.setattr(compiler, "_items_per_work_item", lambda device: 16)
    monkeypatch.setattr(width, "INT_MAX", 1000)     # indices past 1000 now need `long`
    monkeypatch.setattr(gemm, "INT_MAX", 1000)      # GEMMs that big: the loop kernels
    inputs, outputs = CASES[case]()
    fn = gc.function(inputs, outputs, device=cl_device)
    if "oclgrind" in cl_device.platform_name.lower():
        KEEP_ALIVE.append(fn)
    assert WIDE.search(fn.compiled.plan.source), fn.compiled.plan.source
    assert not any(k.global_size for k in fn.compiled.kernels), "a GEMM template past 32 bits"
    feeds = _feeds(inputs)
    got = fn(*feeds)
    want = gc.interpret(outputs, dict(zip(inputs, feeds)))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_a_merged_range_past_the_limit_indexes_with_long(cl_device, monkeypatch):
    monkeypatch.setattr(width, "INT_MAX", 1000)
    inputs, outputs = _bundle()
    fn = gc.function(inputs, outputs, device=cl_device)
    (merged,) = [k for k in fn.compiled.kernels if k.members]
    assert merged.work_items > 1000 and len(merged.members) == len(outputs)
    assert "const long gid = get_global_id(0);" in merged.source, merged.source


def _big_graphs():
    """(name, inputs, outputs) whose kernels index past 2^31 (compiled, never allocated;
    every buffer stays below PoCL's 8 GiB allocation limit all the same)."""
    s = gc.placeholder((), name="s")
    flags = gc.placeholder((BIG,), "bool", name="flags")
    halves = gc.placeholder((BIG,), gc.float16, name="halves")
    table = gc.placeholder((3, 2**30), gc.float16, name="table")
    idx = gc.placeholder((4,), gc.int32, name="idx")
    rows = gc.placeholder((2**20, 2**11 + 1), gc.float16, name="rows")
    square = gc.placeholder((2**16, 2**16 - 1), gc.float16, name="square")
    return [
        ("elementwise", [flags], [gc.logical_not(flags)]),
        ("split_sum", [halves], [gc.sum(halves * 2.0)]),
        ("column_sum", [table], [gc.sum(table, axis=0)]),
        ("row_sum", [rows], [gc.sum(rows, axis=1)]),
        ("take", [table, idx], [gc.take(table, idx, axis=1)]),
        ("random_sum", [s], [gc.sum(gc.random.uniform((BIG,), seed=1) * s)]),
        ("softmax", [rows], [gc.softmax(rows, axis=1)]),
        ("matmul", [square], [gc.cast(square, gc.float32) @ np.ones((2**16 - 1, 2), np.float32)]),
    ]


@pytest.mark.slow
def test_programs_with_tensors_past_2_31_elements_build(cl_device):
    roomy = replace(cl_device, max_mem_alloc_size=1 << 60, global_mem_size=1 << 60,
                    _context=None, _queue=None, _programs={}, build_stats=[])
    for name, inputs, outputs in _big_graphs():
        compiled = compile_graph(inputs, outputs, [], roomy)
        assert WIDE.search(compiled.plan.source), name
        assert not any(k.global_size for k in compiled.kernels), f"{name}: a GEMM template"
        cl_device.build(compiled.plan.source)       # no "call to '_cl_min' is ambiguous"


@pytest.mark.slow
@pytest.mark.parametrize("value", [1.0, 0.1])
def test_sum_of_a_broadcast_past_2_31_elements(cl_device, value):
    x = gc.placeholder((), gc.float32, name="x")
    spread = gc.broadcast_to(x, (BIG,))
    fn = gc.function([x], [gc.sum(spread), gc.mean(spread)], device=cl_device)
    total, mean = fn(np.float32(value))
    exact = float(np.float32(value))
    assert abs(float(total) - BIG * exact) <= 1e-5 * BIG * exact, total
    assert abs(float(mean) - exact) <= 1e-5 * exact, mean
