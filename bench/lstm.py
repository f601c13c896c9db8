"""The LSTM training step: sequence 28, input 28, hidden 128, last state -> Dense 10, batch 64.

Keras's LSTM (gates i, f, c, o; zero initial state) and softmax cross-entropy, SGD. graphc
from gc.nn.LSTM + gc.nn.Dense, numpy forward and backpropagation through time by hand, and
torch eager (torch.nn.LSTM, gates i, f, g, o: the same order) when importable:

    python bench/lstm.py [--repeats 30]     samples/s of each, kernels per step
    python bench/lstm.py --check            numpy gradients vs gc.interpret and the device
    python bench/lstm.py --first-step       JSON seconds from graph building to step 1's end

torch's LSTM has two biases (b_ih + b_hh); it starts with b_ih = our bias and b_hh = 0, so
its first step's b_ih gradient is ours (SGD then moves both, a slightly different model).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "lstm"
TITLE = "LSTM seq 28, in 28, hidden 128, +fc, batch 64"
BATCH = 64
SEQ, FEATURES, HIDDEN, CLASSES = 28, 28, 128, 10


def init(seed: int = 0, batch: int = BATCH) -> tuple[common.Params, np.ndarray, np.ndarray]:
    """[kernel (28, 512), recurrent_kernel (128, 512), bias (512), W (128, 10), b] and (x, y)."""
    rng = np.random.default_rng(seed)
    gates = 4 * HIDDEN
    bias = 0.1 * rng.standard_normal(gates)
    bias[HIDDEN:2 * HIDDEN] += 1.0                       # Keras's unit_forget_bias
    params = [rng.standard_normal((FEATURES, gates)) / np.sqrt(FEATURES),
              rng.standard_normal((HIDDEN, gates)) / np.sqrt(HIDDEN), bias,
              rng.standard_normal((HIDDEN, CLASSES)) / np.sqrt(HIDDEN),
              0.1 * rng.standard_normal(CLASSES)]
    x = rng.standard_normal((batch, SEQ, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, batch).astype(np.int32)
    return [p.astype(np.float32) for p in params], x, y


def layers() -> list:
    """The gc.nn layers, unbuilt."""
    from graphc import nn
    return [nn.LSTM(HIDDEN), nn.Dense(CLASSES)]


def build(params: common.Params, batch: int):
    """(x, y, loss, variables): LSTM(128) -> Dense(10) on placeholders, `params` loaded."""
    return common.layers_graph((batch, SEQ, FEATURES), layers(), params)


def graphc_step(params: common.Params, batch: int = BATCH):
    """The compiled SGD step."""
    return common.graphc_step(sys.modules[__name__], params, batch)


# ---- numpy by hand ----

def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-z))


def lstm_forward(params: common.Params, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every step's gates (N, T, 4H) after activation, cells and states (N, T+1, H)."""
    kernel, recurrent, bias = params[:3]
    n, steps, _ = x.shape
    projected = (x.reshape(n * steps, -1) @ kernel + bias).reshape(n, steps, -1)
    gates = np.empty_like(projected)
    h = np.zeros((n, steps + 1, HIDDEN), x.dtype)
    c = np.zeros_like(h)
    for t in range(steps):
        z = projected[:, t] + h[:, t] @ recurrent if t else projected[:, t]
        g = gates[:, t]
        g[:] = sigmoid(z)
        g[:, 2 * HIDDEN:3 * HIDDEN] = np.tanh(z[:, 2 * HIDDEN:3 * HIDDEN])
        i, f, cand, o = np.split(g, 4, axis=1)
        c[:, t + 1] = f * c[:, t] + i * cand
        h[:, t + 1] = o * np.tanh(c[:, t + 1])
    return {"gates": gates, "h": h, "c": c}


def lstm_backward(params: common.Params, x: np.ndarray, fwd: dict[str, np.ndarray],
                  dh_last: np.ndarray) -> common.Params:
    """Backpropagation through time: gradients of kernel, recurrent_kernel and bias."""
    recurrent = params[1]
    gates, h, c = fwd["gates"], fwd["h"], fwd["c"]
    n, steps, _ = x.shape
    dz = np.empty_like(gates)
    dh, dc = dh_last, np.zeros_like(dh_last)
    for t in reversed(range(steps)):
        i, f, cand, o = np.split(gates[:, t], 4, axis=1)
        tanh_c = np.tanh(c[:, t + 1])
        dc = dc + dh * o * (1 - tanh_c ** 2)
        dz[:, t] = np.concatenate([dc * cand * i * (1 - i), dc * c[:, t] * f * (1 - f),
                                   dc * i * (1 - cand ** 2), dh * tanh_c * o * (1 - o)], axis=1)
        dc = dc * f
        dh = dz[:, t] @ recurrent.T
    flat_dz = dz.reshape(n * steps, -1)
    d_kernel = x.reshape(n * steps, -1).T @ flat_dz
    d_recurrent = h[:, :-1].reshape(n * steps, -1).T @ flat_dz
    return [d_kernel, d_recurrent, flat_dz.sum(0)]


def numpy_grads(params: common.Params, x: np.ndarray,
                y: np.ndarray) -> tuple[float, common.Params]:
    """Loss and gradients of every weight, by hand."""
    fwd = lstm_forward(params, x)
    last = fwd["h"][:, -1]
    loss, d = common.softmax_xent(last @ params[3] + params[4], y)
    lstm_grads = lstm_backward(params, x, fwd, d @ params[3].T)
    return loss, lstm_grads + [last.T @ d, d.sum(0)]


# ---- torch eager ----

def torch_step_fn(params: common.Params):
    """step(x, y) in torch eager (torch.nn.LSTM, addmm) on copies of `params`."""
    torch = common.import_torch()
    if torch is None:
        return None
    lstm = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(params[0].T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(params[1].T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(params[2]))
        lstm.bias_hh_l0.zero_()
    fc = [torch.tensor(p, requires_grad=True) for p in params[3:]]

    def forward(x):
        _, (h, _) = lstm(x)
        return torch.addmm(fc[1], h[0], fc[0])

    def to_params() -> common.Params:
        own = [lstm.weight_ih_l0.T, lstm.weight_hh_l0.T, lstm.bias_ih_l0] + fc
        return [t.detach().numpy().copy() for t in own]
    return common.torch_sgd_step(forward, list(lstm.parameters()) + fc, to_params)


if __name__ == "__main__":
    raise SystemExit(common.main(sys.modules[__name__]))
