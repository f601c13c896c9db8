"""The LeNet-5 training step (batch 64, 1x28x28 NCHW, softmax cross-entropy, SGD).

Conv2D(6, 5)-relu-MaxPool2-Conv2D(16, 5)-relu-MaxPool2-Dense120-relu-Dense84-relu-Dense10,
'valid' convolutions (28 -> 24 -> 12 -> 8 -> 4, so 16*4*4 = 256 features). graphc from
gc.nn layers, numpy by hand (im2col with sliding_window_view), torch eager when importable:

    python bench/lenet.py [--repeats 30]     samples/s of each, kernels per step
    python bench/lenet.py --check            numpy gradients vs gc.interpret and the device
    python bench/lenet.py --first-step       JSON seconds from graph building to step 1's end
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "lenet"
TITLE = "LeNet-5, batch 64, 1x28x28"
BATCH = 64
IMAGE = (1, 28, 28)
CONVS = ((6, 5), (16, 5))        # (filters, kernel size)
DENSE = (256, 120, 84, 10)


def init(seed: int = 0, batch: int = BATCH) -> tuple[common.Params, np.ndarray, np.ndarray]:
    """[k1 (6,1,5,5), b1, k2 (16,6,5,5), b2, W3 (256,120), b3, W4, b4, W5, b5] and (x, y)."""
    rng = np.random.default_rng(seed)
    params, channels = [], IMAGE[0]
    for filters, size in CONVS:
        fan_in = channels * size * size
        params.append(rng.standard_normal((filters, channels, size, size)) / np.sqrt(fan_in))
        params.append(0.1 * rng.standard_normal(filters))
        channels = filters
    for fan_in, fan_out in zip(DENSE[:-1], DENSE[1:]):
        params.append(rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in))
        params.append(0.1 * rng.standard_normal(fan_out))
    x = rng.random((batch,) + IMAGE).astype(np.float32)
    y = rng.integers(0, DENSE[-1], batch).astype(np.int32)
    return [p.astype(np.float32) for p in params], x, y


def layers() -> list:
    """The gc.nn layers, unbuilt."""
    from graphc import nn
    return [nn.Conv2D(CONVS[0][0], CONVS[0][1], activation="relu"), nn.MaxPool2D(2),
            nn.Conv2D(CONVS[1][0], CONVS[1][1], activation="relu"), nn.MaxPool2D(2),
            nn.Flatten()] + [nn.Dense(n, activation="relu") for n in DENSE[1:-1]] \
        + [nn.Dense(DENSE[-1])]


def build(params: common.Params, batch: int):
    """(x, y, loss, variables): the LeNet-5 graph on placeholders, `params` loaded."""
    return common.layers_graph((batch,) + IMAGE, layers(), params)


def graphc_step(params: common.Params, batch: int = BATCH):
    """The compiled SGD step."""
    return common.graphc_step(sys.modules[__name__], params, batch)


# ---- numpy by hand ----

def im2col(x: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) -> (N*OH*OW, C*size*size) patches of a 'valid' stride-1 convolution."""
    n, c, h, w = x.shape
    windows = sliding_window_view(x, (size, size), axis=(2, 3))    # (N, C, OH, OW, k, k)
    oh, ow = h - size + 1, w - size + 1
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * size * size)


def conv_forward(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """'valid' convolution (N, C, H, W) * (O, C, k, k) + b -> (N, O, OH, OW), and the patches."""
    n, _, h, w = x.shape
    o, _, size, _ = k.shape
    cols = im2col(x, size)
    out = cols @ k.reshape(o, -1).T + b
    return out.reshape(n, h - size + 1, w - size + 1, o).transpose(0, 3, 1, 2), cols


def conv_backward(dout: np.ndarray, cols: np.ndarray, k: np.ndarray, x_shape: tuple,
                  need_dx: bool) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(dx or None, dk, db) of conv_forward from dout (N, O, OH, OW)."""
    o, c, size, _ = k.shape
    d = dout.transpose(0, 2, 3, 1).reshape(-1, o)
    dk, db = (d.T @ cols).reshape(k.shape), d.sum(0)
    if not need_dx:
        return None, dk, db
    n, _, oh, ow = dout.shape
    dcols = (d @ k.reshape(o, -1)).reshape(n, oh, ow, c, size, size)
    dx = np.zeros(x_shape, dout.dtype)
    for i in range(size):
        for j in range(size):
            dx[:, :, i:i + oh, j:j + ow] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dx, dk, db


def pool_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 stride-2 max pooling, and the argmax of each window (first maximum)."""
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(n, c, h // 2, w // 2, 4)
    arg = windows.argmax(-1)
    return np.take_along_axis(windows, arg[..., None], -1)[..., 0], arg


def pool_backward(dout: np.ndarray, arg: np.ndarray) -> np.ndarray:
    """The gradient of pool_forward: dout routed to each window's maximum."""
    n, c, oh, ow = dout.shape
    windows = np.zeros((n, c, oh, ow, 4), dout.dtype)
    np.put_along_axis(windows, arg[..., None], dout[..., None], -1)
    windows = windows.reshape(n, c, oh, ow, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return windows.reshape(n, c, 2 * oh, 2 * ow)


def numpy_grads(params: common.Params, x: np.ndarray,
                y: np.ndarray) -> tuple[float, common.Params]:
    """Loss and gradients of every weight, by hand."""
    k1, b1, k2, b2 = params[:4]
    a1, cols1 = conv_forward(x, k1, b1)
    r1 = np.maximum(a1, 0)
    p1, arg1 = pool_forward(r1)
    a2, cols2 = conv_forward(p1, k2, b2)
    r2 = np.maximum(a2, 0)
    p2, arg2 = pool_forward(r2)
    flat = p2.reshape(len(x), -1)
    dense_loss, dense_grads, dflat = dense_grads_of(params[4:], flat, y)
    dr2 = pool_backward(dflat.reshape(p2.shape), arg2) * (a2 > 0)
    dp1, dk2, db2 = conv_backward(dr2, cols2, k2, p1.shape, need_dx=True)
    dr1 = pool_backward(dp1, arg1) * (a1 > 0)
    _, dk1, db1 = conv_backward(dr1, cols1, k1, x.shape, need_dx=False)
    return dense_loss, [dk1, db1, dk2, db2] + dense_grads


def dense_grads_of(params: common.Params, h: np.ndarray,
                   y: np.ndarray) -> tuple[float, common.Params, np.ndarray]:
    """Loss, gradients of the dense head [W, b, ...] and the gradient by its input."""
    acts = [h]
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
        d = d @ params[i].T
        if i:
            d = d * (a > 0)
    return loss, grads, d


# ---- torch eager ----

def torch_step_fn(params: common.Params):
    """step(x, y) in torch eager (F.conv2d, max_pool2d, addmm) on copies of `params`."""
    torch = common.import_torch()
    if torch is None:
        return None
    functional = torch.nn.functional
    w = [torch.tensor(p, requires_grad=True) for p in params]

    def forward(x):
        h = functional.max_pool2d(torch.relu(functional.conv2d(x, w[0], w[1])), 2)
        h = functional.max_pool2d(torch.relu(functional.conv2d(h, w[2], w[3])), 2)
        h = torch.relu(torch.addmm(w[5], h.flatten(1), w[4]))
        h = torch.relu(torch.addmm(w[7], h, w[6]))
        return torch.addmm(w[9], h, w[8])
    return common.torch_sgd_step(forward, w, lambda: [t.detach().numpy().copy() for t in w])


if __name__ == "__main__":
    raise SystemExit(common.main(sys.modules[__name__]))
