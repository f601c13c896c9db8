"""Stacked LSTMs reading an image row by row: each row is one timestep of a sequence.

    graphc train lstm --epochs 10
"""
from __future__ import annotations

import argparse

import numpy as np

from graphc import nn, optim
from graphc.models import common

DEFAULTS = {"epochs": 10, "batch_size": 32, "lr": 5e-3}


def build(input_shape, num_classes: int = 10, seed: int = 0, *, lr: float | None = None,
          device=None, units: int = 64, layers: int = 2) -> nn.Model:
    """Reshape (C, H, W) to H timesteps of C*W features, `layers` LSTMs, logits; Adam."""
    input_shape = tuple(input_shape)
    rows = input_shape[-2] if len(input_shape) >= 2 else 1
    features = int(np.prod(input_shape)) // rows
    common.set_seed(seed)
    recurrent = [nn.LSTM(units, return_sequences=i < layers - 1) for i in range(layers)]
    model = nn.Sequential([nn.Input(input_shape), nn.Reshape((rows, features))] + recurrent
                          + [nn.Dense(num_classes)], name="lstm")
    model.compile(optim.Adam(lr or DEFAULTS["lr"]),
                  nn.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"],
                  device=device)
    return model


def train(args: argparse.Namespace) -> dict:
    """Fit on --dataset, report test accuracy, save training curves."""
    return common.train_classifier("lstm", build, args)


main = common.make_main(__doc__, DEFAULTS, train)

if __name__ == "__main__":
    raise SystemExit(main())
