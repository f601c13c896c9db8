"""A small Vision Transformer (Dosovitskiy et al., 2021) from gc.nn's Keras layers.

Images (channels, height, width) are cut into patch x patch squares, each projected to
`dim` features by a Conv2D with stride = kernel = patch (a linear map of each patch), plus
learned position embeddings; then `depth` pre-norm transformer blocks

    x = x + MultiHeadAttention(LayerNormalization(x), LayerNormalization(x))
    x = x + Dense(dim)(Dense(mlp, activation="gelu")(LayerNormalization(x)))

and a head: LayerNormalization, the mean over the patches (GlobalAveragePooling1D), and a
Dense layer of logits. Trained by AdamW with softmax cross-entropy.

    graphc train vit --dataset fashion-mnist --epochs 5
"""
from __future__ import annotations

import argparse
import functools

from graphc import nn, optim
from graphc.models import common

DEFAULTS = {"dataset": "fashion-mnist", "epochs": 5, "batch_size": 128, "lr": 3e-3}
SETTINGS = {"patch": 4, "dim": 64, "depth": 3, "heads": 4, "mlp": 128}
SMALL_IMAGE_PATCH = 2           # the 8x8 digits: 2x2 patches (16 of them)
WARMUP = 0.1                    # of the training steps, with the learning-rate schedule


def patch_embedding(x, patch: int, dim: int):
    """(batch, C, H, W) -> (batch, patches, dim) with learned positions added."""
    grid = nn.Conv2D(dim, patch, strides=patch, name="patch_projection")(x)
    _, _, rows, cols = grid.shape
    tokens = nn.Permute((2, 1))(nn.Reshape((dim, rows * cols))(grid))
    positions = nn.PositionEmbedding(rows * cols, name="positions")(tokens)
    return nn.Add()([tokens, positions])


def transformer_block(x, heads: int, dim: int, mlp: int, index: int):
    """A pre-norm block: attention then a GELU MLP, each added to its input."""
    h = nn.LayerNormalization(epsilon=1e-6, name=f"block{index}_norm1")(x)
    h = nn.MultiHeadAttention(heads, dim // heads, name=f"block{index}_attention")(h, h)
    x = nn.Add()([x, h])
    h = nn.LayerNormalization(epsilon=1e-6, name=f"block{index}_norm2")(x)
    h = nn.Dense(mlp, activation="gelu", name=f"block{index}_mlp1")(h)
    h = nn.Dense(dim, name=f"block{index}_mlp2")(h)
    return nn.Add()([x, h])


def vit(input_shape, num_classes: int = 10, patch: int | None = None, dim: int | None = None,
        depth: int | None = None, heads: int | None = None, mlp: int | None = None,
        name: str = "vit") -> nn.Model:
    """The uncompiled ViT for per-example `input_shape` (C, H, W)."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"vit needs images (channels, height, width), got {input_shape}")
    if patch is None:
        patch = SETTINGS["patch"] if min(input_shape[1:]) >= 16 else SMALL_IMAGE_PATCH
    dim, depth = dim or SETTINGS["dim"], depth or SETTINGS["depth"]
    heads, mlp = heads or SETTINGS["heads"], mlp or SETTINGS["mlp"]
    if input_shape[1] % patch or input_shape[2] % patch:
        raise ValueError(f"vit: patch {patch} does not divide the image size "
                         f"{input_shape[1:]}")
    inputs = nn.Input(input_shape)
    x = patch_embedding(inputs, patch, dim)
    for index in range(depth):
        x = transformer_block(x, heads, dim, mlp, index)
    x = nn.LayerNormalization(epsilon=1e-6, name="head_norm")(x)
    x = nn.GlobalAveragePooling1D(name="mean_of_patches")(x)
    return nn.Model(inputs, nn.Dense(num_classes, name="logits")(x), name=name)


def learning_rate(peak: float, steps: int | None):
    """`peak`, or with the training's step count a linear warmup to it over WARMUP of the
    steps and a cosine decay to zero over the rest (what small transformers train best with)."""
    if not steps:
        return peak
    warmup = max(1, int(WARMUP * steps))
    return optim.schedules.CosineDecay(0.0, steps - warmup, warmup_target=peak,
                                       warmup_steps=warmup)


def build(input_shape, num_classes: int = 10, seed: int = 0, *, lr: float | None = None,
          device=None, steps: int | None = None, **settings) -> nn.Model:
    """The ViT, compiled with AdamW (the schedule of `learning_rate` when the number of
    training steps is given) and sparse softmax cross-entropy from logits."""
    common.set_seed(seed)
    model = vit(input_shape, num_classes, **settings)
    model.compile(optim.AdamW(learning_rate(lr or DEFAULTS["lr"], steps), weight_decay=1e-4),
                  nn.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"],
                  device=device)
    return model


def train(args: argparse.Namespace) -> dict:
    """Fit on --dataset (Fashion-MNIST by default), report test accuracy, save curves."""
    examples = len(common.load_split(args).x_train)
    steps = args.epochs * -(-examples // args.batch_size)
    return common.train_classifier("vit", functools.partial(build, steps=steps), args)


main = common.make_main(__doc__, DEFAULTS, train)

if __name__ == "__main__":
    raise SystemExit(main())
