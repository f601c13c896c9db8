"""Horizontal fusion: independent small kernels run as one launch, results equal to the
interpreter, and kernels that depend on each other (data, or a variable's old value read
before its in-place update) stay apart."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.builder import apply
from graphc.codegen.built import BuiltKernel, IRBody, RenderedKernel
from graphc.codegen.horizontal import merge_kernels
from graphc.codegen.index import var
from graphc.codegen.kernel import Kernel, Load, Param, Store
from graphc.codegen.opencl_renderer import OpenCLRenderer
from graphc.codegen.program import rendered
from graphc.codegen.renderer import MAX_MERGED_SOURCE, MAX_PARAMETER_BYTES, Capabilities
from graphc.ops import REGISTRY, OpDef, register
from graphc.ops.elementwise import unary_infer
from graphc.passes.fuse import Group
from graphc.passes.horizontal import MAX_MEMBER_ITEMS, MAX_MEMBERS, Bundle, bundle_steps
from graphc.passes.schedule import plan_memory

RNG = np.random.default_rng(11)


def uniform(shape, dtype=np.float32) -> np.ndarray:
    return RNG.uniform(-1.0, 1.0, shape).astype(dtype)


def run_and_compare(inputs, outputs, feeds, updates=None) -> gc.Function:
    """Compile, run, and check outputs (and updated variables) against gc.interpret."""
    updates = updates or []
    want = gc.interpret(list(outputs) + [u for _, u in updates], dict(zip(inputs, feeds)))
    fn = gc.function(inputs, outputs, updates=updates)
    got = list(fn(*feeds)) + [v.get_value() for v, _ in updates]
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    return fn


def merged(fn: gc.Function) -> list[RenderedKernel]:
    return [k for k in fn.compiled.kernels if k.members]


@pytest.mark.opencl
def test_independent_reductions_of_several_dtypes_and_odd_shapes_run_as_one_kernel(cl_device):
    x = gc.placeholder((5, 7), gc.float32, name="x")
    i = gc.placeholder((3, 11), gc.int32, name="i")
    outs = [gc.sum(x, axis=0), gc.max(i, axis=1), gc.argmax(x, axis=1), gc.min(x[2:, 1:]),
            gc.exp(x[:, 3:]), gc.greater(i, 0), gc.cast(i, gc.float32) * 0.5]
    if cl_device.fp64:
        outs.append(gc.cast(x, gc.float64) * 3.0)
    fn = run_and_compare([x, i], outs, [uniform((5, 7)), RNG.integers(-9, 9, (3, 11),
                                                                      dtype=np.int32)])
    assert fn.kernel_count == 1, fn.dump()
    (kernel,) = fn.compiled.kernels
    assert len(kernel.members) == len(outs) - 1     # `greater` and the cast: one kernel
    assert kernel.name.startswith("H_")


@pytest.mark.opencl
def test_each_member_range_is_padded_to_the_work_group(cl_device):
    x = gc.placeholder((13,), gc.float32, name="x")
    y = gc.placeholder((3, 3), gc.float32, name="y")
    fn = run_and_compare([x, y], [gc.exp(x), gc.tanh(y)], [uniform((13,)), uniform((3, 3))])
    (launch,) = fn.compiled.plan.launches
    group = launch.local_size[0]
    assert launch.global_size == (-(-13 // group) * group + -(-9 // group) * group,)


@pytest.mark.opencl
def test_random_members_share_the_step_counter(cl_device):
    x = gc.placeholder((6, 5), gc.float32, name="x")
    noise = gc.random.uniform((6, 5))
    fn = run_and_compare([x], [x * noise, gc.sum(x, axis=0)], [uniform((6, 5))])
    assert fn.kernel_count == 1


@pytest.mark.opencl
def test_bias_updates_in_place_merge_and_match_the_interpreter(cl_device):
    x = gc.placeholder((9, 6), gc.float32, name="x")
    h = gc.placeholder((9, 13), gc.float32, name="h")
    b1 = gc.variable(uniform((6,)), name="b1")
    b2 = gc.variable(uniform((13,)), name="b2")
    updates = [(b1, b1 - 0.1 * gc.sum(x, axis=0)), (b2, b2 - 0.1 * gc.sum(h, axis=0))]
    loss = gc.mean(h)
    fn = run_and_compare([x, h], [loss], [uniform((9, 6)), uniform((9, 13))], updates)
    assert fn.kernel_count == 1, fn.dump()
    written = {b for k in fn.compiled.kernels for b in k.args}
    assert {"var:b1", "var:b2"} <= written


@pytest.mark.opencl
def test_a_kernel_reading_anothers_output_is_not_merged_with_it(cl_device):
    x = gc.placeholder((5, 7), gc.float32, name="x")
    column_sums = gc.sum(x, axis=0)
    scaled = x * column_sums            # needs every column sum: a second kernel
    fn = run_and_compare([x], [column_sums, scaled], [uniform((5, 7))])
    assert fn.kernel_count == 2
    assert merged(fn) == []


@pytest.mark.opencl
def test_a_reader_of_a_variable_is_not_merged_with_its_in_place_update(cl_device):
    """The reduction reads v's old value; the update overwrites v in place: one kernel
    would race (write-after-read), so they stay two launches, reader first."""
    x = gc.placeholder((4, 5), gc.float32, name="x")
    v = gc.variable(uniform((5,)), name="v")
    read_old = gc.sum(x * v, axis=1)
    fn = run_and_compare([x], [read_old], [uniform((4, 5))],
                         [(v, v - 0.1 * gc.sum(x, axis=0))])
    assert fn.kernel_count == 2, fn.dump()
    assert merged(fn) == []
    first, second = fn.compiled.kernels
    assert "var:v" in first.args and "var:v" in second.args


@pytest.mark.opencl
def test_at_most_max_members_per_kernel(cl_device):
    xs = [gc.placeholder((3, 4 + n), gc.float32, name=f"x{n}") for n in range(MAX_MEMBERS + 2)]
    fn = run_and_compare(xs, [gc.sum(x, axis=0) for x in xs], [uniform(x.shape) for x in xs])
    assert sorted(len(k.members) for k in fn.compiled.kernels) == [2, MAX_MEMBERS]


@pytest.mark.opencl
def test_big_kernels_keep_their_own_launch(cl_device):
    big = gc.placeholder((MAX_MEMBER_ITEMS + 1,), gc.float32, name="big")
    small = gc.placeholder((10,), gc.float32, name="small")
    fn = run_and_compare([big, small], [gc.exp(big), gc.exp(small)],
                         [uniform((MAX_MEMBER_ITEMS + 1,)), uniform((10,))])
    assert fn.kernel_count == 2 and merged(fn) == []


@pytest.mark.opencl
def test_split_reductions_merge_their_partial_and_final_stages(cl_device):
    """Two long reductions to few outputs each run as partial sums, then their sums: the
    partial stages merge into one kernel and the final stages into another."""
    a = gc.placeholder((6, 64, 36), gc.float32, name="a")
    b = gc.placeholder((16, 64, 32), gc.float32, name="b")
    fn = run_and_compare([a, b], [gc.sum(a, axis=(1, 2)), gc.sum(b, axis=(1, 2))],
                         [uniform((6, 64, 36)), uniform((16, 64, 32))])
    assert fn.kernel_count == 2, fn.dump()
    assert [len(k.members) for k in fn.compiled.kernels] == [2, 2]
    assert fn.compiled.kernels[0].members[0].startswith("PR_")


@pytest.mark.opencl
def test_dump_names_the_members_and_their_lines(cl_device):
    x = gc.placeholder((5, 7), gc.float32, name="x")
    fn = gc.function([x], [gc.sum(x, axis=0), gc.max(x, axis=1)])
    text = fn.dump()
    assert "merges R_7_5_" in text and ", R_5_7_" in text
    assert text.count("# tests/test_horizontal.py:") >= 2
    assert "HAZARD" not in text


# ---- GRAPHC_VALIDATE and GRAPHC_CHECK_NUMERICS inside a merged kernel ----

def _line_of(marker: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if marker in line and "_line_of" not in line)


@pytest.fixture
def wrong_op():
    """A test-only elementwise op whose OpenCL template adds 1 where the reference is x."""
    register(OpDef("test_wrong_member", "elementwise", 1, (), unary_infer("float"),
                   lambda x: x.copy(), lambda g, y, x: [g], {"opencl": "({0} + 1)"},
                   "Test only: wrong on purpose."))
    try:
        yield "test_wrong_member"
    finally:
        del REGISTRY["test_wrong_member"]


@pytest.mark.opencl
def test_validate_names_the_wrong_op_of_one_merged_member(cl_device, monkeypatch, wrong_op):
    monkeypatch.setenv("GRAPHC_VALIDATE", "1")
    x = gc.placeholder((5, 7), gc.float32, name="x")
    good = gc.max(gc.tanh(x), axis=0)
    bad = gc.sum(apply(wrong_op, [x]) * 3.0, axis=1)            # the wrong member
    fn = gc.function([x], [good, bad], device=cl_device)
    assert [len(k.members) for k in fn.compiled.kernels] == [2]
    with pytest.raises(gc.ValidationError) as info:
        fn(uniform((5, 7)))
    text = str(info.value)
    assert re.search(r"kernel #0 H_\w+ stored \w+:f32\[5\] \(buffer \w+\), which differs",
                     text), text
    line = _line_of("# the wrong member")
    assert f"culprit: op test_wrong_member (at tests/test_horizontal.py:{line})" in text


@pytest.mark.opencl
def test_check_numerics_names_the_op_of_the_merged_member_that_made_a_nan(cl_device,
                                                                           monkeypatch):
    monkeypatch.setenv("GRAPHC_CHECK_NUMERICS", "1")
    x = gc.placeholder((5, 7), gc.float32, name="x")
    fine = gc.max(gc.exp(x), axis=0)
    nan = gc.sum(gc.sqrt(x - 2.0), axis=1)                      # plants a NaN
    fn = gc.function([x], [fine, nan], device=cl_device)
    assert [len(k.members) for k in fn.compiled.kernels] == [2]
    with pytest.raises(gc.NumericsError) as info:
        fn(uniform((5, 7)))
    line = _line_of("# plants a NaN")
    assert f"the first op to produce NaN: sqrt (at tests/test_horizontal.py:{line})" \
        in str(info.value), str(info.value)


# ---- the pass and the memory plan, without a device ----

def _groups():
    """g1 stores a scratch value t1, g2 reads it; g3 stores z, which g4 reads."""
    x = gc.placeholder((4,), gc.float32, name="x")
    t1, z = gc.exp(x), gc.tanh(x)
    y, w = t1 + 1.0, z * 2.0
    g1, g2, g3, g4 = (Group("elementwise", t, stores=[t]) for t in (t1, y, z, w))
    return (g1, g2, g3, g4), (t1, y, z, w)


def test_bundle_steps_merge_only_what_the_dependences_allow():
    import networkx as nx
    (g1, g2, g3, g4), _ = _groups()
    dag = nx.DiGraph()
    dag.add_nodes_from(id(g) for g in (g1, g2, g3, g4))
    dag.add_edges_from([(id(g1), id(g2)), (id(g3), id(g4))])
    steps = bundle_steps([g1, g2, g3, g4], dag)
    assert [[id(m) for m in s.members] if isinstance(s, Bundle) else id(s) for s in steps] \
        == [[id(g1), id(g3)], [id(g2), id(g4)]]
    dag.add_edge(id(g2), id(g3))        # now a chain: nothing merges
    assert bundle_steps([g1, g2, g3, g4], dag) == [g1, g2, g3, g4]


def test_a_merged_step_does_not_reuse_a_buffer_one_of_its_members_reads():
    (g1, g2, g3, g4), (t1, y, z, w) = _groups()
    stored = {t1, y, z, w}
    fixed = {y: "out0", w: "out1"}
    alone = plan_memory([g1, g2, g3, g4], {t1, z}, stored, fixed).buffer_of
    assert alone[z] == alone[t1]        # t1 is dead after g2: z takes its buffer
    together = plan_memory([g1, Bundle([g2, g3]), g4], {t1, z}, stored, fixed).buffer_of
    assert together[z] != together[t1]  # g2 reads t1 while g3 writes z


def test_merged_source_calls_each_member_with_its_own_id():
    renderer = OpenCLRenderer(Capabilities("opencl", True, False, (2, 4, 8, 16), 4, 32768, 256,
                                           None, MAX_PARAMETER_BYTES, MAX_MERGED_SOURCE))

    def render(kernel, members=()):
        return rendered(kernel, renderer, members)

    def kernel(out, items):     # b1[gid] = b0[gid + b0_offset]
        f32, gid = np.dtype(np.float32), var("gid", items)
        ir = Kernel("K", (items,), (Store("b1", gid, Load(f32, "b0", gid, offset="b0_offset")),),
                    (Param("b0", f32), Param("b1", f32, True)), offsets=("b0_offset",))
        return render(BuiltKernel(f"E_{items}", IRBody(ir), ("in", out), items, (), 1, 4, 4,
                                  scalars=(3,)))
    a, b = kernel("out_a", 13), kernel("out_b", 5)
    h = merge_kernels([a, b, a], 8, render)
    assert h.work_items == 16 + 8 + 16
    assert h.args == ("in", "out_a", "in", "out_b", "in", "out_a")
    assert h.scalars == (3, 3, 3) and h.members == (a.name, b.name, a.name)
    assert h.source.count(f"void {h.name}_m") == 2       # a repeated member: one function
    assert "gid - 16);" in h.source and "gid - 24);" in h.source
    assert "if (gid < 40)" in h.source
    header = h.source.split(f"__kernel void {h.name}(")[1].split(")")[0]
    assert header.index("const int") > header.rindex("__global")   # scalars last

