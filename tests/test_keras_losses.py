"""Keras's Huber, KLDivergence, Poisson, Hinge and CosineSimilarity losses: values and
gradients (by y_pred) against numpy transcriptions of Keras 3's formulas, numpy central
differences, and torch's autograd where torch is installed; on the interpreter and the
device; and as compile() losses by name."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn

try:
    import torch
except ImportError:                     # the torch checks are skipped without it
    torch = None

EPS = 1e-7


def _l2n(a):
    return a / np.sqrt(np.maximum((a * a).sum(-1, keepdims=True), EPS * EPS))


def _np_hinge(y, p):
    y = 2 * y - 1 if np.all((y == 0) | (y == 1)) else y
    return np.maximum(1 - y * p, 0).mean(-1)


NUMPY = {
    "huber": lambda y, p: np.where(np.abs(p - y) <= 0.7, 0.5 * (p - y) ** 2,
                                   0.7 * np.abs(p - y) - 0.5 * 0.7 ** 2).mean(-1),
    "kl_divergence": lambda y, p: (np.clip(y, EPS, 1) * np.log(np.clip(y, EPS, 1)
                                                               / np.clip(p, EPS, 1))).sum(-1),
    "poisson": lambda y, p: (p - y * np.log(p + EPS)).mean(-1),
    "hinge": _np_hinge,
    "cosine_similarity": lambda y, p: -(_l2n(y) * _l2n(p)).sum(-1),
}


def _torch_reference(name):
    F = torch.nn.functional
    return {
        "huber": lambda y, p: F.huber_loss(p, y, reduction="none", delta=0.7).mean(-1),
        "kl_divergence": lambda y, p: F.kl_div(torch.log(p), y, reduction="none").sum(-1),
        "poisson": lambda y, p: F.poisson_nll_loss(p, y, log_input=False, full=False, eps=EPS,
                                                   reduction="none").mean(-1),
        "hinge": lambda y, p: torch.clamp(1 - (2 * y - 1) * p, min=0).mean(-1),
        "cosine_similarity": lambda y, p: -F.cosine_similarity(y, p, dim=-1, eps=1e-12),
    }[name]


def _graphc_loss(name):
    return {"huber": lambda y, p: gc.losses.huber(y, p, delta=0.7),
            "kl_divergence": gc.losses.kl_divergence, "poisson": gc.losses.poisson,
            "hinge": gc.losses.hinge, "cosine_similarity": gc.losses.cosine_similarity}[name]


def _data(name, seed=0):
    """Targets and predictions inside each loss's domain, away from kinks (|e| = delta,
    1 - y p = 0) so that central differences are exact."""
    rng = np.random.default_rng(seed)
    shape = (5, 4)
    if name in ("kl_divergence", "poisson"):
        y = rng.uniform(0.05, 0.95, shape)
        p = rng.uniform(0.05, 0.95, shape)
    elif name == "hinge":
        y = rng.integers(0, 2, shape).astype(np.float64)
        p = rng.uniform(-2, 2, shape)
        p = np.where(np.abs(1 - (2 * y - 1) * p) < 0.05, p + 0.2, p)
    else:
        y = rng.standard_normal(shape)
        p = y + rng.standard_normal(shape)
        if name == "huber":
            p = np.where(np.abs(np.abs(p - y) - 0.7) < 0.05, p + 0.2, p)
    return y, p


def _central_differences(f, y, p, h=1e-6):
    grad = np.zeros_like(p)
    for i in range(p.size):
        up, down = p.copy(), p.copy()
        up.flat[i] += h
        down.flat[i] -= h
        grad.flat[i] = (f(y, up).sum() - f(y, down).sum()) / (2 * h)
    return grad


def _graphc_value_and_grad(name, y, p, dtype, device=None):
    yt = gc.placeholder(y.shape, dtype, name="y_true")
    pt = gc.placeholder(p.shape, dtype, name="y_pred")
    values = _graphc_loss(name)(yt, pt)
    (g,) = [gc.grad(gc.sum(values), pt)]
    feeds = [y.astype(dtype), p.astype(dtype)]
    if device is None:
        return gc.interpret([values, g], dict(zip([yt, pt], feeds)))
    return gc.function([yt, pt], [values, g], device=device)(*feeds)


NAMES = sorted(NUMPY)


@pytest.mark.parametrize("name", NAMES)
def test_loss_and_gradient_match_numpy(name):
    y, p = _data(name)
    value, grad = _graphc_value_and_grad(name, y, p, np.float64)
    np.testing.assert_allclose(value, NUMPY[name](y, p), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, _central_differences(NUMPY[name], y, p), rtol=1e-6,
                               atol=1e-8)


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("name", NAMES)
def test_loss_and_gradient_match_torch(name):
    y, p = _data(name, seed=1)
    value, grad = _graphc_value_and_grad(name, y, p, np.float64)
    ty = torch.tensor(y)
    tp = torch.tensor(p, requires_grad=True)
    expected = _torch_reference(name)(ty, tp)
    expected.sum().backward()
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.opencl
@pytest.mark.parametrize("name", NAMES)
def test_loss_and_gradient_on_device(name, cl_device):
    y, p = _data(name, seed=2)
    value, grad = _graphc_value_and_grad(name, y, p, np.float32, cl_device)
    ref_value, ref_grad = _graphc_value_and_grad(name, y, p, np.float64)
    np.testing.assert_allclose(value, ref_value, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=2e-4, atol=1e-5)


def test_hinge_keeps_signed_labels_and_converts_binary_ones():
    p = np.array([[0.3, -2.0], [1.5, 0.2]])
    signed = np.array([[-1.0, 1.0], [1.0, -1.0]])
    binary = (signed + 1) / 2
    for y in (signed, binary):
        np.testing.assert_allclose(gc.interpret(gc.losses.hinge(gc.constant(y),
                                                                gc.constant(p))),
                                   np.maximum(1 - signed * p, 0).mean(-1))


def test_cosine_similarity_of_a_zero_vector_is_zero_with_finite_gradient():
    y = gc.constant(np.array([[0.0, 0.0], [1.0, 2.0]]))
    p = gc.placeholder((2, 2), gc.float64, name="p")
    values = gc.losses.cosine_similarity(y, p)
    value, grad = gc.interpret([values, gc.grad(gc.sum(values), p)],
                               {p: np.array([[0.5, 1.0], [2.0, 4.0]])})
    np.testing.assert_allclose(value, [0.0, -1.0], atol=1e-12)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("spec,cls,config", [
    ("huber", nn.losses.Huber, {"delta": 1.0}),
    ("kld", nn.losses.KLDivergence, {}),
    ("kl_divergence", nn.losses.KLDivergence, {}),
    ("poisson", nn.losses.Poisson, {}),
    ("hinge", nn.losses.Hinge, {}),
    ("cosine_similarity", nn.losses.CosineSimilarity, {"axis": -1}),
])
def test_losses_by_name_and_config_round_trip(spec, cls, config):
    loss = nn.losses.get(spec)
    assert type(loss) is cls and loss.get_config() == config
    again = nn.losses.deserialize(nn.losses.serialize(loss))
    assert type(again) is cls and again.get_config() == config


def test_compiled_model_trains_with_huber_and_reports_keras_value():
    gc.random.set_seed(3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((24, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) * 3).astype(np.float32)
    model = nn.Sequential([nn.Input((3,)), nn.Dense(1)])
    model.compile(gc.optim.SGD(0.05), nn.losses.Huber(delta=2.0), device="interpret")
    pred = model.predict(x, batch_size=8)
    e = pred - y
    value = np.where(np.abs(e) <= 2.0, 0.5 * e * e, 2.0 * np.abs(e) - 2.0).mean()
    assert model.evaluate(x, y, batch_size=8) == pytest.approx(value, rel=1e-5)
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
    assert history.history["loss"][-1] < history.history["loss"][0]
    with pytest.raises(gc.FeedError, match="Huber"):
        model.evaluate(x, np.zeros((24, 2), np.float32))
