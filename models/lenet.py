"""LeNet: Conv2D-MaxPool-Conv2D-MaxPool-Dense-Dense-Dense on NCHW images, trained by Adam.

For MNIST-sized images (28x28) it is LeNet-5 (LeCun et al., 1998) with ReLU and max
pooling: 6 and 16 filters of 5x5, then 120 and 84 units. Images smaller than 20 pixels
a side (the 8x8 digits) get 3x3 'same' convolutions of 16 and 32 filters and 64 units,
since two 5x5 valid convolutions would not fit.

    graphc train lenet --dataset fashion-mnist --epochs 2
"""
from __future__ import annotations

import argparse

from graphc import nn, optim
from graphc.models import common

DEFAULTS = {"epochs": 12, "batch_size": 32, "lr": 4e-3}


def feature_layers(input_shape) -> list[nn.Layer]:
    """The convolution/pooling stack for images of `input_shape` (C, H, W)."""
    if min(input_shape[-2:]) >= 20:
        return [nn.Conv2D(6, 5, padding="same", activation="relu"), nn.MaxPool2D(2),
                nn.Conv2D(16, 5, activation="relu"), nn.MaxPool2D(2)]
    return [nn.Conv2D(16, 3, padding="same", activation="relu"), nn.MaxPool2D(2),
            nn.Conv2D(32, 3, padding="same", activation="relu"), nn.MaxPool2D(2)]


def classifier_layers(input_shape, num_classes: int) -> list[nn.Layer]:
    """Flatten and the dense head."""
    hidden = [120, 84] if min(input_shape[-2:]) >= 20 else [64]
    return ([nn.Flatten()] + [nn.Dense(units, activation="relu") for units in hidden]
            + [nn.Dense(num_classes)])


def build(input_shape, num_classes: int = 10, seed: int = 0, *, lr: float | None = None,
          device=None) -> nn.Model:
    """LeNet for NCHW images of per-example `input_shape`; compiled with Adam."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"lenet needs images (channels, height, width), got {input_shape}")
    common.set_seed(seed)
    model = nn.Sequential([nn.Input(input_shape)] + feature_layers(input_shape)
                          + classifier_layers(input_shape, num_classes), name="lenet")
    model.compile(optim.Adam(lr or DEFAULTS["lr"]),
                  nn.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"],
                  device=device)
    return model


def train(args: argparse.Namespace) -> dict:
    """Fit on --dataset, report test accuracy, save training curves."""
    return common.train_classifier("lenet", build, args)


main = common.make_main(__doc__, DEFAULTS, train)

if __name__ == "__main__":
    raise SystemExit(main())
