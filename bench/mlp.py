"""The MLP 784-512-512-10 training step (batch 128, ReLU, softmax cross-entropy, SGD).

graphc (gc.nn.Dense layers, one compiled SGD step), the same step by hand in numpy, and
torch eager when it is importable. bench/common.py has the harness:

    python bench/mlp.py [--repeats 30]     samples/s of each, kernels per step
    python bench/mlp.py --check            numpy gradients vs gc.interpret and the device
    python bench/mlp.py --first-step       JSON seconds from graph building to step 1's end
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "mlp"
TITLE = "MLP 784-512-512-10, batch 128"
SIZES = (784, 512, 512, 10)
BATCH = 128


def init(seed: int = 0, batch: int = BATCH) -> tuple[common.Params, np.ndarray, np.ndarray]:
    """Weights [W1, b1, W2, b2, W3, b3] (W: (in, out)) and one batch (x, y)."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        params.append((rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32))
        params.append((0.1 * rng.standard_normal(fan_out)).astype(np.float32))
    x = rng.standard_normal((batch, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], batch).astype(np.int32)
    return params, x, y


def layers() -> list:
    """The gc.nn layers, unbuilt (of the current SIZES: bench/scaling.py varies them)."""
    from graphc import nn
    return [nn.Dense(n, activation="relu") for n in SIZES[1:-1]] + [nn.Dense(SIZES[-1])]


def build(params: common.Params, batch: int):
    """(x, y, loss, variables): Dense-relu-Dense-relu-Dense on placeholders, `params` loaded."""
    return common.layers_graph((batch, SIZES[0]), layers(), params)


def graphc_step(params: common.Params, batch: int = BATCH):
    """The compiled SGD step (bench/warm_start.py calls this)."""
    return common.graphc_step(sys.modules[__name__], params, batch)


def numpy_grads(params: common.Params, x: np.ndarray,
                y: np.ndarray) -> tuple[float, common.Params]:
    """Loss and gradients of every weight, by hand."""
    acts, h = [x], x
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i + 2 < len(params):
            h = np.maximum(h, 0)
        acts.append(h)
    loss, d = common.softmax_xent(h, y)
    grads: common.Params = [None] * len(params)
    for i in range(len(params) - 2, -1, -2):
        a = acts[i // 2]
        grads[i], grads[i + 1] = a.T @ d, d.sum(0)
        if i:
            d = (d @ params[i].T) * (a > 0)
    return loss, grads


def torch_step_fn(params: common.Params):
    """step(x, y) in torch eager on copies of `params`, or None without torch."""
    torch = common.import_torch()
    if torch is None:
        return None
    weights = [torch.tensor(p, requires_grad=True) for p in params]

    def forward(x):
        h = x
        for i in range(0, len(weights), 2):
            h = torch.addmm(weights[i + 1], h, weights[i])
            if i + 2 < len(weights):
                h = torch.relu(h)
        return h
    return common.torch_sgd_step(forward, weights,
                                 lambda: [w.detach().numpy().copy() for w in weights])


if __name__ == "__main__":
    raise SystemExit(common.main(sys.modules[__name__]))
