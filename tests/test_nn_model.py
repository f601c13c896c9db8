"""gc.nn Sequential / functional Model, compile / fit / evaluate / predict, metrics and
callbacks: on the reference interpreter (device='interpret'), and on the OpenCL device
against it."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.nn import initializers, loops

sklearn_metrics = pytest.importorskip("sklearn.metrics")

RNG = np.random.default_rng(7)


def _blobs(n=40, features=6, classes=3, seed=0):
    """Separable-ish classes: a class's features are shifted by its index."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n).astype(np.int32)
    x = rng.standard_normal((n, features)).astype(np.float32)
    x[np.arange(n), y % features] += 2.0
    return x, y


def _mlp(seed=0, dropout=0.0, classes=3, features=6):
    gc.random.set_seed(seed)
    layers = [nn.Input((features,)), nn.Dense(16, activation="relu")]
    layers += [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(layers + [nn.Dense(classes, activation="softmax")])


# ---- models ----

def test_sequential_build_routes_and_summary():
    by_input = nn.Sequential([nn.Input((6,)), nn.Dense(4), nn.Dense(2)])
    by_shape = nn.Sequential([nn.Dense(4, input_shape=(6,)), nn.Dense(2)])
    by_build = nn.Sequential([nn.Dense(4), nn.Dense(2)])
    by_build.build((6,))
    for model in (by_input, by_shape, by_build):
        assert model.built and model.count_params() == 6 * 4 + 4 + 4 * 2 + 2
    lazy = nn.Sequential([nn.Dense(3)])
    assert not lazy.built
    lazy.compile("sgd", "mse", device="interpret")
    assert lazy.predict(np.ones((5, 2), np.float32), batch_size=4).shape == (5, 3)
    text = by_input.summary(print_fn=lambda s: None)
    assert "(None, 4)" in text and "Total params: 38" in text and "Dense" in text
    assert "Trainable params: 38" in text and "Non-trainable params: 0" in text


def test_functional_dag_with_shared_layer_and_two_inputs():
    left, right = nn.Input((4,), name="left"), nn.Input((4,), name="right")
    shared = nn.Dense(3, activation="tanh")
    merged = nn.Concatenate()([shared(left), shared(right), nn.Add()([left, right])])
    model = nn.Model([left, right], nn.Dense(1)(merged))
    assert len(model.layers) == 4 and len(model.weights) == 4       # shared layer once
    a, b = (RNG.standard_normal((5, 4)).astype(np.float32) for _ in range(2))
    model.compile("adam", "mse", device="interpret")
    history = model.fit([a, b], a.sum(1), batch_size=2, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    kernel, bias = shared.get_weights()
    w, c = model.layers[-1].get_weights()
    feats = np.concatenate([np.tanh(a @ kernel + bias), np.tanh(b @ kernel + bias), a + b], 1)
    np.testing.assert_allclose(model.predict([a, b], batch_size=2), feats @ w + c, rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="disconnected"):
        nn.Model(left, shared(nn.Input((4,))))


def test_padding_weights_exclude_padded_rows():
    model = _mlp()
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"], device="interpret")
    x, y = _blobs(13)
    probs = model.predict(x, batch_size=8)
    expected_loss = np.mean(-np.log(probs[np.arange(13), y]))
    expected_acc = np.mean(probs.argmax(1) == y)
    loss, acc = model.evaluate(x, y, batch_size=8)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert acc == pytest.approx(expected_acc)
    np.testing.assert_allclose(model.predict(x, batch_size=5), probs, rtol=1e-6)


def test_fit_learns_history_and_validation():
    model = _mlp()
    model.compile(gc.optim.Adam(0.05), "sparse_categorical_crossentropy",
                  ["accuracy", "precision", "recall", "f1"], device="interpret")
    x, y = _blobs(60)
    history = model.fit(x, y, batch_size=16, epochs=6, validation_split=0.25, verbose=0)
    keys = ["loss", "accuracy", "precision", "recall", "f1"]
    assert list(history.history) == keys + [f"val_{k}" for k in keys]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.6
    assert int(model.optimizer.iterations.get_value()) == 6 * 3       # 45 rows, batches of 16
    assert model.history is history and history.epoch == list(range(6))
    result = model.evaluate(x, y, return_dict=True)
    assert set(result) == set(keys)


def test_loss_object_from_logits_equals_softmax_layer_and_name():
    x, y = _blobs(10)
    gc.random.set_seed(3)
    logits = nn.Sequential([nn.Input((6,)), nn.Dense(3)])
    probs = nn.Sequential([nn.Input((6,)), logits.layers[0], nn.Activation("softmax")])
    logits.compile("sgd", nn.losses.SparseCategoricalCrossentropy(from_logits=True),
                   device="interpret")
    probs.compile("sgd", "sparse_categorical_crossentropy", device="interpret")
    assert logits.evaluate(x, y) == pytest.approx(probs.evaluate(x, y), rel=1e-5)


def _metric_model(loss, metrics):
    """A model whose predictions are its inputs, so metrics see chosen predictions."""
    model = nn.Sequential([nn.Activation("linear")])
    model.compile("sgd", loss, metrics, device="interpret")
    return model


def test_multiclass_metrics_match_sklearn_macro():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 50).astype(np.int32)
    scores = rng.random((50, 5)).astype(np.float32) + np.eye(5, dtype=np.float32)[y] * 0.6
    model = _metric_model("sparse_categorical_crossentropy", ["accuracy", "precision",
                                                              "recall", "f1"])
    got = model.evaluate(scores, y, batch_size=16, return_dict=True)
    pred = scores.argmax(1)
    assert got["accuracy"] == pytest.approx(np.mean(pred == y))
    for name, fn in (("precision", sklearn_metrics.precision_score),
                     ("recall", sklearn_metrics.recall_score), ("f1", sklearn_metrics.f1_score)):
        assert got[name] == pytest.approx(fn(y, pred, average="macro", zero_division=0)), name
    onehot = np.eye(5, dtype=np.float32)[y]
    categorical = _metric_model("categorical_crossentropy", ["accuracy", "f1"])
    got_cat = categorical.evaluate(scores, onehot, batch_size=16, return_dict=True)
    assert got_cat["accuracy"] == got["accuracy"] and got_cat["f1"] == pytest.approx(got["f1"])


def test_binary_metrics_match_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, (30, 1)).astype(np.float32)
    p = np.clip(y * 0.4 + rng.random((30, 1)) * 0.6, 0.01, 0.99).astype(np.float32)
    model = _metric_model("binary_crossentropy", ["accuracy", "precision", "recall", "f1",
                                                  "mse"])
    got = model.evaluate(p, y[:, 0], batch_size=8, return_dict=True)   # (n,) targets, (n, 1)
    pred = (p[:, 0] > 0.5).astype(int)
    truth = y[:, 0].astype(int)
    assert got["accuracy"] == pytest.approx(np.mean(pred == truth))
    assert got["precision"] == pytest.approx(sklearn_metrics.precision_score(truth, pred))
    assert got["recall"] == pytest.approx(sklearn_metrics.recall_score(truth, pred))
    assert got["f1"] == pytest.approx(sklearn_metrics.f1_score(truth, pred))
    assert got["mse"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-5)
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert got["loss"] == pytest.approx(bce, rel=1e-5)


class _CountCalls(nn.Layer):
    """Identity that counts training-mode steps through a layer update (like BN's stats)."""

    def build(self, input_shape):
        self.count = self.add_weight("count", (), initializers.Zeros(), trainable=False)

    def call(self, x, training=False):
        if training:
            self.add_update(self.count, self.count + 1.0)
        return x


def test_layer_updates_run_with_the_train_step_only():
    counter = _CountCalls()
    model = nn.Sequential([nn.Input((6,)), counter, nn.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", device="interpret")
    x, y = _blobs(20)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    model.evaluate(x, y, batch_size=8)
    model.predict(x, batch_size=8)
    assert float(counter.count.get_value()) == 2 * 3
    assert len(model.non_trainable_weights) == 1


class _ActivityPenalty(nn.Layer):
    """Identity that adds 0.1 * mean(x**2) to the loss (like an activity regularizer)."""

    def call(self, x, training=False):
        self.add_loss(0.1 * gc.mean(gc.square(x)))
        return x


def test_added_losses_join_the_loss():
    x = RNG.standard_normal((12, 3)).astype(np.float32)
    y = RNG.standard_normal((12, 3)).astype(np.float32)
    model = nn.Sequential([nn.Input((3,)), _ActivityPenalty()])
    model.compile("sgd", "mse", device="interpret")
    expected = np.mean((x - y) ** 2) + 0.1 * np.mean(x ** 2)
    assert model.evaluate(x, y, batch_size=12) == pytest.approx(expected, rel=1e-5)
    gc.random.set_seed(0)
    dense = nn.Dense(3, kernel_initializer="ones")
    trained = nn.Sequential([nn.Input((3,)), dense, _ActivityPenalty()])
    trained.compile(gc.optim.SGD(0.1), "mse", device="interpret")
    trained.fit(x, np.zeros_like(y), batch_size=4, epochs=3, verbose=0)
    assert np.abs(dense.kernel.get_value()).max() < 1.0                # pulled towards 0


# ---- callbacks and progress ----

def test_early_stopping_restores_best_weights():
    model = _mlp()
    model.compile(gc.optim.SGD(0.0), "sparse_categorical_crossentropy", device="interpret")
    x, y = _blobs(16)
    snapshots = []
    bumps = nn.LambdaCallback(on_epoch_end=lambda epoch, logs: (
        snapshots.append(model.get_weights()),
        model.layers[0].kernel.set_value(model.layers[0].kernel.get_value() + 1.0)))
    stop = nn.EarlyStopping(monitor="loss", patience=2, restore_best_weights=True)
    history = model.fit(x, y, batch_size=16, epochs=20, callbacks=[stop, bumps], verbose=0)
    losses = history.history["loss"]
    best = int(np.argmin(losses))
    assert len(losses) == best + 3 < 20 and stop.stopped_epoch == best + 2
    for a, b in zip(model.get_weights(), snapshots[best]):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_saves_best_only(tmp_path):
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", device="interpret")
    x, y = _blobs(20)
    path = tmp_path / "best-{epoch:02d}.npz"
    check = nn.callbacks.ModelCheckpoint(str(path), monitor="loss", save_best_only=True)
    model.fit(x, y, batch_size=10, epochs=3, callbacks=[check], verbose=0)
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved and saved[0] == "best-01.npz" and check.best is not None


def test_progress_without_tqdm_prints_a_line_per_epoch(monkeypatch, capsys):
    monkeypatch.setattr(loops, "tqdm", None)
    model = _mlp()
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"], device="interpret")
    model.fit(*_blobs(10), batch_size=5, epochs=2, verbose=1)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch")]
    assert len(lines) == 2 and "loss:" in lines[0] and "accuracy:" in lines[0]


class _Loader:
    """A re-iterable data loader of (x, y) batches, the last one short."""

    def __init__(self, x, y, size):
        self.x, self.y, self.size = x, y, size

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __iter__(self):
        for start in range(0, len(self.x), self.size):
            yield self.x[start:start + self.size], self.y[start:start + self.size]


def test_fit_and_evaluate_a_loader_like_arrays():
    x, y = _blobs(21)
    results = []
    for data in ((x, y), (_Loader(x, y, 8), None)):
        model = _mlp(seed=2)
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"],
                      device="interpret")
        history = model.fit(*data, batch_size=8, epochs=2, shuffle=False, verbose=0)
        results.append((history.history["loss"], model.evaluate(*data, batch_size=8)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)
    model = _mlp(seed=2)
    model.compile("sgd", "sparse_categorical_crossentropy", device="interpret")
    assert model.predict(_Loader(x, y, 8)).shape == (21, 3)


def test_progress_bar_with_tqdm_on_a_terminal(capsys, monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    model = _mlp()
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"], device="interpret")
    model.fit(*_blobs(10), batch_size=5, epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "\r" in out and "2/2" in out       # redrawn per batch


def test_progress_in_a_log_file_is_one_line_per_epoch(tmp_path):
    """stdout redirected to a file (not a terminal): fit writes one plain line per epoch,
    never the carriage returns of a live bar."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import numpy as np, graphc as gc
        x = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int32)
        model = gc.nn.Sequential([gc.nn.Input((6,)), gc.nn.Dense(2, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"],
                      device="interpret")
        model.fit(x, y, batch_size=4, epochs=3)
    """))
    log = tmp_path / "train.log"
    with open(log, "w") as out:
        subprocess.run([sys.executable, str(script)], stdout=out, stderr=subprocess.STDOUT,
                       check=True, cwd=tmp_path)
    text = log.read_text()
    lines = text.splitlines()
    assert "\r" not in text, text[:300]
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all("loss: " in line and "accuracy: " in line for line in lines)


def test_errors_are_clear():
    model = _mlp()
    with pytest.raises(RuntimeError, match="must be compiled"):
        model.fit(*_blobs(8), verbose=0)
    with pytest.raises(ValueError, match="unknown loss"):
        model.compile("sgd", "hinge_of_fate")
    with pytest.raises(ValueError, match="unknown metric"):
        model.compile("sgd", "mse", ["auc_of_fate"])
    with pytest.raises(ValueError, match="needs targets"):
        model.fit(np.zeros((4, 6), np.float32), verbose=0)
    with pytest.raises(ValueError, match="same length"):
        model.compile("sgd", "mse", device="interpret")
        model.fit(np.zeros((4, 6), np.float32), np.zeros(5, np.float32), verbose=0)


# ---- on the device ----

def _count_functions(monkeypatch) -> list:
    made = []
    real = gc.function

    def counting(*args, **kwargs):
        made.append(kwargs.get("name"))
        return real(*args, **kwargs)
    monkeypatch.setattr(gc, "function", counting)
    return made


@pytest.mark.opencl
def test_one_train_and_one_eval_step_per_batch_size(cl_device, monkeypatch):
    made = _count_functions(monkeypatch)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"], device=cl_device)
    x, y = _blobs(37)
    model.fit(x, y, batch_size=16, epochs=2, validation_data=(x[:11], y[:11]), verbose=0)
    model.evaluate(x, y, batch_size=16)
    assert made == ["train_step_16", "eval_step_16"]
    model.predict(x, batch_size=16)
    model.predict(x[:3], batch_size=16)
    assert made[2:] == ["predict_step_16"]


@pytest.mark.opencl
def test_device_training_equals_interpreter(cl_device):
    x, y = _blobs(30)

    def train(device):
        model = _mlp(seed=4, dropout=0.3)
        model.compile(gc.optim.Adam(0.02), "sparse_categorical_crossentropy", ["accuracy"],
                      device=device)
        history = model.fit(x, y, batch_size=8, epochs=3, seed=1, verbose=0)
        return history.history, model.get_weights()

    (device_history, device_weights), (ref_history, ref_weights) = train(cl_device), \
        train("interpret")
    np.testing.assert_allclose(device_history["loss"], ref_history["loss"], rtol=1e-4)
    for a, b in zip(device_weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.opencl
def test_same_seed_same_device_identical_losses(cl_device):
    x, y = _blobs(30)

    def losses():
        model = _mlp(seed=9, dropout=0.2)
        model.compile("rmsprop", "sparse_categorical_crossentropy", device=cl_device)
        gc.random.set_seed(9)
        return model.fit(x, y, batch_size=8, epochs=2, verbose=0).history["loss"]

    assert losses() == losses()
