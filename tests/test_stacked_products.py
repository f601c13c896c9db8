"""An unrolled recurrence written from primitives compiles like gc.nn's layer: its steps'
input products become one (passes/stacked_products.py), and the sums of its weight
gradients stack the steps' gate gradients alike (passes/matmul_sums.py), with no copy."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.interp import evaluate
from graphc.ir import Graph
from graphc.passes.pipeline import optimize
from graphc.passes.stacked_products import stack_products

BATCH, STEPS, FEATURES, UNITS = 3, 5, 4, 6


def matmuls_reading(graph: Graph, value) -> int:
    return sum(1 for n in graph.nodes if n.op == "matmul" and n.inputs[1] is value)


def same_values(before: Graph, after: Graph, rng) -> None:
    feeds = {p: rng.standard_normal(p.shape).astype(p.dtype) for p in before.placeholders}
    for a, b in zip(evaluate(before, feeds), evaluate(after, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_every_steps_product_by_one_matrix_becomes_one_product(axis):
    rng = np.random.default_rng(axis)
    shape = [BATCH, FEATURES]
    shape.insert(axis, STEPS)
    x = gc.placeholder(tuple(shape), gc.float32, name="x")
    w = gc.variable(rng.standard_normal((FEATURES, UNITS)).astype(np.float32), name="w")
    index = [slice(None)] * 2
    steps = [x[tuple(index[:axis] + [t] + index[axis:])] @ w for t in range(STEPS)]
    graph = Graph.from_outputs([gc.tanh(s) * (t + 1) for t, s in enumerate(steps)])
    stacked = stack_products(graph)
    assert matmuls_reading(graph, w) == STEPS and matmuls_reading(stacked, w) == 1
    product = next(n for n in stacked.nodes if n.op == "matmul")
    assert product.outputs[0].shape == (STEPS * BATCH, UNITS)
    same_values(graph, stacked, rng)
    assert stack_products(stacked) is stacked


def test_a_few_steps_or_different_matrices_are_left_alone():
    rng = np.random.default_rng(7)
    x = gc.placeholder((BATCH, 8, FEATURES), gc.float32, name="x")
    w = [gc.variable(rng.standard_normal((FEATURES, UNITS)).astype(np.float32), name=f"w{i}")
         for i in range(3)]
    three_of_eight = Graph.from_outputs([x[:, t] @ w[0] for t in range(3)])
    one_each = Graph.from_outputs([x[:, t] @ w[t] for t in range(3)])
    assert stack_products(three_of_eight) is three_of_eight
    assert stack_products(one_each) is one_each


def hand_lstm(x, w, u, b, units):
    """An LSTM unrolled op by op, as a Theano user writes it; the last state."""
    h = c = None
    for t in range(x.shape[1]):
        z = x[:, t, :] @ w + b
        if h is not None:
            z = z + h @ u
        i, f = gc.sigmoid(z[:, :units]), gc.sigmoid(z[:, units:2 * units])
        g, o = gc.tanh(z[:, 2 * units:3 * units]), gc.sigmoid(z[:, 3 * units:])
        c = i * g if c is None else f * c + i * g
        h = o * gc.tanh(c)
    return h


def lstm_weights(rng):
    return [rng.standard_normal(s).astype(np.float32) * 0.5
            for s in ((FEATURES, 4 * UNITS), (UNITS, 4 * UNITS), (4 * UNITS,), (UNITS, 3))]


def training_step(rng, values, device, layer: bool):
    """(step, loss, variables) of the LSTM + Dense classifier, by hand or by gc.nn.LSTM."""
    x = gc.placeholder((BATCH, STEPS, FEATURES), gc.float32, name="x")
    y = gc.placeholder((BATCH,), gc.int32, name="y")
    if layer:
        lstm = gc.nn.LSTM(UNITS)
        last = lstm(x)
        lstm.set_weights(values[:3])
        w, u, b = lstm.weights
    else:
        w, u, b = (gc.variable(v, name=n) for v, n in zip(values[:3], "wub"))
        last = hand_lstm(x, w, u, b, UNITS)
    dense = gc.variable(values[3], name="dense")
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, last @ dense,
                                                             from_logits=True))
    variables = [w, u, b, dense]
    updates = gc.optim.SGD(0.5).updates(loss, variables)
    return gc.function([x, y], loss, updates=updates, device=device), loss, variables, (x, y)


@pytest.mark.opencl
def test_a_hand_unrolled_lstm_compiles_to_the_layers_kernels_and_trains_alike(cl_device):
    rng = np.random.default_rng(3)
    values = lstm_weights(rng)
    xv = rng.standard_normal((BATCH, STEPS, FEATURES)).astype(np.float32)
    yv = rng.integers(0, 3, BATCH).astype(np.int32)
    by_hand, loss, variables, (x, y) = training_step(rng, values, cl_device, layer=False)
    layer, *_ = training_step(rng, values, cl_device, layer=True)
    assert by_hand.kernel_count == layer.kernel_count
    names = sorted(k.name.rsplit("_", 1)[0] for k in by_hand.compiled.plan.launches)
    assert names == sorted(k.name.rsplit("_", 1)[0] for k in layer.compiled.plan.launches)
    expected = gc.interpret([loss] + gc.grad(loss, variables), {x: xv, y: yv})
    got = by_hand(xv, yv)
    np.testing.assert_allclose(got, expected[0], rtol=1e-5)
    for variable, before, grad in zip(variables, values, expected[1:]):
        np.testing.assert_allclose(variable.get_value(), before - 0.5 * grad,
                                   rtol=1e-4, atol=1e-5)


def test_the_weight_gradients_of_a_hand_unrolled_lstm_read_the_input_once():
    rng = np.random.default_rng(5)
    w, u, b, dense = (gc.variable(v, name=n) for v, n in zip(lstm_weights(rng), "wubd"))
    x = gc.placeholder((BATCH, STEPS, FEATURES), gc.float32, name="x")
    loss = gc.sum(hand_lstm(x, w, u, b, UNITS) @ dense)
    graph = Graph.from_outputs([loss] + gc.grad(loss, [w, u, b]))
    optimized, _ = optimize(graph)
    # one product forward, one for w's gradient; both read the same time-major input
    lefts = {n.inputs[0] for n in optimized.nodes if n.op == "matmul" and n.inputs[1] is w}
    assert len(lefts) == 1 and next(iter(lefts)).shape == (STEPS * BATCH, FEATURES)
    concatenations = [n for n in optimized.nodes if n.op == "concatenate"
                      and n.attrs["axis"] == 0]
    # the recurrent weight's stacked gate gradients are the last STEPS - 1 of the input's
    stacks = sorted((n.inputs for n in concatenations), key=len)
    assert len(stacks[-1]) == STEPS and list(stacks[-2]) == list(stacks[-1][1:])
    same_values(graph, optimized, rng)
