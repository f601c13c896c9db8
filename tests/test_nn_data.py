"""What fit / evaluate / predict take (arrays, lists and dicts by name, loaders, generators
with steps_per_epoch, sample weights), what they refuse and how they say it, the label and
Embedding-id checks, the from_logits warning and the no-device warning. All on the
reference interpreter: the data path is the same for every device."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.nn import model as nn_model

RNG = np.random.default_rng(3)
X = RNG.standard_normal((12, 4)).astype(np.float32)
Y = (np.arange(12) % 3).astype(np.int32)


def _model(seed=0, activation="softmax", loss="sparse_categorical_crossentropy", name="out"):
    gc.random.set_seed(seed)
    model = nn.Sequential([nn.Input((4,), name="features"), nn.Dense(6, activation="tanh"),
                           nn.Dense(3, activation=activation, name=name)])
    model.compile(gc.optim.SGD(0.1), loss, ["accuracy"], device="interpret")
    return model


def _batches(x, y, size, *extra):
    for start in range(0, len(x), size):
        yield (x[start:start + size], y[start:start + size],
               *(e[start:start + size] for e in extra))


def _same_training(a, b):
    ha, hb = a.history.history, b.history.history
    assert list(ha) == list(hb)
    for key in ha:
        np.testing.assert_allclose(ha[key], hb[key], rtol=1e-6, err_msg=key)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)


# ---- what fit accepts ----

def test_generator_with_steps_per_epoch_trains_like_arrays():
    arrays, stream = _model(), _model()
    arrays.fit(X, Y, batch_size=4, epochs=3, shuffle=False, verbose=0)

    def forever():
        while True:
            yield from _batches(X, Y, 4)
    stream.fit(forever(), steps_per_epoch=3, epochs=3, verbose=0)
    _same_training(arrays, stream)
    assert int(stream.optimizer.iterations.get_value()) == 9
    assert stream.evaluate(forever(), steps=3) == pytest.approx(arrays.evaluate(X, Y))


def test_gc_data_batches_is_read_once_and_training_stops_with_a_warning():
    arrays, stream = _model(), _model()
    arrays.fit(X, Y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    with pytest.warns(UserWarning, match=r"ran out after 1 of 3 epochs.*steps_per_epoch") as w:
        history = stream.fit(gc.data.batches(X, Y, 4, shuffle=False), epochs=3, verbose=0)
    assert [r.filename for r in w] == [__file__]
    assert history.epoch == [0]
    _same_training(arrays, stream)
    more = _model()                          # a generator spread over epochs by steps
    more.fit(gc.data.batches(np.concatenate([X, X]), np.concatenate([Y, Y]), 4, shuffle=False),
             steps_per_epoch=3, epochs=2, verbose=0)
    assert more.history.epoch == [0, 1] and int(more.optimizer.iterations.get_value()) == 6


def test_dicts_by_input_and_output_name_equal_lists():
    def two_inputs(seed):
        gc.random.set_seed(seed)
        left, right = nn.Input((4,), name="left"), nn.Input((2,), name="right")
        merged = nn.Concatenate()([nn.Dense(3, name="l")(left), right])
        model = nn.Model([left, right], nn.Dense(1, name="price")(merged))
        model.compile(gc.optim.SGD(0.05), "mse", device="interpret")
        return model
    z = RNG.standard_normal((12, 2)).astype(np.float32)
    t = RNG.standard_normal((12, 1)).astype(np.float32)
    by_list, by_name = two_inputs(1), two_inputs(1)
    by_list.fit([X, z], t, batch_size=4, epochs=2, shuffle=False, verbose=0)
    by_name.fit({"right": z, "left": X}, {"price": t}, batch_size=4, epochs=2, shuffle=False,
                verbose=0)
    _same_training(by_list, by_name)
    np.testing.assert_array_equal(by_name.predict({"left": X, "right": z}),
                                  by_list.predict([X, z]))
    with pytest.raises(gc.FeedError, match=r"\['left', 'right'\].*unknown keys \['rigth'\]"):
        by_name.fit({"left": X, "rigth": z}, t, verbose=0)
    with pytest.raises(gc.FeedError, match=r"\['price'\].*missing keys \['price'\]"):
        by_name.fit([X, z], {"cost": t}, verbose=0)


def test_sample_weights_from_arrays_and_generators_follow_keras():
    w = RNG.uniform(0.0, 2.0, 12).astype(np.float32)
    model = _model()
    probs = model.predict(X)
    per_example = -np.log(probs[np.arange(12), Y])
    logs = model.evaluate(X, Y, batch_size=5, sample_weight=w, return_dict=True)
    # Keras: sum(w * loss) over the number of examples; metrics unweighted
    assert logs["loss"] == pytest.approx(np.sum(w * per_example) / 12, rel=1e-5)
    assert logs["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == Y))
    arrays, stream = _model(), _model()
    arrays.fit(X, Y, batch_size=4, sample_weight=w, epochs=2, shuffle=False, verbose=0)

    def weighted():
        while True:
            yield from _batches(X, Y, 4, w)
    stream.fit(weighted(), steps_per_epoch=3, epochs=2, verbose=0)
    _same_training(arrays, stream)
    with pytest.raises(gc.FeedError, match=r"weight nan of sample 2 is not finite"):
        arrays.fit(X, Y, sample_weight=np.where(np.arange(12) == 2, np.nan, 1.0), verbose=0)


def test_predict_takes_generators_of_inputs_and_steps():
    model = _model()
    expected = model.predict(X)
    np.testing.assert_allclose(model.predict(x for x in np.split(X, 3)), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict(_batches(X, Y, 5), steps=2), expected[:10],
                               rtol=1e-6)


@pytest.mark.parametrize("data, kind", [("pixels.png", "str"), ({1, 2}, "set"),
                                        (object(), "object"), (None, "NoneType"),
                                        (np.array(["a", "b"]), "<U1")])
def test_refused_data_names_its_type_and_what_is_accepted(data, kind):
    model = _model()
    with pytest.raises(gc.data.DataTypeError) as caught:
        model.fit(data, Y, verbose=0)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, gc.GraphcError)
    assert kind in str(caught.value)
    if kind != "<U1":
        assert "gc.data.batches" in str(caught.value) and "dict" in str(caught.value)


def test_stream_mistakes_are_clear():
    model = _model()
    with pytest.raises(ValueError, match="validation_split takes arrays"):
        model.fit(_batches(X, Y, 4), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="x alone; fit and evaluate need"):
        model.fit((x for x in np.split(X, 3)), verbose=0)
    with pytest.raises(gc.data.DataError, match="yields no batches"):
        model.fit(iter([]), verbose=0)
    with pytest.raises(ValueError, match="one-shot iterator.*validation_steps"):
        model.fit(X, Y, epochs=2, validation_data=_batches(X, Y, 4), verbose=0)


# ---- labels and ids ----

def test_sparse_labels_outside_the_classes_are_refused():
    model = _model()
    bad = Y.copy()
    bad[7] = 3
    with pytest.raises(gc.data.OutOfRangeError) as caught:
        model.fit(X, bad, batch_size=4, verbose=0)
    text = str(caught.value)
    assert "label 3 of sample 7" in text and "[0, 3)" in text
    assert "SparseCategoricalCrossentropy" in text and "'out'" in text
    assert int(model.optimizer.iterations.get_value()) == 0           # nothing ran
    bad[7] = -1
    with pytest.raises(gc.data.OutOfRangeError, match="label -1 of sample 7"):
        model.evaluate(X, bad)
    with pytest.raises(gc.data.OutOfRangeError, match="label 1.5 of sample 4"):
        model.fit(X, np.where(np.arange(12) == 4, 1.5, 0.0), verbose=0)
    with pytest.raises(gc.data.OutOfRangeError, match=r"validation_data: y: label 5 of sample 0"):
        model.fit(X, Y, validation_data=(X[:2], np.array([5, 0])), verbose=0)
    with pytest.raises(gc.data.OutOfRangeError, match=r"batch 2: label 9 of sample 9"):
        model.fit(_batches(X, np.where(np.arange(12) == 9, 9, Y), 4), verbose=0)


def test_embedding_ids_outside_the_table_are_refused():
    gc.random.set_seed(0)
    table = nn.Embedding(10, 2, name="words")                         # LAYER:words
    model = nn.Sequential([nn.Input((5,), "int32", name="tokens"), table, nn.Flatten(),
                           nn.Dense(1)])
    model.compile("sgd", "mse", device="interpret")
    ids = np.arange(30).reshape(6, 5) % 10
    ids[3, 2] = 10
    with pytest.raises(gc.data.OutOfRangeError) as caught:
        model.predict(ids)
    text = str(caught.value)
    assert "id 10 of sample 3 (position (3, 2))" in text and "'tokens'" in text
    assert "[0, 10)" in text and "words" in text and f"{os.path.basename(__file__)}:" in text
    ids[3, 2] = -4
    with pytest.raises(gc.data.OutOfRangeError, match="id -4 of sample 3"):
        model.fit(ids, np.zeros(6, np.float32), verbose=0)


# ---- warnings ----

def test_probability_loss_on_unbounded_outputs_warns_once():
    model = _model(activation=None, name="scores")
    with pytest.warns(UserWarning, match=r"from_logits=False.*'scores'.*from_logits=True") as w:
        model.fit(X, Y, batch_size=4, epochs=2, verbose=0)
        model.evaluate(X, Y)
    assert len([r for r in w if "from_logits" in str(r.message)]) == 1
    assert w[0].filename == __file__
    for quiet in (_model(), _model(activation=None, loss=nn.losses.SparseCategoricalCrossentropy(
            from_logits=True))):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            quiet.fit(X, Y, batch_size=4, verbose=0)


def test_no_device_is_said_once(monkeypatch):
    monkeypatch.setattr("graphc.runtime.device.devices", lambda: [])
    monkeypatch.delenv("GRAPHC_DEVICE", raising=False)
    monkeypatch.setattr(nn_model, "_warned_no_device", False)
    with pytest.warns(nn_model.NoDeviceWarning, match="no OpenCL device.*interpreter") as w:
        for seed in (0, 1):
            model = nn.Sequential([nn.Input((4,)), nn.Dense(3, activation="softmax")])
            model.compile("sgd", "sparse_categorical_crossentropy")
            model.fit(X, Y, batch_size=4, verbose=0, seed=seed)
    assert len(w) == 1 and w[0].filename == __file__
    assert model.compiled_steps().device == "interpret"


def test_targets_that_would_broadcast_are_refused():
    model = _model(loss="mse")
    with pytest.raises(gc.FeedError, match=r"y: targets of shape \(12, 1\).*MeanSquaredError.*"
                                           r"'out' gives examples of shape \(3,\)"):
        model.fit(X, Y[:, None].astype(np.float32), batch_size=3, verbose=0)
    with pytest.raises(gc.FeedError, match=r"shape \(12, 3\).*SparseCategoricalCrossentropy"):
        _model().evaluate(X, np.eye(3, dtype=np.int32)[Y])
