"""gc.random: seeding, fresh streams per step, moments within 6 sigma, dropout, bad input."""
import inspect
import math
import re

import numpy as np
import pytest

import graphc as gc
from graphc import philox
from graphc.ops import REGISTRY

N = 60_000


@pytest.fixture(autouse=True)
def fixed_global_seed():
    """Each test starts from the same global seed and op counter."""
    gc.random.set_seed(1234)
    yield
    gc.random.set_seed(1234)


def draw(tensor, step=0):
    return gc.interpret(tensor, step=step)


def assert_error_names_op_and_line(excinfo, op, line):
    text = str(excinfo.value)
    assert op in text, text
    assert re.search(rf"test_ops_random\.py:{line}\b", text), text


MAKERS = [  # public function, keyword arguments, op name
    (gc.random.uniform, {"low": -1.0, "high": 2.0}, "random_uniform"),
    (gc.random.normal, {"mean": 0.5, "std": 2.0}, "random_normal"),
    (gc.random.bernoulli, {"p": 0.3}, "random_bernoulli"),
]
IDS = [m[2] for m in MAKERS]


@pytest.mark.parametrize("make,kwargs,op", MAKERS, ids=IDS)
def test_same_seed_same_stream_and_different_seeds_differ(make, kwargs, op):
    a, b = make((7, 33), seed=5, **kwargs), make((7, 33), seed=5, **kwargs)
    c = make((7, 33), seed=6, **kwargs)
    assert a.op == op and a.shape == (7, 33) and a.dtype == gc.float32
    np.testing.assert_array_equal(draw(a), draw(b))
    assert not np.array_equal(draw(a), draw(c))
    gc.random.set_seed(99)
    d = make((7, 33), seed=5, **kwargs)
    assert not np.array_equal(draw(a), draw(d)), "the global seed takes part"


@pytest.mark.parametrize("make,kwargs,op", MAKERS, ids=IDS)
def test_unseeded_ops_differ_and_set_seed_replays_them(make, kwargs, op):
    first, second = make((500,), **kwargs), make((500,), **kwargs)
    assert not np.array_equal(draw(first), draw(second))
    gc.random.set_seed(1234)
    again = make((500,), **kwargs)
    np.testing.assert_array_equal(draw(first), draw(again))


@pytest.mark.parametrize("make,kwargs,op", MAKERS, ids=IDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_steps_draw_fresh_disjoint_parts_of_one_stream(make, kwargs, op, dtype):
    # 12 elements fill whole 4-word blocks, so successive steps tile one longer stream
    y = make((4, 3), dtype=dtype, seed=11, **kwargs)
    steps = [draw(y, step) for step in range(3)]
    assert not np.array_equal(steps[0], steps[1])
    np.testing.assert_array_equal(draw(y, 1), steps[1])
    whole = make((36,), dtype=dtype, seed=11, **kwargs)
    np.testing.assert_array_equal(np.concatenate([s.ravel() for s in steps]), draw(whole))


def test_streams_follow_the_philox_contract():
    y = gc.random.uniform((4, 6), low=-3.0, high=5.0, seed=2)
    seed = y.producer.attrs["seed"]
    expected = philox.uniform(seed, 2 * philox.blocks_used("uniform", 24), (4, 6),
                              np.float32, -3.0, 5.0)
    np.testing.assert_array_equal(draw(y, step=2), expected)


def six_sigma(sd, n=N):
    return 6.0 * sd / math.sqrt(n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_moments(dtype):
    low, high = -1.5, 2.5
    values = draw(gc.random.uniform((N,), low, high, dtype=dtype)).astype(np.float64)
    width = high - low
    assert values.dtype == np.float64 and low <= values.min() and values.max() < high
    assert abs(values.mean() - (low + high) / 2) < six_sigma(width / math.sqrt(12))
    var_sd = math.sqrt(width**4 / 80 - (width**2 / 12) ** 2)     # sd of (x - mean)**2
    assert abs(values.var() - width**2 / 12) < six_sigma(var_sd)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_moments(dtype):
    mean, std = -0.7, 1.8
    y = gc.random.normal((N,), mean, std, dtype=dtype)
    assert y.dtype == np.dtype(dtype)
    values = draw(y).astype(np.float64)
    assert np.all(np.isfinite(values))
    assert abs(values.mean() - mean) < six_sigma(std)
    assert abs(values.var() - std**2) < six_sigma(std**2 * math.sqrt(2))


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.93, 1.0])
@pytest.mark.parametrize("dtype", ["float32", "int32", "bool"])
def test_bernoulli_frequency(p, dtype):
    y = gc.random.bernoulli((N,), p, dtype=dtype)
    values = draw(y)
    assert values.dtype == np.dtype(dtype) and set(np.unique(values)) <= {0, 1}
    assert abs(values.mean() - p) <= six_sigma(math.sqrt(p * (1 - p)))


def test_empty_and_scalar_shapes():
    assert draw(gc.random.normal((0, 3))).shape == (0, 3)
    assert draw(gc.random.uniform(())).shape == ()
    assert draw(gc.random.bernoulli(4)).shape == (4,)


def test_random_ops_are_not_differentiable():
    for op in ("random_uniform", "random_normal", "random_bernoulli"):
        assert REGISTRY[op].kind == "random" and REGISTRY[op].arity == 0
        assert not REGISTRY[op].differentiable and "random" in REGISTRY[op].vjp.reason


RANDOM_BAD = [  # function, arguments, error class, op named in the message, words
    (gc.random.uniform, ((3,), 0.0, 1.0, "int32"), gc.DTypeError, "random_uniform", "float32"),
    (gc.random.normal, ((3,), 0.0, 1.0, "float16"), gc.DTypeError, "random_normal", "float16"),
    (gc.random.uniform, ((3, -1),), gc.ShapeError, "random_uniform", "non-negative"),
    (gc.random.bernoulli, ((2.5,),), gc.ShapeError, "random_bernoulli", "non-negative"),
    (gc.random.normal, ((3,), 0.0, 1.0, "complex64"), gc.DTypeError, "random_normal",
     "complex64"),
    (gc.random.bernoulli, ((3,), 1.5), ValueError, "random_bernoulli", "p must be"),
]


# ids by name: str(function) holds an address, which differs between pytest-xdist's workers
@pytest.mark.parametrize("fn,args,error,op,words", RANDOM_BAD,
                         ids=lambda value: getattr(value, "__name__", None) or str(value))
def test_bad_input_names_op_and_line(fn, args, error, op, words):
    with pytest.raises(error) as excinfo:
        line = inspect.currentframe().f_lineno + 1
        fn(*args)
    assert_error_names_op_and_line(excinfo, op, line)
    assert words in str(excinfo.value)


# ---- dropout ----

@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_zeroes_about_rate_and_scales_the_rest(rate, dtype):
    x = gc.placeholder((200, 300), dtype)
    vx = np.random.default_rng(0).uniform(1, 2, (200, 300)).astype(dtype)
    out = gc.interpret(gc.random.dropout(x, rate), {x: vx})
    kept = out != 0
    np.testing.assert_allclose(out[kept], vx[kept] / (1 - rate), rtol=1e-6)
    assert abs((~kept).mean() - rate) < six_sigma(math.sqrt(rate * (1 - rate)), kept.size)


def test_dropout_gradient_uses_the_same_mask():
    x = gc.placeholder((50, 40), gc.float64)
    y = gc.random.dropout(x, 0.25, seed=3)
    gx = gc.grad(gc.sum(y), x)
    vx = np.random.default_rng(1).uniform(1, 2, (50, 40))
    out, grad = gc.interpret([y, gx], {x: vx}, step=4)
    np.testing.assert_allclose(grad, out / vx)
    assert set(np.unique(grad)) == {0.0, 1 / 0.75}


def test_dropout_rate_zero_is_the_identity_and_bad_rates_are_refused():
    x = gc.placeholder((3,))
    assert gc.random.dropout(x, 0.0) is x
    for rate in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError) as excinfo:
            line = inspect.currentframe().f_lineno + 1
            gc.random.dropout(x, rate)
        assert_error_names_op_and_line(excinfo, "dropout", line)
