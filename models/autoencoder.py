"""A dense autoencoder: images squeezed through a small code and rebuilt; reports the MSE.

    graphc train autoencoder --epochs 30
"""
from __future__ import annotations

import argparse

import numpy as np

from graphc import nn, optim
from graphc.models import common

DEFAULTS = {"epochs": 30, "batch_size": 32, "lr": 3e-3}


def sizes(features: int) -> tuple[int, int]:
    """(hidden units, code size) for inputs of `features` values."""
    return (128, 32) if features > 256 else (48, 16)


def build(input_shape, num_classes: int = 0, seed: int = 0, *, lr: float | None = None,
          device=None) -> nn.Model:
    """Encoder Dense-Dense(code), decoder Dense-Dense(sigmoid) of flat inputs; MSE, Adam.

    `num_classes` is unused (kept for the common build signature).
    """
    input_shape = tuple(input_shape)
    features = int(np.prod(input_shape))
    hidden, code = sizes(features)
    common.set_seed(seed)
    model = nn.Sequential([
        nn.Input(input_shape), nn.Flatten(),
        nn.Dense(hidden, activation="relu"), nn.Dense(code, activation="relu", name="code"),
        nn.Dense(hidden, activation="relu"), nn.Dense(features, activation="sigmoid"),
    ], name="autoencoder")
    model.compile(optim.Adam(lr or DEFAULTS["lr"]), "mse", device=device)
    return model


def train(args: argparse.Namespace) -> dict:
    """Fit x -> x, report the test reconstruction MSE, plot curves and reconstructions."""
    split = common.load_split(args, flat=True)
    if args.verbose:
        print(f"autoencoder on {args.dataset}: {common.describe_split(split)}")
    model = build(split.x_train.shape[1:], 0, args.seed, lr=args.lr, device=args.device)
    history, timings = common.fit(model, split.x_train, split.x_train, args,
                                  validation_data=(split.x_test, split.x_test))
    rebuilt = model.predict(split.x_test, batch_size=args.batch_size)
    mean_image = split.x_train.mean(axis=0)
    metrics = {"test_mse": float(np.mean((rebuilt - split.x_test) ** 2)),
               "mean_image_mse": float(np.mean((mean_image - split.x_test) ** 2)),
               **timings}
    common.print_metrics("autoencoder", metrics)
    common.save_curves(history, common.plot_path(args, "autoencoder_curves.png"),
                       f"autoencoder on {args.dataset}")
    side = image_side(split.x_test.shape[1])
    common.save_image_grid([split.x_test[:10].reshape(-1, side, side),
                            rebuilt[:10].reshape(-1, side, side)],
                           common.plot_path(args, "autoencoder_reconstructions.png"),
                           "autoencoder: test images (top) and reconstructions",
                           ["input", "rebuilt"])
    return {**metrics, "history": history, "model": model}


def image_side(features: int) -> int:
    """The side of a square image of `features` pixels."""
    side = int(round(np.sqrt(features)))
    if side * side != features:
        raise ValueError(f"{features} pixels are not a square image")
    return side


main = common.make_main(__doc__, DEFAULTS, train)

if __name__ == "__main__":
    raise SystemExit(main())
