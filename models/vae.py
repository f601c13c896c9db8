"""A variational autoencoder (Kingma & Welling) with dense encoder and decoder.

The encoder gives the mean and log-variance of q(z|x); a Sampling layer draws
z = mean + exp(log_var / 2) * eps with eps from gc.random.normal (fresh at every step: the
reparameterization trick); the decoder gives Bernoulli logits of p(x|z). The loss is the
negative ELBO per example: the summed binary cross-entropy of the pixels plus
KL(q(z|x) || N(0, I)). The model's one output is [logits, mean, log_var] side by side, so
a plain compiled loss function sees all three.

    graphc train vae --epochs 30
"""
from __future__ import annotations

import argparse

import numpy as np

import graphc as gc
from graphc import nn, optim
from graphc.models import common
from graphc.models.autoencoder import image_side

DEFAULTS = {"epochs": 30, "batch_size": 32, "lr": 2e-3}


@nn.register_layer
class Sampling(nn.Layer):
    """z = mean + exp(log_var / 2) * eps, eps ~ N(0, I): inputs [mean, log_var]."""

    def call(self, xs, training: bool = False) -> gc.Tensor:
        mean, log_var = xs
        eps = gc.random.normal(mean.shape, dtype=mean.dtype)
        return mean + gc.exp(0.5 * log_var) * eps


def sizes(features: int) -> tuple[int, int]:
    """(hidden units, latent size) for inputs of `features` values."""
    return (256, 16) if features > 256 else (128, 8)


def negative_elbo(features: int, latent: int):
    """The loss: per-example summed pixel cross-entropy + KL, from [logits, mean, log_var]."""
    def loss(y_true: gc.Tensor, y_pred: gc.Tensor) -> gc.Tensor:
        logits = y_pred[:, :features]
        mean = y_pred[:, features:features + latent]
        log_var = y_pred[:, features + latent:]
        reconstruction = features * gc.losses.binary_crossentropy(y_true, logits,
                                                                   from_logits=True)
        kl = -0.5 * gc.sum(1.0 + log_var - gc.square(mean) - gc.exp(log_var), axis=-1)
        return reconstruction + kl
    loss.__name__ = "negative_elbo"
    return loss


def build(input_shape, num_classes: int = 0, seed: int = 0, *, lr: float | None = None,
          device=None) -> nn.Model:
    """The VAE of flat inputs, compiled with Adam and the negative ELBO.

    `num_classes` is unused (kept for the common build signature).
    """
    input_shape = tuple(input_shape)
    features = int(np.prod(input_shape))
    hidden, latent = sizes(features)
    common.set_seed(seed)
    inputs = nn.Input(input_shape, name="image")
    h = nn.Dense(hidden, activation="relu", name="encoder_hidden")(nn.Flatten()(inputs))
    mean = nn.Dense(latent, name="z_mean")(h)
    log_var = nn.Dense(latent, name="z_log_var")(h)
    z = Sampling(name="sampling")([mean, log_var])
    h = nn.Dense(hidden, activation="relu", name="decoder_hidden")(z)
    logits = nn.Dense(features, name="decoder_logits")(h)
    outputs = nn.Concatenate(name="logits_mean_log_var")([logits, mean, log_var])
    model = nn.Model(inputs, outputs, name="vae")
    model.compile(optim.Adam(lr or DEFAULTS["lr"]), negative_elbo(features, latent),
                  device=device)
    return model


def decoder(model: nn.Model, device=None) -> nn.Model:
    """z -> pixel logits, sharing the trained VAE's decoder layers (and weights)."""
    hidden, logits = model.get_layer("decoder_hidden"), model.get_layer("decoder_logits")
    z = nn.Input(model.get_layer("z_mean").units, name="z")
    result = nn.Model(z, logits(hidden(z)), name="vae_decoder")
    result.compile("adam", "mse", device=device)
    return result


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in numpy."""
    return 1.0 / (1.0 + np.exp(-x))


def elbo_history(history: dict) -> dict:
    """Per-epoch ELBO (minus the loss) for the curves."""
    return {key.replace("loss", "elbo"): [-v for v in values] for key, values in history.items()}


def train(args: argparse.Namespace) -> dict:
    """Fit, report the test ELBO (nats per image) and its gain, plot samples and reconstructions."""
    split = common.load_split(args, flat=True)
    if args.verbose:
        print(f"vae on {args.dataset}: {common.describe_split(split)}")
    model = build(split.x_train.shape[1:], 0, args.seed, lr=args.lr, device=args.device)
    history, timings = common.fit(model, split.x_train, split.x_train, args,
                                  validation_data=(split.x_test, split.x_test))
    test_elbo = -float(model.evaluate(split.x_test, split.x_test, batch_size=args.batch_size))
    curves = elbo_history(history)
    metrics = {"test_elbo": test_elbo, "first_epoch_test_elbo": curves["val_elbo"][0],
               "elbo_gain": test_elbo - curves["val_elbo"][0], **timings}
    common.print_metrics("vae", metrics)
    common.save_curves(curves, common.plot_path(args, "vae_curves.png"),
                       f"vae on {args.dataset} (ELBO, nats per image)")
    save_pictures(model, split.x_test, args)
    return {**metrics, "history": history, "model": model}


def save_pictures(model: nn.Model, x_test: np.ndarray, args: argparse.Namespace) -> None:
    """Test images and their reconstructions; images decoded from z ~ N(0, I)."""
    if not args.plots:
        return
    features = x_test.shape[1]
    side = image_side(features)
    rebuilt = sigmoid(model.predict(x_test[:10], batch_size=10)[:, :features])
    common.save_image_grid([x_test[:10].reshape(-1, side, side), rebuilt.reshape(-1, side, side)],
                           common.plot_path(args, "vae_reconstructions.png"),
                           "vae: test images (top) and reconstructions", ["input", "rebuilt"])
    decode = decoder(model, args.device)
    latent = decode.inputs[0].example_shape[0]
    z = np.random.default_rng(args.seed).standard_normal((30, latent)).astype(np.float32)
    samples = sigmoid(decode.predict(z, batch_size=10)).reshape(3, 10, side, side)
    common.save_image_grid(list(samples), common.plot_path(args, "vae_samples.png"),
                           "vae: decoded samples z ~ N(0, I)")


main = common.make_main(__doc__, DEFAULTS, train)

if __name__ == "__main__":
    raise SystemExit(main())
