"""Callbacks ReduceLROnPlateau, LearningRateScheduler, CSVLogger, TerminateOnNaN and the
TensorBoard-like event log (JSON lines and a self-contained HTML page), by their Keras 3
rules and through fit."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(31)
X = RNG.standard_normal((12, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-1.0], [2.0]], np.float32)).astype(np.float32)


def _model(lr=0.05, seed=0):
    gc.random.set_seed(seed)
    model = nn.Sequential([nn.Input((3,)), nn.Dense(1)])
    model.compile(gc.optim.SGD(lr), "mse", ["mae"], device="interpret")
    return model


class _Holder:
    """What a callback sees of a model: its optimizer."""

    def __init__(self, lr):
        self.optimizer = gc.optim.SGD(lr)
        self.stop_training = False


def test_reduce_lr_on_plateau_follows_keras_rule():
    callback = nn.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, cooldown=1,
                                    min_lr=0.1, min_delta=0.0)
    holder = _Holder(1.0)
    callback.set_model(holder)
    callback.on_train_begin()
    values = [1.0, 0.9] + [0.95] * 10
    rates, logged = [], []
    for epoch, value in enumerate(values):
        logs = {"loss": value}
        callback.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
        rates.append(holder.optimizer.learning_rate)
    expected = [1, 1, 1, .5, .5, .25, .25, .125, .125, .1, .1, .1]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    np.testing.assert_allclose(logged, [1.0] + expected[:-1], rtol=1e-6)    # before the cut
    with pytest.raises(ValueError, match="factor must be below 1"):
        nn.ReduceLROnPlateau(factor=1.0)


def test_reduce_lr_on_plateau_in_fit_lowers_the_compiled_rate():
    model = _model(lr=0.05)
    flat = nn.ReduceLROnPlateau(monitor="val_loss", factor=0.2, patience=1, min_delta=10.0)
    history = model.fit(X, Y, epochs=3, batch_size=4, verbose=0, validation_data=(X, Y),
                        callbacks=[flat])
    np.testing.assert_allclose(history.history["learning_rate"], [0.05, 0.05, 0.01],
                               rtol=1e-6)
    assert model.optimizer.learning_rate == pytest.approx(0.002)


def test_learning_rate_scheduler_sets_each_epochs_rate():
    model = _model()
    scheduler = nn.LearningRateScheduler(lambda epoch, lr: 0.0 if epoch == 1 else lr * 0.5)
    weights = []
    record = nn.LambdaCallback(on_epoch_end=lambda e, logs: weights.append(model.get_weights()))
    history = model.fit(X, Y, epochs=3, batch_size=4, verbose=0, callbacks=[scheduler, record])
    np.testing.assert_allclose(history.history["learning_rate"], [0.025, 0.0, 0.0])
    for u, v in zip(weights[0], weights[1]):        # a zero rate trains nothing
        np.testing.assert_array_equal(u, v)
    one_argument = nn.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    history = _model().fit(X, Y, epochs=5, initial_epoch=2, verbose=0,
                           callbacks=[one_argument])
    np.testing.assert_allclose(history.history["learning_rate"], [0.1 / 3, 0.1 / 4, 0.1 / 5],
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"schedule\(0\) gave 'fast'"):
        _model().fit(X, Y, epochs=1, verbose=0,
                     callbacks=[nn.LearningRateScheduler(lambda epoch: "fast")])


def test_csv_logger_writes_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    model = _model()
    model.fit(X, Y, epochs=2, verbose=0, validation_split=0.25,
              callbacks=[nn.CSVLogger(path)])
    model.fit(X, Y, epochs=3, initial_epoch=2, verbose=0, validation_split=0.25,
              callbacks=[nn.CSVLogger(path, append=True)])
    with open(path, newline="") as source:
        rows = list(csv.DictReader(source))
    assert list(rows[0]) == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[2]["loss"]) == pytest.approx(model.history.history["loss"][0])
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[nn.CSVLogger(path, separator=";")])
    assert open(path).readline().strip() == "epoch;loss;mae"


def test_terminate_on_nan_stops_at_the_first_bad_batch(capsys):
    model = _model(lr=1e30)
    seen = []
    count = nn.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(batch))
    big = X * 1e20
    history = model.fit(big, Y, epochs=3, batch_size=2, verbose=0,
                        callbacks=[nn.TerminateOnNaN(), count])
    assert len(history.history["loss"]) == 1 and len(seen) < 6
    assert "invalid loss, terminating training" in capsys.readouterr().out


def test_tensorboard_event_log_and_page(tmp_path):
    log_dir = tmp_path / "run"
    model = _model()
    model.fit(X, Y, epochs=3, batch_size=4, verbose=0, validation_split=0.25,
              callbacks=[nn.callbacks.TensorBoard(log_dir, update_freq=2)])
    events = [json.loads(line) for line in open(log_dir / "events.jsonl")]
    epochs = [e for e in events if e["kind"] == "epoch"]
    batches = [e for e in events if e["kind"] == "batch"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert [e["step"] for e in batches] == [2, 4, 6, 8]        # 3 batches an epoch, every 2
    assert epochs[-1]["values"]["val_loss"] == pytest.approx(
        model.history.history["val_loss"][-1])
    page = (log_dir / "index.html").read_text()
    assert page.count("<svg") == 2 + 2              # loss, mae per epoch and per batch
    assert "validation: " in page and "train: " in page and "Total params" in page
    assert "<script" not in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    (log_dir / "index.html").unlink()
    done = subprocess.run([sys.executable, "-m", "graphc.nn.eventlog", str(log_dir)],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("index.html") and (log_dir / "index.html").exists()


def test_tensorboard_refuses_what_it_does_not_log():
    with pytest.raises(ValueError, match="histogram_freq is not supported"):
        nn.callbacks.TensorBoard(histogram_freq=1)
    with pytest.raises(ValueError, match="update_freq"):
        nn.callbacks.TensorBoard(update_freq="step")
