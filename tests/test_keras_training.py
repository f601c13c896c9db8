"""Keras's training surface: fit(class_weight=, steps_per_epoch= on arrays, initial_epoch=),
train_on_batch / test_on_batch / predict_on_batch, to_json / model_from_json, get_layer by
name or index, and a saved Nadam model. Each against what it must equal: the same training
with sample weights or a generator, fit's steps, numpy."""
from __future__ import annotations

import json

import numpy as np
import pytest

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(21)
X = RNG.standard_normal((10, 4)).astype(np.float32)
Y = (np.arange(10) % 3).astype(np.int32)


def _model(seed=0, optimizer=None, metrics=("accuracy",)):
    gc.random.set_seed(seed)
    model = nn.Sequential([nn.Input((4,), name="features"), nn.Dense(5, activation="tanh"),
                           nn.Dense(3, activation="softmax")])
    model.compile(optimizer or gc.optim.SGD(0.2), "sparse_categorical_crossentropy",
                  list(metrics), device="interpret")
    return model


def _same_weights(a, b, rtol=1e-6):
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=1e-7)


# ---- fit ----

def test_class_weight_is_keras_sample_weight_by_class():
    weights = {0: 0.5, 2: 3.0}                       # class 1 absent: weight 1
    by_class, by_sample = _model(), _model()
    by_class.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0, class_weight=weights)
    expected = np.array([weights.get(int(c), 1.0) for c in Y], np.float32)
    by_sample.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                  sample_weight=expected)
    _same_weights(by_class, by_sample)
    assert by_class.history.history["loss"] == pytest.approx(by_sample.history.history["loss"])
    unweighted = _model()
    unweighted.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert np.abs(unweighted.get_weights()[0] - by_class.get_weights()[0]).max() > 1e-4


def test_class_weight_on_one_hot_targets_and_streams():
    onehot = np.eye(3, dtype=np.float32)[Y]
    weights = {1: 4.0}

    def model():
        gc.random.set_seed(1)
        m = nn.Sequential([nn.Input((4,)), nn.Dense(3, activation="softmax")])
        m.compile(gc.optim.SGD(0.3), "categorical_crossentropy", device="interpret")
        return m
    arrays, stream, by_sample = model(), model(), model()
    arrays.fit(X, onehot, batch_size=5, epochs=1, shuffle=False, verbose=0,
               class_weight=weights)
    stream.fit(((X[i:i + 5], onehot[i:i + 5]) for i in (0, 5)), epochs=1, verbose=0,
               class_weight=weights)
    by_sample.fit(X, onehot, batch_size=5, epochs=1, shuffle=False, verbose=0,
                  sample_weight=np.where(Y == 1, 4.0, 1.0))
    _same_weights(arrays, by_sample)
    _same_weights(stream, by_sample)


def test_class_weight_errors():
    model = _model()
    with pytest.raises(ValueError, match="class_weight and sample_weight cannot both"):
        model.fit(X, Y, class_weight={0: 2.0}, sample_weight=np.ones(10), verbose=0)
    with pytest.raises(ValueError, match="keys are class indices, got 'cat'"):
        model.fit(X, Y, class_weight={"cat": 2.0}, verbose=0)
    with pytest.raises(ValueError, match="weight of class 0 is nan"):
        model.fit(X, Y, class_weight={0: float("nan")}, verbose=0)
    with pytest.raises(ValueError, match="a dict"):
        model.fit(X, Y, class_weight=[1.0, 2.0], verbose=0)


def test_steps_per_epoch_on_arrays_continues_through_the_data():
    """10 examples, batch 4: batches b0 b1 b2 (b2 padded). steps_per_epoch=2 over 3 epochs
    trains b0 b1 | b2 b0 | b1 b2, as a generator yielding that order does."""
    arrays, stream = _model(), _model()
    history = arrays.fit(X, Y, batch_size=4, epochs=3, steps_per_epoch=2, shuffle=False,
                         verbose=0)
    order = [0, 1, 2, 0, 1, 2]
    batches = [(X[4 * b:4 * b + 4], Y[4 * b:4 * b + 4]) for b in order]
    stream.fit(iter(batches), batch_size=4, epochs=3, steps_per_epoch=2, verbose=0)
    assert len(history.history["loss"]) == 3
    assert int(arrays.optimizer.iterations.get_value()) == 6
    _same_weights(arrays, stream)
    np.testing.assert_allclose(history.history["loss"], stream.history.history["loss"],
                               rtol=1e-6)


def test_initial_epoch_runs_the_remaining_epochs():
    model = _model()
    seen = []
    callback = nn.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))
    history = model.fit(X, Y, epochs=5, initial_epoch=3, verbose=0, callbacks=[callback])
    assert history.epoch == [3, 4] and seen == [3, 4]
    assert int(model.optimizer.iterations.get_value()) == 2
    with pytest.raises(ValueError, match="initial_epoch=6 must be in"):
        model.fit(X, Y, epochs=5, initial_epoch=6, verbose=0)


# ---- one batch ----

def test_train_on_batch_is_one_fit_step():
    on_batch, fitted = _model(), _model()
    loss, accuracy = on_batch.train_on_batch(X[:6], Y[:6])
    history = fitted.fit(X[:6], Y[:6], batch_size=6, epochs=1, shuffle=False, verbose=0)
    _same_weights(on_batch, fitted)
    assert loss == pytest.approx(history.history["loss"][0])
    assert accuracy == pytest.approx(history.history["accuracy"][0])
    logs = on_batch.train_on_batch(X[:6], Y[:6], class_weight={0: 2.0}, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    assert int(on_batch.optimizer.iterations.get_value()) == 2


def test_test_and_predict_on_batch_match_evaluate_and_predict():
    model = _model()
    before = model.get_weights()
    logs = model.test_on_batch(X[:7], Y[:7], return_dict=True)
    assert logs == pytest.approx(model.evaluate(X[:7], Y[:7], batch_size=7, return_dict=True))
    weights = RNG.random(7).astype(np.float32)
    assert model.test_on_batch(X[:7], Y[:7], sample_weight=weights)[0] == pytest.approx(
        model.evaluate(X[:7], Y[:7], sample_weight=weights, batch_size=3)[0], rel=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(X[:7]), model.predict(X[:7]),
                               rtol=1e-6)
    for u, v in zip(model.get_weights(), before):             # nothing was trained
        np.testing.assert_array_equal(u, v)
    only_loss = _model(metrics=())
    assert isinstance(only_loss.test_on_batch(X[:3], Y[:3]), float)
    with pytest.raises(gc.data.DataTypeError, match="train_on_batch: x"):
        model.train_on_batch(iter([(X, Y)]), None)
    with pytest.raises(gc.FeedError, match="takes examples of shape"):
        model.predict_on_batch(X[:, :3])


# ---- architecture as JSON, layers by name or index ----

def test_to_json_and_model_from_json_round_trip():
    inputs = nn.Input((4,), name="x")
    hidden = nn.Dense(6, activation="relu", kernel_regularizer="l2", name="hidden")(inputs)
    outputs = nn.Dense(2, name="out")(nn.Concatenate()([hidden, inputs]))
    model = nn.Model(inputs, outputs, name="two_paths")
    text = model.to_json(indent=1)
    assert json.loads(text)["class_name"] == "Model"
    again = nn.model_from_json(text)
    assert again.get_config() == model.get_config()
    again.set_weights(model.get_weights())
    model.compile("sgd", "mse", device="interpret")
    again.compile("sgd", "mse", device="interpret")
    np.testing.assert_allclose(again.predict(X), model.predict(X), rtol=1e-6)
    sequential = _model()
    assert nn.model_from_json(sequential.to_json()).get_config() == sequential.get_config()


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(format="keras"), "field format: 'keras'"),
    (lambda m: m["config"]["layers"][0]["config"].update(units=10 ** 9),
     "would create weight kernel of shape"),
    (lambda m: m["config"]["layers"][0]["config"].update(units="5"),
     r"units: '5' is not a valid setting"),
    (lambda m: m["config"]["layers"].append({"class_name": "Lambda2", "config": {}}),
     "unknown layer class 'Lambda2'"),
])
def test_model_from_json_reads_without_trust(edit, message):
    meta = json.loads(_model().to_json())
    edit(meta)
    with pytest.raises(gc.CheckpointError, match=message):
        nn.model_from_json(json.dumps(meta))
    with pytest.raises(gc.CheckpointError, match="not valid JSON"):
        nn.model_from_json("{'class_name': ")


def test_get_layer_by_name_or_index():
    model = _model()
    first, last = model.layers
    assert model.get_layer(index=0) is first and model.get_layer(index=-1) is last
    assert model.get_layer(last.name) is last and model.get_layer(name=first.name) is first
    with pytest.raises(ValueError, match="index 2 is out of range: model .* has 2 layers"):
        model.get_layer(index=2)
    with pytest.raises(ValueError, match="a name or an index"):
        model.get_layer()
    with pytest.raises(ValueError, match="a name or an index"):
        model.get_layer(first.name, 0)


def test_saved_nadam_model_resumes_bit_identically(tmp_path):
    straight = _model(optimizer=gc.optim.Nadam(0.05))
    straight.fit(X, Y, batch_size=5, epochs=4, shuffle=False, verbose=0)
    halves = _model(optimizer=gc.optim.Nadam(0.05))
    halves.fit(X, Y, batch_size=5, epochs=2, shuffle=False, verbose=0)
    halves.save(tmp_path / "nadam.npz")
    resumed = nn.load_model(tmp_path / "nadam.npz")
    assert resumed.optimizer.u_product.get_value() == halves.optimizer.u_product.get_value()
    resumed.compile(resumed.optimizer, resumed.loss, resumed.metrics, device="interpret")
    resumed.fit(X, Y, batch_size=5, epochs=2, shuffle=False, verbose=0)
    for u, v in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("optimizer", ["nadam", "adamax", "lion",
                                       lambda: gc.optim.LossScaleOptimizer("adam")],
                         ids=["nadam", "adamax", "lion", "loss_scale"])
@pytest.mark.parametrize("loss,metrics,y_spec", [
    ("sparse_categorical_crossentropy",
     ["sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"], ((), np.int32)),
    ("huber", ["auc", "binary_accuracy"], ((3,), np.float32)),
    ("kl_divergence", ["categorical_accuracy", "top_k_categorical_accuracy"],
     ((3,), np.float32)),
    ("poisson", [], ((3,), np.float32)), ("hinge", [], ((3,), np.float32)),
    ("cosine_similarity", [], ((3,), np.float32)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_new_pieces_build_no_float64_value(optimizer, loss, metrics, y_spec):
    """numpy float64 scalars promote (NEP 50): the new optimizers, losses, metrics,
    regularizers and constraints must keep a float32 step float32."""
    from graphc.ir import Graph
    gc.random.set_seed(0)
    model = nn.Sequential([
        nn.Input((4,)),
        nn.Dense(6, activation="relu", kernel_regularizer=nn.regularizers.L1L2(0.1, 0.1),
                 activity_regularizer="l2", kernel_constraint=nn.constraints.MaxNorm(2.0),
                 bias_constraint=nn.constraints.MinMaxNorm(0.1, 1.0)),
        nn.Dense(3, activation="softmax", kernel_constraint="unit_norm",
                 bias_constraint="non_neg")])
    model.compile(optimizer if isinstance(optimizer, str) else optimizer(), loss, metrics,
                  device="interpret")
    step = model.compiled_steps().train(4, y_spec)
    values = Graph.from_outputs(step.outputs + [v for _, v in step.updates]).values()
    wide = [v for v in values if v.dtype == np.float64]
    assert not wide, [(v, v.site) for v in wide[:5]]
