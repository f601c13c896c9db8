"""The LSTM training step of bench/lstm.py written from primitives, unrolled by hand.

The same model, weights, batch and references as bench/lstm.py (numpy by hand, torch eager's
torch.nn.LSTM), but graphc's graph is what a Theano user writes instead of gc.nn.LSTM: every
step projects its own input slice (`x[:, t] @ W + b`), adds `h @ U`, and slices the gates out
of the sum. The compiler's general rewrites must find what the layer builds by construction:

    python bench/lstm_primitives.py [--repeats 30]     samples/s of each, kernels per step
    python bench/lstm_primitives.py --check            gradients vs numpy, interpret, device
    python bench/lstm_primitives.py --first-step       JSON seconds to step 1's end
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import lstm  # noqa: E402

NAME = "lstm_primitives"
TITLE = "LSTM from primitives, seq 28, in 28, hidden 128, +fc, batch 64"
BATCH = lstm.BATCH


def init(seed: int = 0, batch: int = BATCH) -> tuple[common.Params, np.ndarray, np.ndarray]:
    """bench/lstm.py's weights and batch."""
    return lstm.init(seed, batch)


def build(params: common.Params, batch: int):
    """(x, y, loss, variables): the unrolled LSTM and the Dense layer, op by op."""
    import graphc as gc
    steps, features, units = lstm.SEQ, lstm.FEATURES, lstm.HIDDEN
    x = gc.placeholder((batch, steps, features), gc.float32, name="x")
    y = gc.placeholder((batch,), gc.int32, name="y")
    names = ("W", "U", "b", "W_out", "b_out")
    variables = [gc.variable(p, name=n) for p, n in zip(params, names)]
    w, u, b, w_out, b_out = variables
    h = c = None
    for t in range(steps):
        z = x[:, t, :] @ w + b
        if h is not None:
            z = z + h @ u
        i = gc.sigmoid(z[:, :units])
        f = gc.sigmoid(z[:, units:2 * units])
        g = gc.tanh(z[:, 2 * units:3 * units])
        o = gc.sigmoid(z[:, 3 * units:])
        c = i * g if c is None else f * c + i * g
        h = o * gc.tanh(c)
    return x, y, common.graphc_loss(h @ w_out + b_out, y), variables


def graphc_step(params: common.Params, batch: int = BATCH):
    """The compiled SGD step."""
    return common.graphc_step(sys.modules[__name__], params, batch)


numpy_grads = lstm.numpy_grads
torch_step_fn = lstm.torch_step_fn


if __name__ == "__main__":
    raise SystemExit(common.main(sys.modules[__name__]))
