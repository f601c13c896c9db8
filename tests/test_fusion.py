"""Fusion: kernel counts of fused graphs, results equal to the interpreter, the
recompute-versus-store cost model, and in-place parameter updates."""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc
from graphc.ir import Graph
from graphc.passes.fuse import (RECOMPUTE_BUDGET, TRANSCENDENTAL_COST, choose_stored, cone,
                                should_store)

pytestmark = pytest.mark.opencl

RNG = np.random.default_rng(7)


def uniform(shape, low=-1.0, high=1.0) -> np.ndarray:
    return RNG.uniform(low, high, shape).astype(np.float32)


def run_and_compare(inputs, outputs, feeds, rtol=1e-5, atol=1e-6) -> gc.Function:
    """Compile, run, and check every output against gc.interpret; returns the function."""
    fn = gc.function(inputs, outputs)
    got = fn(*feeds)
    want = gc.interpret(outputs, dict(zip(inputs, feeds)))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return fn


def written_args(fn: gc.Function, index: int) -> list[str]:
    """The plan buffers kernel `index` writes: its __global parameters not declared const."""
    kernel = fn.compiled.kernels[index]
    match = re.search(r"__kernel\s+void\s+" + re.escape(kernel.name) + r"\s*\(([^)]*)\)",
                      kernel.source)
    params = [p for p in match.group(1).split(",") if "__global" in p]
    assert len(params) == len(kernel.args), kernel.source
    return [a for a, p in zip(kernel.args, params) if "const" not in p.split("*")[0]]


def writers_of(fn: gc.Function, buffer: str) -> list[int]:
    return [i for i in range(fn.kernel_count) if buffer in written_args(fn, i)]


# ---- kernel counts ----

def test_ten_chained_elementwise_ops_are_one_kernel(cl_device):
    x = gc.placeholder((16, 8), gc.float32, name="x")
    y = x
    for op in [gc.tanh, gc.relu, gc.sigmoid, gc.abs, gc.exp, gc.sqrt, gc.sin, gc.cos,
               gc.square, gc.negative]:
        y = op(y)
    fn = run_and_compare([x], [y], [uniform((16, 8))])
    assert fn.kernel_count == 1
    assert len(fn.compiled.graph.nodes) >= 10


def test_ten_chained_binary_ops_with_broadcast_are_one_kernel(cl_device):
    x = gc.placeholder((4, 8), gc.float32, name="x")
    b = gc.placeholder((8,), gc.float32, name="b")
    y = x
    for i in range(5):
        y = y * b + float(i)
    fn = run_and_compare([x, b], [y], [uniform((4, 8)), uniform((8,))])
    assert fn.kernel_count == 1


def test_dense_relu_is_one_kernel(cl_device):
    x = gc.placeholder((8, 16), gc.float32, name="x")
    W = gc.variable(uniform((16, 12)), name="W")
    b = gc.variable(uniform((12,)), name="b")
    fn = run_and_compare([x], [gc.relu(x @ W + b)], [uniform((8, 16))], rtol=1e-5, atol=1e-5)
    assert fn.kernel_count == 1


def test_sum_of_exp_is_one_kernel(cl_device):
    x = gc.placeholder((6, 10), gc.float32, name="x")
    fn = run_and_compare([x], [gc.sum(gc.exp(x))], [uniform((6, 10))])
    assert fn.kernel_count == 1


def test_row_sum_of_exp_with_epilogue_is_one_kernel(cl_device):
    x = gc.placeholder((6, 10), gc.float32, name="x")
    y = gc.log(gc.sum(gc.exp(x), axis=1)) * 2.0
    fn = run_and_compare([x], [y], [uniform((6, 10))])
    assert fn.kernel_count == 1


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_takes_at_most_two_kernels(cl_device, axis):
    x = gc.placeholder((8, 10), gc.float32, name="x")
    fn = run_and_compare([x], [gc.softmax(x * 2.0 + 1.0, axis=axis)], [uniform((8, 10))])
    assert fn.kernel_count <= 2


def test_softmax_written_by_hand_takes_at_most_three_kernels(cl_device):
    """exp(x - max) / sum: the max, the sum (exp recomputed inline) and the division."""
    x = gc.placeholder((8, 10), gc.float32, name="x")
    e = gc.exp(x - gc.max(x, axis=1, keepdims=True))
    fn = run_and_compare([x], [e / gc.sum(e, axis=1, keepdims=True)], [uniform((8, 10))])
    assert fn.kernel_count <= 3


def test_independent_elementwise_outputs_share_a_kernel(cl_device):
    """Siblings of one shape reading the same input become one multi-output kernel."""
    x = gc.placeholder((5, 7), gc.float32, name="x")
    fn = run_and_compare([x], [gc.exp(x), gc.tanh(x) * 3.0, x * x], [uniform((5, 7))])
    assert fn.kernel_count == 1


def test_movement_ops_cost_no_kernel(cl_device):
    x = gc.placeholder((4, 6), gc.float32, name="x")
    y = gc.pad(gc.transpose(x)[::2, 1:], [(1, 0), (0, 2)]).reshape((5, 4)) + 1.0
    fn = run_and_compare([x], [y], [uniform((4, 6))])
    assert fn.kernel_count == 1


def test_attention_head_views_cost_no_copy_kernel(cl_device):
    """Heads moved next to the batch and back (reshapes and transposes no layout flag
    describes) are read by the GEMMs in place: projections (bias in their store), scores,
    softmax, value product and output projection, seven kernels."""
    batch, steps, heads, dim = 2, 5, 3, 4
    x = gc.placeholder((batch * steps, heads * dim), gc.float32, name="x")
    weights = [gc.constant(uniform((heads * dim, heads * dim))) for _ in range(4)]
    bias = gc.constant(uniform((heads * dim,)))

    def split(w):
        flat = gc.reshape(x @ w + bias, (batch, steps, heads, dim))
        return gc.reshape(gc.transpose(flat, (0, 2, 1, 3)), (batch * heads, steps, dim))

    q, k, v = (split(w) for w in weights[:3])
    mixed = gc.softmax(q @ gc.transpose(k, (0, 2, 1))) @ v
    merged = gc.transpose(gc.reshape(mixed, (batch, heads, steps, dim)), (0, 2, 1, 3))
    out = gc.reshape(merged, (batch * steps, heads * dim)) @ weights[3]
    fn = run_and_compare([x], [out], [uniform((batch * steps, heads * dim))])
    assert fn.kernel_count == 7, fn.dump()


def test_residual_add_after_a_dense_layer_on_sequences_is_its_epilogue(cl_device):
    """Dense on (batch, steps, features) multiplies rows (a reshape to 2-D and back): the
    residual add reads the product through that reshape at its own position, so it is
    stored by the GEMM, one kernel."""
    x = gc.placeholder((3, 5, 8), gc.float32, name="x")
    dense = gc.nn.Dense(8, activation="relu")
    out = x + dense(x)
    dense.kernel.set_value(uniform((8, 8)))
    fn = run_and_compare([x], [out], [uniform((3, 5, 8))])
    assert fn.kernel_count == 1, fn.dump()


def test_index_forms_recombine_across_reshapes():
    from graphc.codegen.index import flatten, render, unflatten, var
    i, j = var("i", 64), var("j", 64)
    split = unflatten(flatten([i, j], (64, 64)), (64, 4, 16))
    assert [render(f) for f in split] == ["i", "((j) / 16)", "((j) % 16)"]
    assert [render(f) for f in unflatten(flatten(split, (64, 4, 16)), (64, 64))] == ["i", "j"]


# ---- the MLP training step ----

def mlp_step(batch=8, dims=(16, 12, 12, 10), lr=0.1):
    """x -> relu dense -> relu dense -> dense logits; softmax cross-entropy; one SGD step."""
    rng = np.random.default_rng(0)
    x = gc.placeholder((batch, dims[0]), gc.float32, name="x")
    y = gc.placeholder((batch,), gc.int32, name="y")
    params, h = [], x
    for i, (fan_in, fan_out) in enumerate(zip(dims, dims[1:])):
        W = gc.variable((rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in))
                        .astype(np.float32), name=f"W{i + 1}")
        b = gc.variable(np.full(fan_out, 0.01, np.float32), name=f"b{i + 1}")
        params += [W, b]
        h = h @ W + b
        if i < len(dims) - 2:
            h = gc.relu(h)
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, h, from_logits=True))
    grads = gc.grad(loss, params)
    updates = [(p, p - lr * g) for p, g in zip(params, grads)]
    feeds = [rng.standard_normal((batch, dims[0])).astype(np.float32),
             rng.integers(0, dims[-1], batch).astype(np.int32)]
    return x, y, loss, params, updates, feeds


# The current count of kernels for the MLP's forward + backward + SGD step (11: 3 forward
# GEMMs with bias/relu epilogues, one softmax cross-entropy row kernel writing the loss rows
# and the logits' gradient, the mean, 2 backward GEMMs with the relu masks as epilogues, and
# 3 weight-gradient GEMMs + 3 bias reductions each writing its SGD update in place, the
# three reductions merged horizontally into one launch). A change that fuses more lowers it.
MLP_STEP_KERNELS = 11


def test_mlp_training_step_fuses_below_one_kernel_per_op(cl_device):
    x, y, loss, params, updates, feeds = mlp_step()
    before = [p.get_value().copy() for p in params]
    want_loss, *want_params = gc.interpret([loss] + [u for _, u in updates],
                                           dict(zip([x, y], feeds)))
    step = gc.function([x, y], [loss], updates=updates)
    ops = len(step.compiled.graph.nodes)
    assert step.kernel_count < ops
    assert step.kernel_count <= MLP_STEP_KERNELS, step.dump()
    (got_loss,) = step(*feeds)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-6)
    for p, want, old in zip(params, want_params, before):
        np.testing.assert_allclose(p.get_value(), want, rtol=1e-5, atol=1e-6, err_msg=p.name)
        assert not np.allclose(p.get_value(), old), f"{p.name} was not updated"


def test_mlp_training_steps_keep_matching_the_interpreter(cl_device):
    """Three steps in a row: the updated variables feed the next step correctly."""
    x, y, loss, params, updates, feeds = mlp_step()
    step = gc.function([x, y], [loss], updates=updates)
    for _ in range(3):
        want_loss, *want_params = gc.interpret([loss] + [u for _, u in updates],
                                               dict(zip([x, y], feeds)))
        (got_loss,) = step(*feeds)
        np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-6)
        for p, want in zip(params, want_params):
            np.testing.assert_allclose(p.get_value(), want, rtol=1e-5, atol=1e-6)


def test_a_weight_used_through_a_reshape_is_updated_in_its_gradients_gemm(cl_device):
    """MultiHeadAttention's (features, heads, dim) kernels are multiplied as (features,
    heads * dim): the SGD update, of the weight's shape, is stored by the weight gradient's
    GEMM straight into the variable, with no copy kernel."""
    x = gc.placeholder((6, 4), gc.float32, name="x")
    w = gc.variable(uniform((4, 2, 3)), name="w")
    loss = gc.sum(gc.square(x @ gc.reshape(w, (4, 6))))
    (grad,) = gc.grad(loss, [w])
    step = gc.function([x], [loss], updates=[(w, w - 0.1 * grad)])
    before, feed = w.get_value(), uniform((6, 4))
    want = gc.interpret([loss, w - 0.1 * grad], {x: feed})
    step(feed)
    np.testing.assert_allclose(w.get_value(), want[1], rtol=1e-5, atol=1e-6)
    writers = writers_of(step, {p: b for b, p in step.compiled.leaves.items()}[w])
    assert len(writers) == 1 and step.compiled.kernels[writers[0]].name.startswith("MM"), \
        step.dump()
    assert not np.array_equal(before, w.get_value())


def test_sgd_updates_are_written_in_place_by_the_kernels_that_compute_them(cl_device):
    x, y, loss, params, updates, feeds = mlp_step()
    step = gc.function([x, y], [loss], updates=updates)
    names = {p: b for b, p in step.compiled.leaves.items()}
    for p in params:
        writers = writers_of(step, names[p])
        assert len(writers) == 1, f"{p.name} is written by kernels {writers}"
        ops = " ".join(step.compiled.kernels[writers[0]].ops)
        expected = "matmul" if p.name.startswith("W") else "reduce_sum"
        assert expected in ops and "subtract" in ops, (p.name, ops)
    copies = [k.name for k in step.compiled.kernels
              if [op.split(" #")[0] for op in k.ops] == ["reshape"]]
    assert copies == []


def test_update_that_reads_the_variable_transposed_goes_through_a_copy(cl_device):
    """W <- W + W.T reads W at another index than it writes: not safe in place."""
    W = gc.variable(np.arange(9, dtype=np.float32).reshape(3, 3), name="W")
    want = W.get_value() + W.get_value().T
    fn = gc.function([], [], updates=[(W, W + gc.transpose(W))])
    fn()
    np.testing.assert_allclose(W.get_value(), want)
    assert fn.kernel_count == 2
    assert len(writers_of(fn, next(b for b in fn.compiled.leaves if b.startswith("var:")))) == 1


def test_elementwise_update_is_in_place_and_one_kernel(cl_device):
    x = gc.placeholder((4,), gc.float32, name="x")
    v = gc.variable(np.ones(4, np.float32), name="v")
    fn = gc.function([x], [], updates=[(v, v * 0.9 + x)])
    fn(np.arange(4, dtype=np.float32))
    np.testing.assert_allclose(v.get_value(), 0.9 + np.arange(4))
    assert fn.kernel_count == 1
    assert written_args(fn, 0) == ["var:v"]


# ---- the recompute-versus-store cost model ----

def users_and_stored(*outputs):
    graph = Graph.from_outputs(list(outputs))
    return graph.users(), choose_stored(graph, list(outputs))


def test_cheap_value_with_two_consumers_is_recomputed():
    x = gc.placeholder((4, 4), gc.float32, name="x")
    a = x * 2.0 + 1.0
    outs = [gc.exp(a), gc.sum(a, axis=0)]
    users, stored = users_and_stored(*outs)
    assert len(users[a]) == 2
    assert not should_store(a, users[a], set(outs))
    assert a not in stored


def test_expensive_value_with_many_consumers_is_stored():
    x = gc.placeholder((4, 4), gc.float32, name="x")
    a = gc.exp(gc.log(gc.exp(gc.abs(x) + 1.0)))
    outs = [a + 1.0, gc.sum(a, axis=0), gc.max(a, axis=1), a * x]
    users, stored = users_and_stored(*outs)
    cost = 2 * TRANSCENDENTAL_COST + TRANSCENDENTAL_COST + 2
    assert cost * (len(users[a]) - 1) > RECOMPUTE_BUDGET
    assert should_store(a, users[a], set(outs))
    assert a in stored


def test_store_threshold_follows_the_budget():
    """One exp shared by two consumers is recomputed; by four, stored (4*1 vs 4*3 > 8)."""
    x = gc.placeholder((4, 4), gc.float32, name="x")
    e = gc.exp(x)
    two = [e + 1.0, e * 2.0]
    users, _ = users_and_stored(*two)
    assert not should_store(e, users[e], set(two))
    four = [e + 1.0, e * 2.0, e - 3.0, gc.sum(e, axis=0)]
    users, _ = users_and_stored(*four)
    assert should_store(e, users[e], set(four))


def test_value_feeding_a_matmul_with_arithmetic_is_stored():
    x = gc.placeholder((4, 5), gc.float32, name="x")
    W = gc.placeholder((5, 3), gc.float32, name="W")
    a = x * 2.0 + 1.0
    out = a @ W
    users, stored = users_and_stored(out)
    assert should_store(a, users[a], {out})
    assert a in stored


def test_view_feeding_a_matmul_is_not_stored():
    """A transpose is index arithmetic: the GEMM reads through it, no copy is made."""
    x = gc.placeholder((5, 4), gc.float32, name="x")
    W = gc.placeholder((5, 3), gc.float32, name="W")
    t = gc.transpose(x)
    out = t @ W
    users, stored = users_and_stored(out)
    assert not should_store(t, users[t], {out})
    assert t not in stored


def test_cone_stops_at_stored_values():
    x = gc.placeholder((3,), gc.float32, name="x")
    a = gc.exp(x)
    b = a + 1.0
    c = b * 2.0
    assert set(cone(c, set())) == {c, b, a}
    assert set(cone(c, {a})) == {c, b, a} - {a}


def test_recomputed_value_is_computed_by_each_consumer_kernel(cl_device):
    """a is cheap: the reduction kernel and the elementwise kernel both compute it inline."""
    x = gc.placeholder((4, 6), gc.float32, name="x")
    a = x * 2.0 + 1.0
    outs = [gc.exp(a), gc.sum(a, axis=0)]
    fn = run_and_compare([x], outs, [uniform((4, 6))])
    assert fn.kernel_count == 1         # the two independent kernels run as one launch
    (kernel,) = fn.compiled.kernels
    assert len(kernel.members) == 2
    ops = [op.split(" #")[0] for op in kernel.ops]
    assert ops.count("multiply") == ops.count("add") == 2, ops


def test_stored_value_is_computed_once(cl_device):
    """exp(tanh(exp(|x| + 1))) read by four kernels: one kernel computes it, once."""
    x = gc.placeholder((4, 6), gc.float32, name="x")
    a = gc.exp(gc.tanh(gc.exp(gc.abs(x) + 1.0)))
    outs = [a + 1.0, gc.sum(a, axis=0), gc.max(a, axis=1), gc.min(a, axis=0)]
    fn = run_and_compare([x], outs, [uniform((4, 6))], rtol=1e-5)
    computing = [k.name for k in fn.compiled.kernels if any(op.startswith("tanh")
                                                              for op in k.ops)]
    assert len(computing) == 1, [k.ops for k in fn.compiled.kernels]
    assert fn.kernel_count == 2         # the three readers of `a` run as one launch
    assert len(fn.compiled.kernels[1].members) == 3


# ---- bugs found while writing these tests (now regression tests) ----

def test_merged_sibling_runs_after_the_reduction_it_reads(cl_device):
    """Found by the fuzzer: the merged kernel ran before the reduction it reads (fixed in 851a304)."""
    x = gc.placeholder((2, 3), gc.float32, name="x")
    b = x + 1.0
    j = x * gc.sum(x * x, axis=1, keepdims=True)
    run_and_compare([x], [b, j], [np.arange(6, dtype=np.float32).reshape(2, 3)])


def test_variables_can_swap_values(cl_device):
    """Update values that are leaves need a copy kernel each (was a KeyError in compiler._fuse)."""
    A = gc.variable(np.array([1.0, 2.0], np.float32), name="A")
    B = gc.variable(np.array([10.0, 20.0], np.float32), name="B")
    gc.function([], [], updates=[(A, B), (B, A)])()
    np.testing.assert_array_equal(A.get_value(), [10.0, 20.0])
    np.testing.assert_array_equal(B.get_value(), [1.0, 2.0])


def test_one_value_can_update_two_variables(cl_device):
    A = gc.variable(np.array([1.0, 2.0], np.float32), name="A")
    B = gc.variable(np.array([10.0, 20.0], np.float32), name="B")
    u = A + B
    gc.function([], [], updates=[(A, u), (B, u)])()
    np.testing.assert_array_equal(A.get_value(), [11.0, 22.0])
    np.testing.assert_array_equal(B.get_value(), [11.0, 22.0])


def test_output_may_read_both_the_new_and_the_old_value(cl_device):
    """u cannot be written in place while another kernel reads both u and A (was 'fusion produced a cycle between kernels'; fixed in 7ebaa0c)."""
    A = gc.variable(np.array([1.0, 2.0], np.float32), name="A")
    u = A * 2.0
    (out,) = gc.function([], [u + A], updates=[(A, u)])()
    np.testing.assert_array_equal(out, [3.0, 6.0])
    np.testing.assert_array_equal(A.get_value(), [2.0, 4.0])


RACE_SIZE = 1 << 16


def test_in_place_update_is_not_merged_with_a_reader_at_other_indices(cl_device):
    """A kernel reading A reversed must not write A in place (was a race; fixed in 7ebaa0c)."""
    a0 = np.arange(RACE_SIZE, dtype=np.float32)
    A = gc.variable(a0.copy(), name="A")
    (out,) = gc.function([], [A[::-1] * 2.0], updates=[(A, A + 1.0)])()
    np.testing.assert_array_equal(A.get_value(), a0 + 1.0)
    np.testing.assert_array_equal(out, a0[::-1] * 2.0)


def test_in_place_updates_reading_each_other_reversed(cl_device):
    """Each update reads the other variable at mirrored indices: no in-place write may race with those reads (was a race; fixed in 7ebaa0c)."""
    a0 = np.arange(RACE_SIZE, dtype=np.float32)
    b0 = a0 * 10.0
    A = gc.variable(a0.copy(), name="A")
    B = gc.variable(b0.copy(), name="B")
    gc.function([], [], updates=[(A, A + B[::-1]), (B, B + A[::-1])])()
    np.testing.assert_array_equal(A.get_value(), a0 + b0[::-1])
    np.testing.assert_array_equal(B.get_value(), b0 + a0[::-1])


def test_update_that_does_not_read_the_variable(cl_device):
    x = gc.placeholder((3,), gc.float32, name="x")
    v = gc.variable(np.zeros(3, np.float32), name="v")
    gc.function([x], [], updates=[(v, x * 2.0)])(np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(v.get_value(), [0.0, 2.0, 4.0])


def test_in_place_update_with_a_reduction_output_of_the_old_and_new_value(cl_device):
    A = gc.variable(np.array([1.0, 2.0], np.float32), name="A")
    u = A * 2.0
    (out,) = gc.function([], [gc.sum(u) + gc.sum(A)], updates=[(A, u)])()
    assert out == 9.0
    np.testing.assert_array_equal(A.get_value(), [2.0, 4.0])


def test_updates_reading_each_others_sums(cl_device):
    A = gc.variable(np.array([1.0, 2.0], np.float32), name="A")
    B = gc.variable(np.array([10.0, 20.0], np.float32), name="B")
    gc.function([], [], updates=[(A, A + gc.sum(B)), (B, B + gc.sum(A))])()
    np.testing.assert_array_equal(A.get_value(), [31.0, 32.0])
    np.testing.assert_array_equal(B.get_value(), [13.0, 23.0])


def test_transposed_matmul_result_is_not_an_epilogue(cl_device):
    x = gc.placeholder((64, 8), gc.float32, name="x")
    b = x @ gc.transpose(x)
    run_and_compare([x], [b, gc.transpose(b * 2.0)], [uniform((64, 8))], atol=1e-5)


def test_transposed_reduction_result_is_not_an_epilogue(cl_device):
    x = gc.placeholder((16, 16, 16), gc.float32, name="x")
    r = gc.sum(x, axis=2)
    run_and_compare([x], [r, gc.transpose(r * 2.0)], [uniform((16, 16, 16))], atol=1e-5)


def test_transposed_reduction_alone_compiles(cl_device):
    x = gc.placeholder((8, 8, 8), gc.float32, name="x")
    run_and_compare([x], [gc.transpose(gc.sum(x, axis=2) * 2.0)], [uniform((8, 8, 8))],
                    atol=1e-5)


def test_reversed_reduction_result_is_read_from_its_buffer(cl_device):
    x = gc.placeholder((6, 6), gc.float32, name="x")
    r = gc.sum(x, axis=1)
    fn = run_and_compare([x], [r, r[::-1] * 2.0], [uniform((6, 6))])
    assert fn.kernel_count == 2


# ---- concatenations written in place, and the LSTM training step ----

def test_concatenation_of_computed_pieces_is_written_in_place(cl_device):
    xs = [gc.placeholder((16, 64), gc.float32, name=f"x{i}") for i in range(4)]
    pieces = [gc.exp(x) for x in xs]
    stacked, inner = gc.concatenate(pieces, axis=0), gc.concatenate(pieces[1:], axis=0)
    outputs = [gc.sum(stacked, axis=0), gc.max(stacked, axis=1), gc.sum(inner, axis=1),
               gc.max(inner, axis=0)]
    fn = run_and_compare(xs, outputs, [uniform((16, 64)) for _ in xs])
    assert not any("concatenate" in op for k in fn.compiled.kernels for op in k.ops)
    views = fn.compiled.memory.views
    stacked_buffer = fn.compiled.memory.buffer_of[stacked]
    assert sorted(offset for parent, offset, _ in views.values()
                  if parent == stacked_buffer) == [0, 4096, 4096, 8192, 12288]
    # four pieces, then four reductions, each four run as one launch; no stacking kernel
    assert [len(k.members) for k in fn.compiled.kernels] == [4, 4]


def test_unaligned_pieces_are_concatenated_by_a_kernel(cl_device):
    xs = [gc.placeholder((3, 5), gc.float32, name=f"x{i}") for i in range(3)]
    stacked = gc.concatenate([gc.exp(x) for x in xs], axis=0)
    fn = run_and_compare(xs, [gc.sum(stacked, axis=0), gc.max(stacked, axis=1)],
                         [uniform((3, 5)) for _ in xs])
    assert not fn.compiled.memory.views
    assert any("concatenate" in op for k in fn.compiled.kernels for op in k.ops)


def test_concatenation_of_gemm_epilogues_is_stored_by_the_gemm(cl_device):
    x = gc.placeholder((16, 8), gc.float32, name="x")
    w = gc.placeholder((8, 32), gc.float32, name="w")
    y = x @ w
    pieces = [gc.tanh(y), y * 2.0, gc.zeros((16, 32)), gc.sigmoid(y) * x[:, :1]]
    out = gc.concatenate(pieces, axis=1)
    fn = run_and_compare([x, w], [out, gc.concatenate(pieces[:2], axis=0)],
                         [uniform((16, 8)), uniform((8, 32))])
    assert fn.kernel_count == 1, fn.dump()         # both concatenations: GEMM epilogues


def test_concatenation_reading_a_gemm_transposed_gets_its_own_kernel(cl_device):
    x = gc.placeholder((16, 16), gc.float32, name="x")
    y = x @ x
    fn = run_and_compare([x], [gc.concatenate([gc.tanh(y), y.T], axis=1)],
                         [uniform((16, 16))])
    assert fn.kernel_count == 2, fn.dump()


def test_stack_of_copied_pieces_stays_one_kernel(cl_device):
    x, w = gc.placeholder((4, 16, 64), gc.float32, name="x"), gc.placeholder((64, 8), name="w")
    stacked = gc.concatenate([x[i] for i in (3, 1, 2, 0)], axis=0)
    fn = run_and_compare([x, w], [stacked @ w], [uniform((4, 16, 64)), uniform((64, 8))])
    assert fn.kernel_count == 2 and not fn.compiled.memory.views     # not four copies


def lstm_step(batch=16, steps=6, features=5, units=64, classes=3, lr=0.1):
    """LSTM(units) -> Dense(classes), softmax cross-entropy, one SGD step."""
    rng = np.random.default_rng(1)
    x = gc.placeholder((batch, steps, features), gc.float32, name="x")
    y = gc.placeholder((batch,), gc.int32, name="y")
    layers = [gc.nn.LSTM(units), gc.nn.Dense(classes)]
    h = x
    for layer in layers:
        h = layer(h)
    params = [w for layer in layers for w in layer.weights]
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, h, from_logits=True))
    updates = [(p, p - lr * g) for p, g in zip(params, gc.grad(loss, params))]
    feeds = [rng.standard_normal((batch, steps, features)).astype(np.float32),
             rng.integers(0, classes, batch).astype(np.int32)]
    return x, y, loss, params, updates, feeds


# Kernels of the 6-step LSTM training step (26): per step a forward GEMM and gate kernel and
# a backward GEMM whose epilogue stores the step's four gate gradients into their column
# blocks (the first step has no forward GEMM); the input transposed, its projection, 3
# weight-gradient GEMMs and the bias sum; the dense layer and the loss. The stacks of gate
# gradients and of states the weight gradients read are written in place by the step
# kernels (no stacking kernels). The LSTM's and the dense layer's bias sums run as one
# launch (horizontal merge). A change that fuses more lowers it.
LSTM_STEP_KERNELS = 26


def test_lstm_training_step_kernel_count(cl_device):
    x, y, loss, params, updates, feeds = lstm_step()
    want_loss, *want_params = gc.interpret([loss] + [u for _, u in updates],
                                           dict(zip([x, y], feeds)))
    step = gc.function([x, y], [loss], updates=updates)
    assert step.kernel_count <= LSTM_STEP_KERNELS, step.dump()
    assert not [k.name for k in step.compiled.kernels if k.name.startswith("E_16_256")]
    (got_loss,) = step(*feeds)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-6)
    for p, want in zip(params, want_params):
        np.testing.assert_allclose(p.get_value(), want, rtol=1e-4, atol=1e-5, err_msg=p.name)


def test_conv_block_backward_has_no_copy_kernel_and_one_weight_gradient_kernel():
    """The weight gradient GEMM writes the SGD update itself (no partial sums kernel), and
    the reshape between a dense layer's gradient and the pooling gradient costs no kernel."""
    x = gc.placeholder((2, 2, 10, 10), gc.float32, name="x")
    g = gc.placeholder((2, 4), gc.float32, name="g")
    w = gc.variable(uniform((3, 2, 3, 3)), name="w")
    v = gc.variable(uniform((75, 4)), name="v")
    pooled = gc.max_pool2d(gc.relu(gc.conv2d(x, w, padding=1)), 2)
    loss = gc.sum(gc.reshape(pooled, (2, 75)) @ v * g)
    dw = gc.grad(loss, w)
    feeds = [uniform(x.shape), uniform(g.shape)]
    want = gc.interpret([w - 0.1 * dw], dict(zip([x, g], feeds)))[0]
    fn = gc.function([x, g], [], updates=[(w, w - 0.1 * dw)])
    fn(*feeds)
    np.testing.assert_allclose(w.get_value(), want, rtol=1e-5, atol=1e-6)
    kernels = fn.compiled.kernels
    assert [k.name.split("_")[0] for k in kernels if "CONVDW" in k.name] == ["CONVDW"]
    copies = [k.name for k in kernels if all(op.startswith("reshape ") for op in k.ops)]
    assert copies == [], fn.dump()


def test_epilogues_that_would_make_kernels_wait_on_each_other_are_fused_strictly(
        cl_device, monkeypatch):
    """q = p * sum(s) may join p's GEMM (the sum is a plain load), and e = sum(p) * sum(s)
    the kernel of sum(s): together the two kernels would each wait on the other."""
    from graphc.passes import fuse
    x, w = gc.placeholder((32, 4), gc.float32, name="x"), gc.placeholder((4, 1), name="w")
    s = gc.placeholder((32,), gc.float32, name="s")
    p = x @ w
    e = gc.reshape(gc.sum(p, axis=0), ()) * gc.sum(s)
    modes = []
    relaxed = fuse._fuse_epilogues
    monkeypatch.setattr(fuse, "_fuse_epilogues",
                        lambda groups, stored, strict=False: modes.append(strict)
                        or relaxed(groups, stored, strict))
    run_and_compare([x, w, s], [e, p * gc.sum(s)],
                    [uniform((32, 4)), uniform((4, 1)), uniform((32,))])
    assert modes == [False, True]


def test_gemm_epilogue_may_read_another_loop_output_through_a_broadcast(cl_device):
    x, w = gc.placeholder((16, 8), gc.float32, name="x"), gc.placeholder((8, 12), name="w")
    rows = gc.sum(gc.exp(x), axis=1)
    out = gc.tanh(x @ w) * rows[:, None]
    fn = run_and_compare([x, w], [out], [uniform((16, 8)), uniform((8, 12))])
    assert fn.kernel_count == 2, fn.dump()           # the row sums, then the GEMM
