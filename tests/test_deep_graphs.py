"""Deep and wide graphs: chains of tens of thousands of ops compile, run, differentiate,
print and verify without recursion proportional to their depth, and fusion keeps every
kernel under its caps (ops, buffer arguments, parameter bytes, source size), so long chains
and thousands of outputs build in time linear in their size (issue 12, points 6 and 7)."""
from __future__ import annotations

import contextlib
import sys

import networkx as nx
import numpy as np
import pytest

import graphc as gc
from graphc.codegen.built import BuiltKernel, IRBody
from graphc.codegen.horizontal import merge_within_caps, parameter_bytes
from graphc.codegen.kernel import Apply, Const, Kernel, Load, Param, Store, walk
from graphc.codegen.index import Mod, lin, mod, var
from graphc.codegen.opencl import Emitter
from graphc.codegen.opencl_renderer import OpenCLRenderer
from graphc.codegen.program import rendered
from graphc.codegen.renderer import MAX_MERGED_SOURCE, MAX_PARAMETER_BYTES, Capabilities
from graphc.ir import Graph
from graphc.passes.fuse import Group, cone, make_groups
from graphc.passes.horizontal import MAX_MEMBERS, bundle_steps, members
from graphc.passes.kernel_size import MAX_KERNEL_BUFFERS, MAX_KERNEL_DIVISIONS, MAX_KERNEL_OPS
from graphc.passes.pipeline import optimize

F32 = np.dtype(np.float32)


@contextlib.contextmanager
def shallow_stack(room: int = 150):
    """Python's recursion limit at the current depth plus `room` frames: anything that
    recursed once per op (or per level of an expression) of a deep graph fails inside."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + room)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def affine_chain(x, steps: int):
    """x * 1.0001 + 0.001, `steps` times (2 ops a step)."""
    for _ in range(steps):
        x = x * 1.0001 + 0.001
    return x


def affine_chain_numpy(x: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        x = x * np.float32(1.0001) + np.float32(0.001)
    return x


def kernel_ops(fn: gc.Function) -> list[int]:
    """The graph ops each kernel computes (movement ops included)."""
    return [len(k.ops) for k in fn.compiled.kernels]


# ---- the kernel IR: expressions 100,000 levels deep (no device) ----

def deep_expression(depth: int):
    load = Load(F32, "b0", lin(0))
    value = load
    for i in range(depth):
        value = Apply(F32, "add" if i % 2 else "multiply", (value, Const(F32, 1.5)))
    return value


def test_expressions_100000_deep_hash_compare_walk_and_render_without_recursion():
    a, b = deep_expression(100_000), deep_expression(100_000)
    with shallow_stack():
        assert a is not b and hash(a) == hash(b) and a == b
        assert a != deep_expression(99_999)
        assert len(walk(a)) == 100_000 + 2          # the load, the constant, the applies
        emitter = Emitter("  ")
        name = emitter.value(a)
    assert len(emitter.lines) == 100_000 + 1 and name in emitter.lines[-1]


# ---- graph stages of a deep graph (no device) ----

def mixed_chain(steps: int):
    """A chain of elementwise ops with a small matmul and a reduction every 100 steps."""
    x = gc.placeholder((4, 4), gc.float32, name="x")
    w = gc.constant(np.eye(4, dtype=np.float32) * 0.5)
    y = x
    for i in range(steps):
        y = gc.tanh(y * 1.0001 + 0.001)
        if i % 100 == 99:
            y = y @ w + gc.sum(y, axis=0) * 0.01
    return x, y


def test_printing_parsing_verifying_interpreting_and_passes_of_a_deep_graph():
    x, y = mixed_chain(1_500)
    cost = gc.sum(y)
    feed = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    graph = Graph.from_outputs([cost])
    with shallow_stack():
        text = str(graph)
        assert len(gc.parse(text).nodes) == len(graph.nodes)
        gc.verify(graph)
        assert "matmul" in gc.dump(cost) and "digraph" in gc.dump(cost, format="dot")
        tree = gc.debugprint(cost)
        optimized, _ = optimize(graph, verify_each=True)
        want = gc.interpret(cost, {x: feed})
        got = gc.interpret(optimized.outputs[0], {x: feed})
        grad = gc.grad(cost, x)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert grad.shape == (4, 4)
    width = max(map(len, tree.splitlines()))
    assert width < 3 * 70 + 80, width           # subtrees deeper than 64 levels go below


def test_debugprint_of_a_deep_chain_continues_cut_subtrees_as_roots():
    x = gc.placeholder((3,), name="x")
    y = x
    for _ in range(200):
        y = gc.exp(y)
    lines = gc.debugprint(y).splitlines()
    assert sum("exp [id" in line and not line.endswith("↓") for line in lines) == 200
    cut = [line for line in lines if line.endswith("↓")]
    assert len(cut) == 3                                        # at depths 64, 128, 192
    roots = [line for line in lines if line.startswith("exp [id")]
    assert len(roots) == 4 and cut[0].split()[-2] == roots[1].split()[2]


def test_fusion_of_a_long_chain_caps_every_kernel_and_stays_linear():
    x = gc.placeholder((8,), gc.float32, name="x")
    y = affine_chain(x, 10_000)
    graph, _ = optimize(Graph.from_outputs([y], inputs=[x]))
    with shallow_stack():
        groups = make_groups(graph, list(graph.outputs))
    stored = {t for g in groups for t in g.stores}
    sizes = [len(cone(g.root, stored)) for g in groups]
    assert max(sizes) <= MAX_KERNEL_OPS
    assert len(groups) <= 2 * 20_000 // MAX_KERNEL_OPS + 1    # no needless cuts either


def test_many_outputs_of_one_input_merge_up_to_the_buffer_cap():
    x = gc.placeholder((64,), gc.float32, name="x")
    outs = [x * float(i + 1) + float(i) for i in range(500)]
    graph, _ = optimize(Graph.from_outputs(outs, inputs=[x]))
    groups = make_groups(graph, list(graph.outputs))
    assert all(len(g.stores) + 1 <= MAX_KERNEL_BUFFERS for g in groups)   # + the input
    assert len(groups) == -(-500 // (MAX_KERNEL_BUFFERS - 1))


# ---- chains of movement ops: index arithmetic stays small and right ----

def test_a_remainder_never_takes_a_negative_form():
    gid = var("gid", 6)
    form = mod(gid * -1 + 5, 2)         # (5 - gid) % 2: dropping the 4 left 1 - gid
    (atom, _), = form.terms
    assert isinstance(atom, Mod) and atom.form.bounds[0] >= 0      # C's -1 % 2 is -1


@pytest.mark.opencl
def test_a_reversed_transposed_reshape_reads_inside_its_buffer(cl_device):
    x = gc.placeholder((6,), gc.float32, name="x")
    y = gc.reshape(gc.transpose(gc.reshape(x, (2, 3))), (6,))[::-1]
    feed = np.arange(6, dtype=np.float32)
    (got,) = gc.function([x], [y])(feed)
    np.testing.assert_array_equal(got, feed.reshape(2, 3).T.reshape(6)[::-1])


@pytest.mark.opencl
def test_a_chain_of_1000_transposed_reshapes_keeps_its_index_text_small(cl_device):
    x = gc.placeholder((6,), gc.float32, name="x")
    feed = np.arange(6, dtype=np.float32)
    y, want = x, feed
    for i in range(1_000):          # each level doubles the index text read inline
        y = gc.reshape(gc.transpose(gc.reshape(y, (2, 3))), (6,))
        want = want.reshape(2, 3).T.reshape(6)
        if i % 7 == 0:
            y, want = y[::-1], want[::-1]
    with shallow_stack():
        fn = gc.function([x], [y])
        (got,) = fn(feed)
    np.testing.assert_array_equal(got, want)
    assert max(len(k.source) for k in fn.compiled.kernels) < 2 ** MAX_KERNEL_DIVISIONS * 40


# ---- horizontal merges stay under the parameter and source caps ----

RENDERER = OpenCLRenderer(Capabilities(
    "opencl", fp64=True, fp16=False, vector_widths=(2, 3, 4, 8, 16), preferred_vector_width=4,
    local_memory=32768, max_work_group=256, max_buffers=None,
    max_parameter_bytes=MAX_PARAMETER_BYTES, max_merged_source=MAX_MERGED_SOURCE))


def render(kernel, members=()):
    return rendered(kernel, RENDERER, members)


def fake_kernel(seed: int, buffers: int, source_bytes: int = 200):
    """A rendered kernel of `buffers` buffer parameters (the last written) whose source has
    at least `source_bytes` bytes; kernels of different `seed`s differ."""
    gid = var("gid", 4)
    params = tuple(Param(f"b{i}", F32, i == buffers - 1) for i in range(buffers))
    value, terms = Const(F32, float(seed)), 0
    while True:
        kernel = Kernel("K", (4,), (Store(f"b{buffers - 1}", gid, value),), params)
        built = BuiltKernel("E_4", IRBody(kernel), tuple(f"{seed}_{i}" for i in range(buffers)),
                            4, (), 1, 4, 4)
        if len(render(built).source) >= source_bytes:
            return render(built)
        terms += 1
        value = Apply(F32, "add", (value, Load(F32, f"b{terms % buffers}", gid)))


def test_horizontal_merges_stop_at_the_parameter_and_source_caps():
    many_args = [fake_kernel(i, 40) for i in range(8)]      # 320 bytes each
    merged = merge_within_caps(many_args, 8, RENDERER.caps, render)
    assert [len(k.members) for k in merged] == [3, 3, 2]
    assert all(parameter_bytes(k) <= MAX_PARAMETER_BYTES for k in merged)
    big = [fake_kernel(i, 2, MAX_MERGED_SOURCE // 3) for i in range(4)]
    merged = merge_within_caps(big, 8, RENDERER.caps, render)
    assert [len(k.members) or 1 for k in merged] == [2, 2]
    assert all(len(k.source) <= MAX_MERGED_SOURCE + 1000 for k in merged)
    assert merge_within_caps(many_args[:1], 8, RENDERER.caps, render) == many_args[:1]


def test_thousands_of_independent_small_kernels_bundle_by_eights_after_their_sources():
    x = gc.placeholder((8,), gc.float32, name="x")
    values = [x * float(i) for i in range(2_000)]
    groups = [Group("elementwise", v, stores=[v]) for v in values]
    late = values[5] + 1.0                      # reads the sixth: must come after its step
    groups.insert(6, Group("elementwise", late, stores=[late]))
    dag = nx.DiGraph()
    dag.add_nodes_from(id(g) for g in groups)
    dag.add_edge(id(groups[5]), id(groups[6]))
    steps = bundle_steps(groups, dag)
    assert len(steps) == -(-2_001 // MAX_MEMBERS)
    assert all(len(members(s)) == MAX_MEMBERS for s in steps[:-1])
    where = {id(m): i for i, s in enumerate(steps) for m in members(s)}
    assert where[id(groups[6])] == 1 and where[id(groups[5])] == where[id(groups[7])] == 0


# ---- on the device ----

@pytest.mark.opencl
def test_an_elementwise_chain_of_20000_ops_runs_in_capped_kernels_built_once(cl_device):
    x = gc.placeholder((16,), gc.float32, name="x")
    y = affine_chain(x, 10_000)
    feed = np.linspace(-2, 2, 16, dtype=np.float32)
    with shallow_stack():
        fn = gc.function([x], [y])
        (got,) = fn(feed)
    np.testing.assert_allclose(got, affine_chain_numpy(feed, 10_000), rtol=1e-5)
    assert max(kernel_ops(fn)) <= MAX_KERNEL_OPS and fn.kernel_count >= 20_000 / 256
    assert len({k.name for k in fn.compiled.kernels}) <= 3     # equal pieces: one source


@pytest.mark.opencl
def test_a_chain_through_small_matmuls_and_reductions_matches_the_interpreter(cl_device):
    x, y = mixed_chain(1_000)
    feed = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)
    with shallow_stack():
        fn = gc.function([x], [y])
        (got,) = fn(feed)
    np.testing.assert_allclose(got, gc.interpret(y, {x: feed}), rtol=1e-4, atol=1e-6)
    assert max(kernel_ops(fn)) <= MAX_KERNEL_OPS


@pytest.mark.opencl
def test_siblings_deep_in_a_long_chain_still_merge_and_match_the_interpreter(cl_device):
    x = gc.placeholder((4, 4), gc.float32, name="x")
    w = gc.constant(np.eye(4, dtype=np.float32) * 0.5 + 0.01)
    y = x
    for _ in range(300):            # ~900 kernels: sibling merging works in windows
        t = gc.transpose(y)
        y = gc.tanh((t * 2.0) @ w + (t * 3.0) @ w)      # t * 2 and t * 3: one kernel
    feed = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
    with shallow_stack():
        fn = gc.function([x], [y])
        (got,) = fn(feed)
    np.testing.assert_allclose(got, gc.interpret(y, {x: feed}), rtol=1e-5, atol=1e-6)
    assert fn.kernel_count == 3 * 300       # two GEMMs and one merged pair a step


@pytest.mark.opencl
def test_the_gradient_through_a_10000_step_chain_compiles_and_runs(cl_device):
    x = gc.placeholder((8,), gc.float32, name="x")
    y = affine_chain(x, 10_000)
    with shallow_stack():
        grad = gc.grad(gc.sum(y), x)
        fn = gc.function([x], [grad])
        (got,) = fn(np.ones(8, np.float32))
    exact = 1.0001 ** 10_000            # d/dx of a*(...a*(a*x + b)...) + b
    np.testing.assert_allclose(got, np.full(8, exact), rtol=1e-3)
    np.testing.assert_allclose(got, gc.interpret(grad, {x: np.ones(8, np.float32)}),
                               rtol=1e-5)


@pytest.mark.opencl
def test_the_gradient_through_a_chain_reading_each_value_twice(cl_device):
    x = gc.placeholder((8,), gc.float32, name="x")
    y = x
    for _ in range(2_000):          # 200 steps already overflowed the stack in kernel IR
        y = y * y * 0.5 + 0.5
    feed = np.linspace(0.1, 0.9, 8, dtype=np.float32)
    with shallow_stack():
        grad = gc.grad(gc.sum(y), x)
        (got,) = gc.function([x], [grad])(feed)
    np.testing.assert_allclose(got, gc.interpret(grad, {x: feed}), rtol=1e-5, atol=1e-30)


@pytest.mark.opencl
def test_2000_outputs_compile_in_kernels_under_the_caps_and_match_numpy(cl_device):
    x = gc.placeholder((64,), gc.float32, name="x")
    outs = [x * float(i + 1) + float(i) for i in range(2_000)]
    fn = gc.function([x], outs)
    feed = np.linspace(-1, 1, 64, dtype=np.float32)
    got = fn(feed)
    for i, value in enumerate(got):
        np.testing.assert_array_equal(value, feed * np.float32(i + 1) + np.float32(i))
    kernels = fn.compiled.kernels
    assert all(parameter_bytes(k) <= MAX_PARAMETER_BYTES for k in kernels)
    assert max(len(k.source) for k in kernels) <= MAX_MERGED_SOURCE
    assert len(kernels) >= 2_000 * 8 // MAX_PARAMETER_BYTES


@pytest.mark.opencl
def test_a_reduction_with_hundreds_of_epilogues_splits_them_under_the_caps(cl_device):
    x = gc.placeholder((32, 16), gc.float32, name="x")
    total = gc.sum(x, axis=1)
    outs = [gc.tanh(total * float(i)) for i in range(300)]
    feed = np.random.default_rng(2).normal(size=(32, 16)).astype(np.float32)
    fn = gc.function([x], outs)
    got = fn(feed)
    rows = feed.sum(axis=1)
    for i, value in enumerate(got):
        np.testing.assert_allclose(value, np.tanh(rows * i), rtol=1e-5, atol=1e-6)
    assert all(parameter_bytes(k) <= MAX_PARAMETER_BYTES for k in fn.compiled.kernels)


@pytest.mark.slow
@pytest.mark.opencl
def test_an_elementwise_chain_of_100000_ops_compiles_and_runs(cl_device):
    x = gc.placeholder((16,), gc.float32, name="x")
    y = affine_chain(x, 50_000)
    feed = np.linspace(-2, 2, 16, dtype=np.float32)
    with shallow_stack():
        fn = gc.function([x], [y])
        (got,) = fn(feed)
    np.testing.assert_allclose(got, affine_chain_numpy(feed, 50_000), rtol=1e-5)
    assert max(kernel_ops(fn)) <= MAX_KERNEL_OPS


@pytest.mark.slow
@pytest.mark.opencl
def test_a_chain_of_100000_ops_through_small_matmuls_and_reductions_runs(cl_device):
    x = gc.placeholder((4, 4), gc.float32, name="x")
    w = gc.constant(np.eye(4, dtype=np.float32) * 0.5 + 0.01)
    y = x
    for _ in range(20_000):         # five ops a step, two of them loops: 40,000 kernels
        y = gc.tanh(y @ w) + gc.sum(y, axis=0) * 0.01
    feed = np.random.default_rng(4).normal(size=(4, 4)).astype(np.float32)
    with shallow_stack():
        fn = gc.function([x], [y])
        (got,) = fn(feed)
    np.testing.assert_allclose(got, gc.interpret(y, {x: feed}), rtol=1e-5, atol=1e-6)
