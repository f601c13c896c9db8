"""The Vision Transformer training step (graphc.models.vit: 4x4 patches of 1x28x28 images,
64 features, 3 pre-norm blocks of 4 heads, GELU MLP 128, batch 128, SGD).

graphc builds it from gc.nn's layers (Conv2D patches, PositionEmbedding, LayerNormalization,
MultiHeadAttention, Dense with exact GELU, GlobalAveragePooling1D); torch eager runs the same
architecture from the same weights with torch.nn.functional (F.conv2d, F.layer_norm, batched
matmuls, F.softmax, F.gelu). There is no numpy implementation; the reference of `--check` is
torch's autograd in float64.

    python bench/vit.py [--repeats 30]     samples/s of graphc and torch, kernels per step
    python bench/vit.py --check            float64 torch gradients vs gc.interpret and the device
    python bench/vit.py --first-step       JSON seconds from graph building to step 1's end
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "vit"
TITLE = "ViT 4x4 patches, 64 features, 3 blocks, batch 128, 1x28x28"
BATCH = 128
IMAGE = (1, 28, 28)
SETTINGS = {"patch": 4, "dim": 64, "depth": 3, "heads": 4, "mlp": 128}
EPSILON = 1e-6                       # the layer norms' (models/vit.py)


def model(settings: dict = SETTINGS):
    """The uncompiled gc.nn ViT."""
    from graphc.models import vit
    return vit.vit(IMAGE, 10, **settings)


def init(seed: int = 0, batch: int = BATCH) -> tuple[common.Params, np.ndarray, np.ndarray]:
    """The model's initial weights (its own initializers, seeded; positions and biases made
    random so that none is a zero that hides a wrong gradient) and one batch (x, y)."""
    import graphc as gc
    gc.random.set_seed(seed)
    rng = np.random.default_rng(seed)
    params = []
    for variable in model().weights:
        value = variable.get_value()
        if not value.any() or variable.name.endswith(("gamma", "embeddings")):
            value = value + 0.1 * rng.standard_normal(value.shape)
        params.append(value.astype(np.float32))
    x = rng.random((batch,) + IMAGE).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    return params, x, y


def build(params: common.Params, batch: int):
    """(x, y, loss, variables): the ViT graph on placeholders, `params` loaded."""
    import graphc as gc
    vit = model()
    x = gc.placeholder((batch,) + IMAGE, gc.float32, name="x")
    y = gc.placeholder((batch,), gc.int32, name="y")
    logits = vit.forward([x], training=True)[0]
    for variable, value in zip(vit.weights, params):
        variable.set_value(value)
    return x, y, common.graphc_loss(logits, y), vit.weights


def graphc_step(params: common.Params, batch: int = BATCH):
    """The compiled SGD step."""
    return common.graphc_step(sys.modules[__name__], params, batch)


# ---- torch ----

def torch_forward(torch, w: list, x, settings: dict = SETTINGS):
    """The ViT's logits in torch, weights `w` in the order of the gc.nn model's weights."""
    functional = torch.nn.functional
    dim, heads, patch = settings["dim"], settings["heads"], settings["patch"]
    head_dim = dim // heads
    h = functional.conv2d(x, w[0], w[1], stride=patch).flatten(2).transpose(1, 2) + w[2]
    batch, steps = h.shape[:2]
    at = 3
    for _ in range(settings["depth"]):
        gamma1, beta1, wq, bq, wk, bk, wv, bv, wo, bo, gamma2, beta2, w1, b1, w2, b2 = \
            w[at:at + 16]
        at += 16
        n = functional.layer_norm(h, (dim,), gamma1, beta1, EPSILON)

        def split(kernel, bias):
            flat = n @ kernel.reshape(dim, dim) + bias.reshape(dim)
            return flat.reshape(batch, steps, heads, head_dim).transpose(1, 2)
        q, k, v = split(wq, bq) / math.sqrt(head_dim), split(wk, bk), split(wv, bv)
        scores = functional.softmax(q @ k.transpose(-1, -2), dim=-1)
        mixed = (scores @ v).transpose(1, 2).reshape(batch, steps, dim)
        h = h + mixed @ wo.reshape(dim, dim) + bo
        n = functional.layer_norm(h, (dim,), gamma2, beta2, EPSILON)
        h = h + functional.gelu(n @ w1 + b1) @ w2 + b2
    h = functional.layer_norm(h, (dim,), w[at], w[at + 1], EPSILON).mean(1)
    return h @ w[at + 2] + w[at + 3]


def torch_step_fn(params: common.Params):
    """step(x, y) in torch eager on copies of `params`."""
    torch = common.import_torch()
    if torch is None:
        return None
    w = [torch.tensor(p, requires_grad=True) for p in params]
    return common.torch_sgd_step(lambda x: torch_forward(torch, w, x), w,
                                 lambda: [t.detach().numpy().copy() for t in w])


def reference_grads(params: common.Params, x: np.ndarray,
                    y: np.ndarray) -> tuple[float, common.Params]:
    """Loss and gradients by torch's autograd in float64 (the `--check` reference)."""
    torch = common.import_torch()
    w = [torch.tensor(np.asarray(p, np.float64), requires_grad=True) for p in params]
    logits = torch_forward(torch, w, torch.tensor(np.asarray(x, np.float64)))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).long())
    loss.backward()
    return float(loss), [t.grad.numpy() for t in w]


if __name__ == "__main__":
    raise SystemExit(common.main(sys.modules[__name__]))
