"""model.save / gc.nn.load_model: round trips, optimizer state, atomic writes, clear errors."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.nn import saving

RNG = np.random.default_rng(5)
X = RNG.standard_normal((24, 5)).astype(np.float32)
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int32) + (X[:, 2] > 1).astype(np.int32)


def _sequential(seed=0):
    gc.random.set_seed(seed)
    model = nn.Sequential([nn.Input((5,)), nn.Dense(8, activation="relu"), nn.Dropout(0.1),
                           nn.Dense(3, activation="softmax")])
    model.compile(gc.optim.Adam(gc.optim.ExponentialDecay(0.05, 4, 0.5), amsgrad=True),
                  "sparse_categorical_crossentropy", ["accuracy", "f1"], device="interpret")
    return model


def _functional(seed=0):
    gc.random.set_seed(seed)
    inputs = nn.Input((5,), name="features")
    hidden = nn.Dense(6, activation="tanh", kernel_initializer="he_normal")(inputs)
    skip = nn.Concatenate()([hidden, inputs])
    model = nn.Model(inputs, nn.Dense(3)(skip), name="skip_model")
    model.compile(gc.optim.SGD(0.1, momentum=0.9), nn.losses.SparseCategoricalCrossentropy(
        from_logits=True), device="interpret")
    return model


@pytest.mark.parametrize("make", [_sequential, _functional])
def test_round_trip_predictions_config_and_optimizer_state(make, tmp_path):
    model = make()
    model.fit(X, Y, batch_size=8, epochs=2, seed=0, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = nn.load_model(path)
    loaded.compile(loaded.optimizer, loaded.loss, loaded.metrics, device="interpret")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert type(loaded) is type(model) and loaded.name == model.name
    assert loaded.get_config() == model.get_config()
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert [m.name for m in loaded.metrics] == [m.name for m in model.metrics]
    saved = model.optimizer.state_arrays(model.trainable_weights)
    restored = loaded.optimizer.state_arrays(loaded.trainable_weights)
    assert sorted(saved) == sorted(restored) and int(restored["iterations"]) == 6
    for key in saved:
        np.testing.assert_array_equal(saved[key], restored[key])


@pytest.mark.parametrize("make", [_sequential, _functional])
def test_resumed_training_equals_uninterrupted(make, tmp_path):
    """Save after 2 epochs, load, train 1 more: the same weights as 3 epochs straight
    (optimizer slots, step, schedule and dropout streams continue)."""
    model = make()
    model.fit(X, Y, batch_size=8, epochs=2, seed=0, verbose=0)
    model.save(tmp_path / "ckpt.npz")
    model.fit(X, Y, batch_size=8, epochs=1, seed=1, verbose=0)
    resumed = nn.load_model(tmp_path / "ckpt.npz")
    resumed.compile(resumed.optimizer, resumed.loss, device="interpret")
    resumed.fit(X, Y, batch_size=8, epochs=1, seed=1, verbose=0)
    for a, b in zip(resumed.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.opencl
def test_round_trip_on_device(cl_device, tmp_path):
    model = _sequential()
    model.compile(model.optimizer, model.loss, device=cl_device)
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = nn.load_model(tmp_path / "m.npz")
    loaded.compile(loaded.optimizer, loaded.loss, device=cl_device)
    np.testing.assert_array_equal(loaded.predict(X, batch_size=8), model.predict(X, batch_size=8))


def test_weights_only_round_trip_and_shape_mismatch(tmp_path):
    model, other = _sequential(1), _sequential(2)
    model.save_weights(tmp_path / "w.npz")
    other.load_weights(tmp_path / "w.npz")
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    wider = nn.Sequential([nn.Input((5,)), nn.Dense(9), nn.Dense(3)])
    with pytest.raises(nn.CheckpointError, match=r"w\.npz.*shape \(5, 8\).*\(5, 9\)"):
        wider.load_weights(tmp_path / "w.npz")
    shorter = nn.Sequential([nn.Input((5,)), nn.Dense(3)])
    with pytest.raises(nn.CheckpointError, match="holds 4 weights.*has 2"):
        shorter.load_weights(tmp_path / "w.npz")


# ---- atomic writes ----

def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    model = _sequential()
    path = tmp_path / "model.npz"
    model.save(path)
    before = path.read_bytes()
    model.layers[0].kernel.set_value(np.zeros((5, 8), np.float32))

    def half_then_fail(file, arrays):
        np.savez(file, **arrays)
        file.truncate(file.tell() // 2)
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(saving, "_write_npz", half_then_fail)
    with pytest.raises(OSError, match="simulated"):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]                 # the temporary file is gone
    assert not np.all(nn.load_model(path).layers[0].kernel.get_value() == 0)


KILLED_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from graphc.nn.saving import atomic_savez
    path = sys.argv[1]
    atomic_savez(path, {"version": np.array(0), "big": np.zeros(1, np.float32)})
    print("ready", flush=True)
    for version in range(1, 1000):
        atomic_savez(path, {"version": np.array(version),
                            "big": np.full(8_000_000, version, np.float32)})
""")


def test_save_killed_mid_write_leaves_a_loadable_file(tmp_path):
    path = tmp_path / "ckpt.npz"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline, "the writer never started a second save"
        time.sleep(0.01)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    arrays = saving.read_npz(path)
    version = int(arrays["version"])
    assert version == 0 or np.all(arrays["big"] == version)


# ---- errors ----

def test_truncated_file_raises_a_clear_error(tmp_path):
    path = tmp_path / "model.npz"
    _sequential().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(nn.CheckpointError, match=r"model\.npz.*truncated, corrupt"):
        nn.load_model(path)
    assert issubclass(nn.CheckpointError, gc.GraphcError)


@pytest.mark.parametrize("content", [b"", b"not a model at all" * 10, b"PK\x03\x04garbage"])
def test_garbage_file_raises_a_clear_error(tmp_path, content):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    with pytest.raises(nn.CheckpointError, match=r"junk\.npz"):
        nn.load_model(path)


def test_foreign_npz_and_missing_entries(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(nn.CheckpointError, match="not a graphc model"):
        nn.load_model(foreign)
    path = tmp_path / "model.npz"
    _sequential().save(path)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    incomplete = tmp_path / "incomplete.npz"
    with zipfile.ZipFile(incomplete, "w") as archive:
        for name, data in entries.items():
            if name != "weights/2.npy":
                archive.writestr(name, data)
    with pytest.raises(nn.CheckpointError, match=r"incomplete\.npz.*'weights/2' is missing"):
        nn.load_model(incomplete)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        nn.load_model(tmp_path / "absent.npz")


def test_function_loss_needs_custom_objects(tmp_path):
    def squared(y_true, y_pred):
        return gc.mean(gc.square(y_pred - gc.cast(y_true, gc.float32)), axis=-1)
    model = nn.Sequential([nn.Input((5,)), nn.Dense(1)])
    model.compile("sgd", squared, device="interpret")
    model.save(tmp_path / "f.npz")
    with pytest.warns(UserWarning, match="custom_objects"):
        assert nn.load_model(tmp_path / "f.npz").optimizer is None
    loaded = nn.load_model(tmp_path / "f.npz", custom_objects={"squared": squared})
    assert loaded.loss.function is squared


# ---- temporaries left by killed saves ----

def test_next_save_removes_what_a_killed_save_left(tmp_path):
    """A save SIGKILLed mid-write leaves its temporary; the next save of the same target
    removes it (its writer is dead)."""
    path = tmp_path / "ckpt.npz"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline, "the writer never started a second save"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    saving.atomic_savez(path, {"version": np.array(7)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    assert int(saving.read_npz(path)["version"]) == 7


def test_only_stale_temporaries_of_the_same_target_are_removed(tmp_path):
    host = saving._host_tag()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead, alive = int(finished.stdout), os.getppid()
    names = {
        f".model.npz.{dead}-{host}.k2j3.tmp": "removed",         # its writer is dead
        f".model.npz.{alive}-{host}.a9b8.tmp": "kept",            # a live writer
        f".model.npz.{dead}-elsewhere.c7d6.tmp": "kept",          # another host, recent
        f".model.npz.{dead}-faraway.e5f4.tmp": "removed",         # another host, an hour old
        ".model.npz.x1y2z3w4.tmp": "removed",                     # no pid, an hour old
        ".model.npz.q1w2e3r4.tmp": "kept",                        # no pid, recent
        f".other.npz.{dead}-{host}.k2j3.tmp": "kept",             # another target
        f".model.npz.bak.{dead}-{host}.k2j3.tmp": "kept",         # not our name
        "model.npz.tmp": "kept",
    }
    hour_ago = time.time() - 3600
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
        if name.startswith((f".model.npz.{dead}-faraway", ".model.npz.x1y2")):
            os.utime(tmp_path / name, (hour_ago, hour_ago))
    _sequential().save(tmp_path / "model.npz")
    left = {p.name for p in tmp_path.iterdir()} - {"model.npz"}
    assert left == {name for name, fate in names.items() if fate == "kept"}
