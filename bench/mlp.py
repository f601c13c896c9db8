"""The MLP 784-512-512-10 training step (batch 128, softmax cross-entropy, SGD).

graphc on the default OpenCL device, and the same step in numpy (and torch, when it is
importable) measured in the same run. `python bench/mlp.py --first-step` prints the
seconds from building the graph to the end of the first step (used for cold/warm runs).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

SIZES = (784, 512, 512, 10)
BATCH = 128
LR = 0.01


def init(seed: int = 0):
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        params.append((rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32))
        params.append(np.zeros(fan_out, np.float32))
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH).astype(np.int32)
    return params, x, y


def graphc_step(params):
    import graphc as gc
    x = gc.placeholder((BATCH, SIZES[0]), gc.float32, name="x")
    y = gc.placeholder((BATCH,), gc.int32, name="y")
    variables = [gc.variable(p, name=f"p{i}") for i, p in enumerate(params)]
    h = x
    for i in range(0, len(variables), 2):
        h = h @ variables[i] + variables[i + 1]
        if i + 2 < len(variables):
            h = gc.relu(h)
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, h, from_logits=True))
    grads = gc.grad(loss, variables)
    return gc.function([x, y], loss, updates=[(v, v - LR * g) for v, g in zip(variables, grads)],
                       name="mlp_step")


def numpy_step(params, x, y):
    """One SGD step of the same MLP, by hand in numpy (float32)."""
    acts, h = [x], x
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i + 2 < len(params):
            h = np.maximum(h, 0)
        acts.append(h)
    z = h - h.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    d = p
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    for i in range(len(params) - 2, -1, -2):
        a = acts[i // 2]
        gW, gb = a.T @ d, d.sum(0)
        if i:
            d = (d @ params[i].T) * (a > 0)
        params[i] -= LR * gW
        params[i + 1] -= LR * gb


def torch_step_fn(params):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    ws = [torch.tensor(p, requires_grad=True) for p in params]
    opt = torch.optim.SGD(ws, lr=LR)

    def step(x, y):
        h = x
        for i in range(0, len(ws), 2):
            h = h @ ws[i] + ws[i + 1]
            if i + 2 < len(ws):
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, y.long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def samples_per_second(step, args, repeats: int = 30, warmup: int = 3) -> float:
    for _ in range(warmup):
        step(*args)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step(*args)
        times.append(time.perf_counter() - started)
    return BATCH / statistics.median(times)


def first_step_seconds() -> tuple[float, float]:
    """(seconds in gc.function, seconds from building the graph to the end of step 1)."""
    params, x, y = init()
    started = time.perf_counter()
    step = graphc_step(params)
    step(x, y)
    return step.compile_seconds, time.perf_counter() - started


def measure() -> dict:
    params, x, y = init()
    step = graphc_step([p.copy() for p in params])
    result = {"graphc": samples_per_second(step, (x, y)), "kernels": step.kernel_count,
              "device": step.device.name, "platform": step.device.platform_version}
    result["numpy"] = samples_per_second(numpy_step, ([p.copy() for p in params], x, y))
    torch_step = torch_step_fn([p.copy() for p in params])
    if torch_step is not None:
        import torch
        result["torch"] = samples_per_second(torch_step, (torch.tensor(x), torch.tensor(y)))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--first-step", action="store_true")
    if parser.parse_args().first_step:
        print("%.4f %.4f" % first_step_seconds())
    else:
        print(measure())
