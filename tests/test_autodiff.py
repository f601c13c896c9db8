"""gc.grad as a graph transform: second order, the DESIGN example, errors, readable dumps."""
import inspect
import re

import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(1)


def mlp_loss(x, y, params):
    W1, b1, W2, b2 = params
    h = gc.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    return gc.mean(gc.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))


def test_hessian_vector_product_of_an_mlp_loss_matches_finite_differences():
    x = gc.constant(RNG.standard_normal((6, 4)))
    y = gc.constant(RNG.integers(0, 3, 6).astype(np.int32))
    shapes = [(4, 5), (5,), (5, 3), (3,)]
    values = [RNG.standard_normal(s) * 0.5 for s in shapes]
    params = [gc.placeholder(s, gc.float64) for s in shapes]
    vectors = [RNG.standard_normal(s) for s in shapes]
    loss = mlp_loss(x, y, params)
    grads = gc.grad(loss, params)
    dot = gc.sum(gc.stack([gc.sum(g * v) for g, v in zip(grads, vectors)]))
    hvp = gc.grad(dot, params)
    feed = dict(zip(params, values))
    symbolic = gc.interpret(hvp, feed)
    eps = 1e-5
    plus = gc.interpret(grads, {p: v + eps * d for p, v, d in zip(params, values, vectors)})
    minus = gc.interpret(grads, {p: v - eps * d for p, v, d in zip(params, values, vectors)})
    for s, a, b in zip(symbolic, plus, minus):
        np.testing.assert_allclose(s, (a - b) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_hessian_of_a_quadratic_form_is_a_plus_a_transpose():
    A = RNG.standard_normal((4, 4))
    x = gc.placeholder((4,), gc.float64)
    cost = gc.sum(x * (gc.constant(A) @ x))
    H = gc.interpret(gc.hessian(cost, x), {x: RNG.standard_normal(4)})
    np.testing.assert_allclose(H, A + A.T, rtol=1e-12)


def test_jacobian_of_an_elementwise_function_is_diagonal():
    x = gc.placeholder((3,), gc.float64)
    value = np.array([0.1, 0.5, 2.0])
    J = gc.interpret(gc.jacobian(gc.exp(x), x), {x: value})
    np.testing.assert_allclose(J, np.diag(np.exp(value)))


def test_design_example_gradients_match_hand_derived_numpy():
    xb = RNG.standard_normal((64, 784)).astype(np.float32)
    yb = RNG.integers(0, 10, 64).astype(np.int32)
    x = gc.placeholder((64, 784), gc.float32, name="x")
    y = gc.placeholder((64,), gc.int32, name="y")
    W = gc.variable(RNG.standard_normal((784, 10)).astype(np.float32) * 0.01, name="W")
    b = gc.variable(np.zeros(10, np.float32), name="b")
    logits = x @ W + b
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    gW, gb = gc.grad(loss, [W, b])
    loss_value, gW_value, gb_value = gc.interpret([loss, gW, gb], {x: xb, y: yb})
    z = xb.astype(np.float64) @ W.get_value() + b.get_value()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(10)[yb]
    dz = (p - onehot) / 64
    np.testing.assert_allclose(loss_value, -np.log(p[np.arange(64), yb]).mean(), rtol=1e-5)
    np.testing.assert_allclose(gW_value, xb.T @ dz, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gb_value, dz.sum(0), rtol=1e-4, atol=1e-7)


def test_stable_rules_at_extreme_logits():
    z = gc.placeholder((2, 3), gc.float32)
    values = np.array([[1000.0, 0.0, -1000.0], [-500.0, 500.0, 0.0]], np.float32)
    ce = gc.sum(gc.losses.categorical_crossentropy(np.eye(3)[[0, 1]], z, from_logits=True))
    bce = gc.sum(gc.losses.binary_crossentropy(np.ones((2, 3)), z, from_logits=True))
    lse = gc.sum(gc.logsumexp(z, axis=1))
    for cost in (ce, bce, lse):
        value, grad = gc.interpret([cost, gc.grad(cost, z)], {z: values})
        assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_sqrt_gradient_at_zero_is_documented_inf():
    x = gc.placeholder((2,), gc.float64)
    g = gc.interpret(gc.grad(gc.sum(gc.sqrt(x)), x), {x: np.array([0.0, 4.0])})
    assert np.isinf(g[0]) and g[1] == pytest.approx(0.25)
    assert "inf" in gc.REGISTRY["sqrt"].doc


def test_grad_structure_and_grad_outputs():
    x = gc.placeholder((3,), gc.float64)
    y = x * x
    (single,) = gc.grad(gc.sum(y), [x])
    assert isinstance(gc.grad(gc.sum(y), x), gc.Tensor) and isinstance(single, gc.Tensor)
    g = gc.grad(y, x, grad_outputs=np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(gc.interpret(g, {x: np.ones(3)}), [2.0, 4.0, 6.0])


def test_disconnected_raises_or_gives_zeros():
    x, z = gc.placeholder((3,), gc.float64), gc.placeholder((2,), gc.float64, name="z")
    cost = gc.sum(x)
    with pytest.raises(gc.DisconnectedError, match="'z'|z "):
        gc.grad(cost, z)
    zero = gc.grad(cost, z, disconnected="zero")
    np.testing.assert_array_equal(gc.interpret(zero, {x: np.ones(3), z: np.ones(2)}), 0)


def test_integer_and_random_values_are_not_differentiable():
    i = gc.placeholder((3,), gc.int32, name="i")
    x = gc.placeholder((3,), gc.float32)
    with pytest.raises(gc.NonDifferentiableError, match="int32"):
        gc.grad(gc.sum(gc.cast(i, gc.float32)), i)
    with pytest.raises(gc.NonDifferentiableError, match="only float"):
        gc.grad(gc.sum(i), x)
    noise = gc.random.uniform((3,))
    with pytest.raises(gc.NonDifferentiableError):
        gc.grad(gc.sum(noise * x), noise)
    with pytest.raises(gc.DisconnectedError, match="argmax"):
        gc.grad(gc.sum(gc.cast(gc.argmax(x), gc.float32)), x)


def test_backward_equations_carry_the_forward_line():
    x = gc.placeholder((2, 3), gc.float32, name="x")
    W = gc.variable(np.ones((3, 4), np.float32), name="W")
    line = inspect.currentframe().f_lineno + 1
    h = gc.relu(x @ W)
    loss = gc.sum(h)
    (gW,) = gc.grad(loss, [W])
    text = gc.dump(gW)
    backward = [row for row in text.splitlines() if "greater" in row or "transpose" in row]
    assert backward and all(re.search(rf"test_autodiff\.py:{line}\b", row) for row in backward)


def test_gradcheck_reports_the_worst_error_and_where():
    error, where = gc.gradcheck(lambda a, b: gc.tanh(a @ b), [RNG.standard_normal((3, 4)),
                                                           RNG.standard_normal((4, 2))])
    assert error < 1e-7 and where[0] in (0, 1)
