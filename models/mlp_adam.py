"""A small multilayer perceptron, 128-128-10, trained by Adam.

    graphc train mlp_adam --epochs 10
"""
from __future__ import annotations

import argparse

from graphc import nn, optim
from graphc.models import common

DEFAULTS = {"epochs": 10, "batch_size": 32, "lr": 1e-3}


def build(input_shape, num_classes: int = 10, seed: int = 0, *, lr: float | None = None,
          device=None, hidden: int = 128) -> nn.Model:
    """Flatten, two ReLU layers of `hidden` units, logits; compiled with Adam."""
    common.set_seed(seed)
    model = nn.Sequential([
        nn.Input(tuple(input_shape)),
        nn.Flatten(),
        nn.Dense(hidden, activation="relu"),
        nn.Dense(hidden, activation="relu"),
        nn.Dense(num_classes),
    ], name="mlp_adam")
    model.compile(optim.Adam(lr or DEFAULTS["lr"]),
                  nn.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"],
                  device=device)
    return model


def train(args: argparse.Namespace) -> dict:
    """Fit on --dataset, report test accuracy, save training curves."""
    return common.train_classifier("mlp_adam", build, args, flat=True)


main = common.make_main(__doc__, DEFAULTS, train)

if __name__ == "__main__":
    raise SystemExit(main())
