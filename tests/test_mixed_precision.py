"""Mixed precision: dtype policies on layers (float16 math, float32 variables, float32
statistics in normalization layers), LossScaleOptimizer against a numpy transcription of
Keras 3's dynamic loss scaling, compile()'s automatic wrapping, saving, and the device:
float16 runs where the device (or graphc's half storage) allows, else a clear error."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.nn import mixed_precision

RNG = np.random.default_rng(51)


@pytest.fixture(autouse=True)
def float32_policy_after():
    yield
    mixed_precision.set_global_policy("float32")


def _mixed_mlp(seed=0, final_float32=True):
    gc.random.set_seed(seed)
    mixed_precision.set_global_policy("mixed_float16")
    layers = [nn.Input((6,)), nn.Dense(12, activation="relu"), nn.BatchNormalization(),
              nn.Dense(3)]
    layers += [nn.Activation("softmax", dtype="float32")] if final_float32 else []
    model = nn.Sequential(layers)
    mixed_precision.set_global_policy("float32")
    return model


def _data(n=32):
    x = RNG.standard_normal((n, 6)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)


# ---- policies ----

def test_policies_and_their_dtypes():
    policy = mixed_precision.Policy("mixed_float16")
    assert (policy.compute_dtype, policy.variable_dtype) == (np.float16, np.float32)
    assert mixed_precision.global_policy().name == "float32"
    with pytest.raises(gc.DTypeError, match="no bfloat16"):
        mixed_precision.set_global_policy("mixed_bfloat16")
    model = _mixed_mlp()
    dense, norm, out, softmax = model.layers
    assert dense.compute_dtype == np.float16 and dense.variable_dtype == np.float32
    assert softmax.dtype_policy.name == "float32"
    assert all(v.dtype == np.float32 for v in model.weights)
    assert [t.dtype for t in (dense.kernel,)] == [np.float32]
    outputs = [node.outputs[0].dtype for node in model._nodes]
    assert outputs == [np.float16, np.float16, np.float16, np.float32]


def test_mixed_forward_is_float16_math_of_float32_weights():
    model = _mixed_mlp(final_float32=False)
    model.compile("sgd", "mse", device="interpret")
    x, _ = _data(8)
    got = model.predict(x)
    assert got.dtype == np.float16
    kernel, bias = (w.astype(np.float16) for w in model.layers[0].get_weights())
    hidden = np.maximum(x.astype(np.float16) @ kernel + bias, 0)
    gamma, beta, mean, var = model.layers[1].get_weights()
    normed = ((hidden.astype(np.float32) - mean) / np.sqrt(var + 1e-3) * gamma + beta)
    k2, b2 = (w.astype(np.float16) for w in model.layers[2].get_weights())
    expected = normed.astype(np.float16) @ k2 + b2
    np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32),
                               rtol=1e-2, atol=1e-2)


def test_compile_wraps_the_optimizer_and_training_learns():
    model = _mixed_mlp()
    model.compile(optim.Adam(0.02), "sparse_categorical_crossentropy", ["accuracy"],
                  device="interpret")
    assert isinstance(model.optimizer, optim.LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, optim.Adam)
    x, y = _data(64)
    history = model.fit(x, y, batch_size=16, epochs=6, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    assert all(v.get_value().dtype == np.float32 for v in model.weights)
    assert int(model.optimizer.iterations.get_value()) == 24
    plain = _mixed_mlp()
    plain.compile(optim.Adam(0.02), "mse", device="interpret", auto_scale_loss=False)
    assert isinstance(plain.optimizer, optim.Adam)


# ---- dynamic loss scaling ----

def _quadratic(init, coef):
    w = gc.variable(init.copy(), name="w")
    return w, gc.sum(0.5 * coef * gc.square(w) + w)


def _step(loss, updates):
    values = gc.interpret([loss] + [v for _, v in updates])
    for (variable, _), value in zip(updates, values[1:]):
        variable.set_value(value)


def test_finite_steps_equal_the_inner_optimizer_and_the_scale_grows():
    init = RNG.standard_normal(5).astype(np.float32)
    coef = RNG.uniform(0.5, 2, 5).astype(np.float32)
    w, loss = _quadratic(init, coef)
    scaled = optim.LossScaleOptimizer(optim.SGD(0.1, momentum=0.9), initial_scale=8.0,
                                      dynamic_growth_steps=3)
    updates = scaled.updates(loss, [w])
    w_ref, loss_ref = _quadratic(init, coef)
    plain = optim.SGD(0.1, momentum=0.9)
    plain_updates = plain.updates(loss_ref, [w_ref])
    scales = []
    for _ in range(7):
        _step(loss, updates)
        _step(loss_ref, plain_updates)
        scales.append(float(scaled.dynamic_scale.get_value()))
    np.testing.assert_allclose(w.get_value(), w_ref.get_value(), rtol=1e-6)
    assert scales == [8, 8, 16, 16, 16, 32, 32]
    assert int(scaled.step_counter.get_value()) == 1
    assert int(scaled.iterations.get_value()) == 7


def _keras_loss_scale(initial, growth, steps, finite_below):
    """Keras 3's LossScaleOptimizer rule: (scale, counter, finite) after each step, a step
    being finite when its scale is at most `finite_below`."""
    scale, counter, trail = initial, 0, []
    for _ in range(steps):
        finite = scale <= finite_below
        if finite and counter == growth - 1:
            counter, scale = 0, scale * 2
        elif finite:
            counter += 1
        else:
            counter, scale = 0, scale / 2
        trail.append((scale, counter, finite))
    return trail


def test_overflowing_steps_are_skipped_and_halve_the_scale():
    """The gradients are scale * 1e10 * (w + 1), |w + 1| <= 4: finite in float32 for scales
    up to 2**92 (2e38), inf from 2**93 (4e38). Overflowing steps leave the weights, the
    optimizer's slots and iterations alone and halve the scale; after two finite steps
    (dynamic_growth_steps=2) it doubles again."""
    init = np.array([1.0, -2.0, 3.0], np.float32)
    w, loss = _quadratic(init, np.ones(3, np.float32))
    big = loss * 1e10
    scaled = optim.LossScaleOptimizer(optim.Adam(0.01), initial_scale=2.0 ** 95,
                                      dynamic_growth_steps=2)
    updates = scaled.updates(big, [w])
    expected = _keras_loss_scale(2.0 ** 95, 2, 10, 2.0 ** 92)
    before = init
    for scale, counter, finite in expected:
        _step(big, updates)
        assert (float(scaled.dynamic_scale.get_value()),
                int(scaled.step_counter.get_value())) == (scale, counter)
        if finite:
            assert np.abs(w.get_value() - before).max() > 1e-4
        else:
            np.testing.assert_array_equal(w.get_value(), before)
        before = w.get_value().copy()
    assert [f for _, _, f in expected].count(False) >= 4
    assert int(scaled.iterations.get_value()) == [f for _, _, f in expected].count(True)
    m = scaled.slot(w, "momentum").get_value()
    assert np.isfinite(m).all() and np.abs(m).max() > 0


def test_loss_scale_optimizer_config_and_saved_state(tmp_path):
    opt = optim.LossScaleOptimizer(optim.Nadam(0.01), initial_scale=256.0,
                                   dynamic_growth_steps=10)
    again = optim.deserialize(optim.serialize(opt))
    assert isinstance(again, optim.LossScaleOptimizer)
    assert again.get_config() == opt.get_config()
    model = _mixed_mlp()
    model.compile(opt, "sparse_categorical_crossentropy", device="interpret")
    x, y = _data(16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "mixed.npz")
    loaded = nn.load_model(tmp_path / "mixed.npz")
    assert isinstance(loaded.optimizer, optim.LossScaleOptimizer)
    assert loaded.layers[0].dtype_policy.name == "mixed_float16"
    assert loaded.layers[-1].dtype_policy.name == "float32"
    for key, value in opt.state_arrays(model.trainable_weights).items():
        np.testing.assert_array_equal(
            loaded.optimizer.state_arrays(loaded.trainable_weights)[key], value)
    loaded.compile(loaded.optimizer, loaded.loss, device="interpret")
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-3)
    with pytest.raises(ValueError, match="scales the loss already"):
        optim.LossScaleOptimizer(opt)


@pytest.mark.opencl
def test_mixed_model_on_the_device_runs_or_says_why(cl_device, monkeypatch):
    """With cl_khr_fp16 (or half storage in graphc's code generator, which warns that it
    gains no speed) the device trains as the interpreter does, to float16 accuracy;
    otherwise compiling names the device."""
    x, y = _data(32)
    monkeypatch.setattr(mixed_precision, "_warned", set())
    runs = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mixed_precision.check_float16_device(cl_device)
    except gc.DTypeError as exc:
        runs = False
        assert cl_device.name in str(exc) and "cl_khr_fp16" in str(exc)
    if runs and not cl_device.fp16:
        assert [str(w.message) for w in caught if w.category is
                mixed_precision.Float16Warning][0].startswith(
                    f"device {cl_device.name!r} has no cl_khr_fp16: the model's float16 "
                    f"values are stored as half and computed in float")
    model = _mixed_mlp()
    model.compile(optim.SGD(0.05), "sparse_categorical_crossentropy", device=cl_device)
    if not runs:
        with pytest.raises(gc.DTypeError, match="computes in float16"):
            model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        return
    reference = _mixed_mlp()
    reference.compile(optim.SGD(0.05), "sparse_categorical_crossentropy", device="interpret")
    # numpy rounds every float16 op, the device only what it stores: predictions agree to
    # float16's precision (training trajectories drift apart, so they are not compared)
    np.testing.assert_allclose(model.predict(x), reference.predict(x), rtol=1e-2, atol=2e-3)
    history = model.fit(x, y, batch_size=8, epochs=8, verbose=0).history["loss"]
    assert history[-1] < 0.8 * history[0]
    assert all(np.isfinite(v.get_value()).all() and v.dtype == np.float32
               for v in model.weights)


@pytest.mark.opencl
def test_loss_scaling_skips_overflowing_steps_on_the_device(cl_device):
    """The same trajectory as the interpreter's: inf gradients detected on the device."""
    def run(device):
        init = np.array([1.0, -2.0, 3.0], np.float32)
        w, loss = _quadratic(init, np.ones(3, np.float32))
        big = loss * 1e10
        scaled = optim.LossScaleOptimizer(optim.Adam(0.01), initial_scale=2.0 ** 95,
                                          dynamic_growth_steps=2)
        updates = scaled.updates(big, [w])
        step = gc.function([], big, updates=updates, device=device) if device else None
        trail = []
        for _ in range(8):
            step() if step else _step(big, updates)
            trail.append((float(scaled.dynamic_scale.get_value()),
                          int(scaled.step_counter.get_value()), w.get_value().copy()))
        return trail
    for (scale, counter, w), (ref_scale, ref_counter, ref_w) in zip(run(cl_device), run(None)):
        assert (scale, counter) == (ref_scale, ref_counter)
        np.testing.assert_allclose(w, ref_w, rtol=1e-5)
