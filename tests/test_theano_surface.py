"""Theano's surface: gc.function inputs by keyword, givens= (and gc.clone), and gc.scan,
which unrolls: its results, gradients and compiled kernels are those of a Python loop."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(41)


# ---- inputs by keyword ----

def _two_input_function(device):
    x = gc.placeholder((3,), gc.float32, name="x")
    y = gc.placeholder((3,), gc.float32, name="y")
    return gc.function([x, y], x * 2.0 - y, device=device)


@pytest.mark.opencl
def test_inputs_by_keyword(cl_device):
    f = _two_input_function(cl_device)
    a, b = RNG.standard_normal((2, 3)).astype(np.float32)
    expected = a * 2 - b
    np.testing.assert_allclose(f(x=a, y=b), expected, rtol=1e-6)
    np.testing.assert_allclose(f(y=b, x=a), expected, rtol=1e-6)
    np.testing.assert_allclose(f(a, y=b), expected, rtol=1e-6)
    with pytest.raises(gc.FeedError, match="has no input named 'z' \\(inputs: x, y\\)"):
        f(x=a, z=b)
    with pytest.raises(gc.FeedError, match="input 'x' is given twice"):
        f(a, x=a, y=b)
    with pytest.raises(gc.FeedError, match="no value for input\\(s\\) y"):
        f(x=a)
    with pytest.raises(gc.FeedError, match="placeholder 'y' expects shape"):
        f(x=a, y=b[:2])


@pytest.mark.opencl
def test_keyword_refused_for_a_name_two_inputs_share(cl_device):
    first = gc.placeholder((2,), gc.float32, name="v")
    second = gc.placeholder((2,), gc.float32, name="v")
    f = gc.function([first, second], first - second, device=cl_device)
    np.testing.assert_allclose(f(np.ones(2), np.zeros(2)), [1, 1])
    with pytest.raises(gc.FeedError, match="several inputs named 'v'.*pass it by position"):
        f(v=np.ones(2))


# ---- givens ----

def _minibatch_problem():
    data = RNG.standard_normal((20, 4)).astype(np.float32)
    targets = RNG.standard_normal((20, 1)).astype(np.float32)
    w0 = RNG.standard_normal((4, 1)).astype(np.float32)
    return data, targets, w0


@pytest.mark.opencl
def test_givens_feed_minibatches_from_device_data(cl_device):
    """Theano's idiom: the data set lives on the device; the step takes batch indices."""
    data, targets, w0 = _minibatch_problem()
    x = gc.placeholder((5, 4), gc.float32, name="x")
    t = gc.placeholder((5, 1), gc.float32, name="t")
    w = gc.variable(w0.copy(), name="w")
    loss = gc.mean(gc.square(x @ w - t))
    step_updates = [(w, w - 0.1 * gc.grad(loss, w))]
    index = gc.placeholder((5,), gc.int32, name="index")
    data_var, target_var = gc.variable(data, name="data"), gc.variable(targets, name="targets")
    by_index = gc.function([index], loss, updates=step_updates, device=cl_device,
                           givens={x: gc.take(data_var, index, axis=0),
                                   t: gc.take(target_var, index, axis=0)})
    batch = np.array([3, 17, 0, 8, 11], np.int32)
    got = by_index(batch)
    err = data[batch] @ w0 - targets[batch]
    assert got == pytest.approx(float(np.mean(err ** 2)), rel=1e-5)
    grad = 2 * data[batch].T @ err / 5
    np.testing.assert_allclose(w.get_value(), w0 - 0.1 * grad, rtol=1e-5, atol=1e-6)
    # the program is the one written by hand over take(...)
    w2 = gc.variable(w0.copy(), name="w2")
    by_hand_loss = gc.mean(gc.square(gc.take(data_var, index, axis=0) @ w2
                                     - gc.take(target_var, index, axis=0)))
    by_hand = gc.function([index], by_hand_loss,
                          updates=[(w2, w2 - 0.1 * gc.grad(by_hand_loss, w2))],
                          device=cl_device)
    assert by_index.kernel_count == by_hand.kernel_count


def test_clone_replaces_an_inner_subgraph_and_leaves_the_original():
    x = gc.placeholder((2, 3), gc.float64, name="x")
    hidden = gc.relu(x)
    out = gc.sum(hidden * 2.0, axis=1)
    swapped = gc.clone(out, {hidden: gc.tanh(x)})
    value = RNG.standard_normal((2, 3))
    np.testing.assert_allclose(gc.interpret(swapped, {x: value}), (np.tanh(value) * 2).sum(1))
    np.testing.assert_allclose(gc.interpret(out, {x: value}),
                               (np.maximum(value, 0) * 2).sum(1))
    # a replacement may use what it replaces
    doubled = gc.clone([out], [(hidden, hidden + hidden)])[0]
    np.testing.assert_allclose(gc.interpret(doubled, {x: value}),
                               (np.maximum(value, 0) * 4).sum(1))


def test_givens_errors_name_what_is_wrong():
    x = gc.placeholder((2, 3), gc.float32, name="x")
    y = gc.placeholder((2, 3), gc.float32, name="y")
    out = gc.sum(x * y)
    with pytest.raises(gc.ShapeError, match="'x' has shape \\(2, 3\\), its replacement "
                                            "\\(3, 2\\)"):
        gc.function([y], out, givens={x: gc.placeholder((3, 2), gc.float32)})
    with pytest.raises(gc.DTypeError, match="'x' is float32, its replacement int32"):
        gc.function([y], out, givens={x: gc.placeholder((2, 3), gc.int32)})
    with pytest.raises(gc.GraphcError, match="input 'x' cannot also be replaced"):
        gc.function([x, y], out, givens={x: y})
    with pytest.raises(gc.GraphcError, match="not a graphc tensor"):
        gc.function([y], out, givens={"x": y})


# ---- scan ----

def _rnn_numpy(xs, h0, W, U, backwards=False):
    h, hs = h0, []
    for x in (xs[::-1] if backwards else xs):
        h = np.tanh(x @ W + h @ U)
        hs.append(h)
    return np.stack(hs)


def _rnn_graph(steps=6, backwards=False, use_scan=True):
    xs = gc.placeholder((steps, 2, 3), gc.float64, name="xs")
    h0 = gc.placeholder((2, 4), gc.float64, name="h0")
    W = gc.placeholder((3, 4), gc.float64, name="W")
    U = gc.placeholder((4, 4), gc.float64, name="U")
    if use_scan:
        hs, updates = gc.scan(lambda x, h, w, u: gc.tanh(x @ w + h @ u), sequences=xs,
                              outputs_info=h0, non_sequences=[W, U], go_backwards=backwards)
        assert updates == {}
    else:
        h, collected = h0, []
        for t in (range(steps - 1, -1, -1) if backwards else range(steps)):
            h = gc.tanh(xs[t] @ W + h @ U)
            collected.append(h)
        hs = gc.stack(collected)
    return (xs, h0, W, U), hs


def _rnn_values(steps=6):
    return (RNG.standard_normal((steps, 2, 3)), RNG.standard_normal((2, 4)),
            RNG.standard_normal((3, 4)) * 0.5, RNG.standard_normal((4, 4)) * 0.5)


@pytest.mark.parametrize("backwards", [False, True])
def test_scan_rnn_matches_numpy_and_its_gradient_the_loop(backwards):
    values = _rnn_values()
    inputs, hs = _rnn_graph(backwards=backwards)
    feed = dict(zip(inputs, values))
    np.testing.assert_allclose(gc.interpret(hs, feed), _rnn_numpy(*values, backwards),
                               rtol=1e-12)
    loop_inputs, loop_hs = _rnn_graph(backwards=backwards, use_scan=False)
    grads = gc.interpret(gc.grad(gc.sum(hs * hs), list(inputs)), feed)
    loop_grads = gc.interpret(gc.grad(gc.sum(loop_hs * loop_hs), list(loop_inputs)),
                              dict(zip(loop_inputs, values)))
    for got, expected in zip(grads, loop_grads):
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    error, where = gc.gradcheck(lambda *t: gc.scan(
        lambda x, h, w, u: gc.tanh(x @ w + h @ u), sequences=t[0], outputs_info=t[1],
        non_sequences=t[2:])[0], values)
    assert error < 1e-6, where


@pytest.mark.opencl
def test_scan_compiles_to_the_kernels_of_the_unrolled_loop(cl_device):
    values = [v.astype(np.float32) for v in _rnn_values()]
    counts, results = [], []
    for use_scan in (True, False):
        inputs, hs = _rnn_graph(use_scan=use_scan)
        inputs32 = [gc.placeholder(t.shape, gc.float32, name=t.name) for t in inputs]
        hs32 = gc.clone(hs, [(a, gc.cast(b, gc.float64)) for a, b in zip(inputs, inputs32)])
        loss = gc.sum(gc.cast(hs32, gc.float32))
        grads = gc.grad(loss, inputs32[2:])
        f = gc.function(inputs32, [loss] + grads, device=cl_device)
        counts.append(f.kernel_count)
        results.append(f(*values))
    assert counts[0] == counts[1]
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_scan_several_outputs_n_steps_and_unfed_outputs():
    A = np.array([[0.5, 0.2], [0.1, 0.7]])
    v0 = np.array([1.0, -1.0])
    a = gc.constant(A)
    (vs, norms), _ = gc.scan(lambda v, m: (m @ v, gc.sum(gc.square(m @ v))),
                             outputs_info=[gc.constant(v0), None], non_sequences=a, n_steps=4)
    got_vs, got_norms = gc.interpret([vs, norms])
    expected, v = [], v0
    for _ in range(4):
        v = A @ v
        expected.append(v)
    np.testing.assert_allclose(got_vs, expected)
    np.testing.assert_allclose(got_norms, (np.array(expected) ** 2).sum(1))
    powers, _ = gc.scan(lambda s: s * 2.0, sequences=gc.constant(np.arange(5.0)), n_steps=3)
    np.testing.assert_allclose(gc.interpret(powers), [0.0, 2.0, 4.0])


def test_scan_errors():
    xs = gc.constant(np.zeros((3, 2)))
    with pytest.raises(gc.GraphcError, match="taps"):
        gc.scan(lambda x: x, sequences={"input": xs, "taps": [-1]})
    with pytest.raises(gc.GraphcError, match="give sequences or n_steps"):
        gc.scan(lambda h: h, outputs_info=gc.constant(np.zeros(2)))
    with pytest.raises(gc.ShapeError, match="must keep its shape"):
        gc.scan(lambda x, h: gc.concatenate([h, x]), sequences=xs,
                outputs_info=gc.constant(np.zeros(2)))
    with pytest.raises(gc.GraphcError, match="n_steps=4 must be in \\[0, 3\\]"):
        gc.scan(lambda x: x, sequences=xs, n_steps=4)
    with pytest.raises(gc.GraphcError, match="returned updates"):
        gc.scan(lambda x: (x, {}), sequences=xs)
