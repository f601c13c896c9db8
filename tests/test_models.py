"""The example models (graphc.models) train to stated quality on scikit-learn's 8x8 digits.

Each trains for a few epochs on the OpenCL device through its real `train` entry point.
Bounds: mlp >= 95% test accuracy, lenet >= 97%, lstm >= 90%, vit >= 90%; the autoencoder's test
reconstruction MSE < 0.025 (about a third of the 0.073 a constant mean image gets); the
VAE's test ELBO rises by >= 2 nats per image from the end of its first epoch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.cli import main as cli_main
from graphc.models import common

pytestmark = pytest.mark.opencl


def train(name: str, device, **overrides) -> dict:
    """Run graphc.models.NAME's train with its defaults, quietly, plots off unless given."""
    module = importlib.import_module(f"graphc.models.{name}")
    options = {"device": device, "verbose": 0, "plots": None, **overrides}
    return module.train(common.make_args(module.DEFAULTS, **options))


def test_mlp_reaches_95_percent(cl_device):
    metrics = train("mlp", cl_device, epochs=6)
    assert metrics["test_accuracy"] >= 0.95, metrics


def test_lenet_reaches_97_percent(cl_device):
    metrics = train("lenet", cl_device, epochs=10)
    assert metrics["test_accuracy"] >= 0.97, metrics


def test_lstm_reaches_90_percent(cl_device):
    metrics = train("lstm", cl_device, epochs=8)
    assert metrics["test_accuracy"] >= 0.90, metrics


def test_autoencoder_reconstructs(cl_device):
    metrics = train("autoencoder", cl_device, epochs=15)
    assert metrics["test_mse"] < 0.025, metrics
    assert metrics["test_mse"] < 0.4 * metrics["mean_image_mse"], metrics


def test_vae_elbo_improves(cl_device):
    metrics = train("vae", cl_device, epochs=10)
    history = metrics["history"]
    assert metrics["elbo_gain"] >= 2.0, metrics
    assert history["loss"][-1] < history["loss"][0] - 4.0, history["loss"]
    assert np.isfinite(metrics["test_elbo"]) and metrics["test_elbo"] < 0


def test_linreg_approaches_least_squares(cl_device):
    metrics = train("linreg", cl_device, epochs=20)
    assert metrics["test_mse"] < 1.5 * metrics["least_squares_mse"], metrics
    assert metrics["test_mse"] < 0.3 * metrics["target_variance"], metrics


def test_same_seed_same_losses(cl_device):
    first = train("mlp_adam", cl_device, epochs=2, seed=3)["history"]
    second = train("mlp_adam", cl_device, epochs=2, seed=3)["history"]
    other = train("mlp_adam", cl_device, epochs=2, seed=4)["history"]
    assert first == second
    assert first["loss"] != other["loss"]


def test_dropout_model_is_reproducible(cl_device):
    # seed 0, as test_mlp_reaches_95_percent: the same dropout streams, so no recompiling
    first = train("mlp", cl_device, epochs=1, seed=0, limit=320)["history"]
    second = train("mlp", cl_device, epochs=1, seed=0, limit=320)["history"]
    assert first == second


@pytest.mark.parametrize("name, flat", [("mlp", True), ("mlp_adam", True), ("lenet", False),
                                        ("lstm", False), ("autoencoder", True),
                                        ("vae", True), ("linreg", True), ("vit", False)])
def test_build_returns_compiled_model(name, flat):
    module = importlib.import_module(f"graphc.models.{name}")
    shape = (64,) if flat else (1, 8, 8)
    model = module.build(shape, 10, 0)
    assert isinstance(model, nn.Model) and model.built and model.optimizer is not None
    assert model.count_params() > 0
    again = module.build(shape, 10, 0)
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(a.get_value(), b.get_value())


def test_lenet_is_lenet5_on_28x28():
    from graphc.models import lenet
    model = lenet.build((1, 28, 28), 10, 0)
    convs = [layer for layer in model.layers if isinstance(layer, nn.Conv2D)]
    dense = [layer.units for layer in model.layers if isinstance(layer, nn.Dense)]
    assert [c.filters for c in convs] == [6, 16] and dense == [120, 84, 10]
    with pytest.raises(ValueError, match="needs images"):
        lenet.build((64,), 10, 0)


def test_cli_train_writes_plots(cl_device, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code = cli_main(["train", "mlp_adam", "--epochs", "1", "--plots", str(tmp_path),
                     "--device", str(cl_device.index), "--quiet", "--limit", "320"])
    assert code == 0
    assert (tmp_path / "mlp_adam_curves.png").stat().st_size > 0
    assert "mlp_adam: test_accuracy" in capsys.readouterr().out


def test_plots_skipped_without_matplotlib(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert common.save_curves({"loss": [1.0, 0.5]}, tmp_path / "c.png", "t") is None
    assert "matplotlib is not installed: skipping plots" in capsys.readouterr().out
    assert not (tmp_path / "c.png").exists()


def test_options_resolve_model_defaults():
    from graphc.models import lenet
    parser = common.add_training_args(argparse.ArgumentParser())
    args = common.resolve_args(parser.parse_args(["--epochs", "3"]), lenet.DEFAULTS)
    assert args.epochs == 3 and args.batch_size == lenet.DEFAULTS["batch_size"]
    assert args.lr == lenet.DEFAULTS["lr"] and args.dataset == "digits"
    assert args.plots == "plots"
    assert common.resolve_args(parser.parse_args(["--plots", "none"]), {}).plots is None


def test_lenet_trains_on_shifted_batches(cl_device):
    metrics = train("lenet", cl_device, epochs=2, limit=640, augment=1)
    assert len(metrics["history"]["loss"]) == 2
    assert metrics["history"]["loss"][1] < metrics["history"]["loss"][0]


@pytest.mark.parametrize("name", ["mlp", "lstm", "vae"])
def test_device_training_matches_interpreter(cl_device, name):
    # dropout (mlp) and the VAE's noise come from the same Philox streams on both sides
    module = importlib.import_module(f"graphc.models.{name}")
    x, y = gc.data.load_digits(flat=name != "lstm")
    x, y = x[:96], (x[:96] if name == "vae" else y[:96])
    losses = []
    for device in (cl_device, "interpret"):
        model = module.build(x.shape[1:], 10, 0, device=device)
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_vit_is_a_transformer_of_the_layer_api():
    from graphc.models import vit
    model = vit.build((1, 28, 28), 10, 0)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("MultiHeadAttention") == 3 and kinds.count("LayerNormalization") == 7
    assert model.get_layer("positions").embeddings.shape == (49, 64)       # 4x4 patches
    assert model.get_layer("block0_mlp1").activation is nn.activations.gelu
    with pytest.raises(ValueError, match="does not divide"):
        vit.vit((1, 30, 30), patch=4)


@pytest.mark.slow
def test_vit_device_training_matches_interpreter(cl_device):
    """A small ViT (one block), AdamW, two steps: the same losses on both."""
    from graphc.models import vit
    x, y = gc.data.load_digits()
    losses = []
    for device in (cl_device, "interpret"):
        gc.random.set_seed(0)
        model = vit.vit(x.shape[1:], dim=16, depth=1, heads=2, mlp=32)
        model.compile(gc.optim.AdamW(1e-3), nn.losses.SparseCategoricalCrossentropy(
            from_logits=True), device=device)
        history = model.fit(x[:64], y[:64], batch_size=32, epochs=2, verbose=0, seed=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


@pytest.mark.slow
def test_vit_learns_digits(cl_device):
    metrics = train("vit", cl_device, dataset="digits", epochs=12, batch_size=32)
    assert metrics["test_accuracy"] >= 0.9, metrics


def test_cli_train_reports_missing_data(tmp_path, capsys):
    code = cli_main(["train", "mlp", "--dataset", "mnist", "--data-dir", str(tmp_path)])
    assert code == 2
    error = capsys.readouterr().err
    assert "graphc train: error: digits-mnist IDX files" in error and str(tmp_path) in error
