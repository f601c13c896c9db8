"""A multilayer perceptron, 512-512-10 with dropout, trained by RMSprop (Keras's mnist_mlp).

    graphc train mlp --epochs 10
"""
from __future__ import annotations

import argparse

from graphc import nn, optim
from graphc.models import common

DEFAULTS = {"epochs": 10, "batch_size": 32, "lr": 1e-3}


def build(input_shape, num_classes: int = 10, seed: int = 0, *, lr: float | None = None,
          device=None, hidden: int = 512, dropout: float = 0.2) -> nn.Model:
    """Flatten, two ReLU layers of `hidden` units with dropout, logits; compiled."""
    common.set_seed(seed)
    model = nn.Sequential([
        nn.Input(tuple(input_shape)),
        nn.Flatten(),
        nn.Dense(hidden, activation="relu"),
        nn.Dropout(dropout),
        nn.Dense(hidden, activation="relu"),
        nn.Dropout(dropout),
        nn.Dense(num_classes),
    ], name="mlp")
    model.compile(optim.RMSprop(lr or DEFAULTS["lr"]),
                  nn.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"],
                  device=device)
    return model


def train(args: argparse.Namespace) -> dict:
    """Fit on --dataset, report test accuracy, save training curves."""
    return common.train_classifier("mlp", build, args, flat=True)


main = common.make_main(__doc__, DEFAULTS, train)

if __name__ == "__main__":
    raise SystemExit(main())
