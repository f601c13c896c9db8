"""`make demo`: the README's define-then-run example, trained on real digit images.

A softmax classifier with one hidden layer on scikit-learn's 8x8 digits, compiled once by
gc.function into fused OpenCL kernels on the default device (or, with no OpenCL device,
evaluated by the numpy reference interpreter, with a note saying so).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc


def load_digits_split(seed: int = 0):
    """Digits scaled to [0, 1], shuffled, split 80/20."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def build(batch: int, hidden: int = 64, lr: float = 0.5, seed: int = 0):
    """The graph: placeholders, variables, loss, gradients, SGD updates."""
    rng = np.random.default_rng(seed)
    x = gc.placeholder((batch, 64), gc.float32, name="x")
    y = gc.placeholder((batch,), gc.int32, name="y")
    W1 = gc.variable(rng.standard_normal((64, hidden)).astype(np.float32) * 0.1, name="W1")
    b1 = gc.variable(np.zeros(hidden, np.float32), name="b1")
    W2 = gc.variable(rng.standard_normal((hidden, 10)).astype(np.float32) * 0.1, name="W2")
    b2 = gc.variable(np.zeros(10, np.float32), name="b2")
    logits = gc.relu(x @ W1 + b1) @ W2 + b2
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    params = [W1, b1, W2, b2]
    grads = gc.grad(loss, params)
    updates = [(p, p - lr * g) for p, g in zip(params, grads)]
    return x, y, logits, loss, updates


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    xtr, ytr, xte, yte = load_digits_split()
    x, y, logits, loss, updates = build(args.batch_size)
    if not gc.runtime_devices():
        print("no OpenCL device: running the reference interpreter instead")
        return _interpreted(x, y, loss, xtr, ytr)
    started = time.perf_counter()
    step = gc.function([x, y], loss, updates=updates, device=args.device, name="train_step")
    predict = gc.function([x], gc.argmax(logits, axis=1), device=step.device, name="predict")
    print(f"compiled on {step.device.name}: {step.kernel_count} kernels per training step, "
          f"{time.perf_counter() - started:.2f}s")
    print(step.dump())
    for epoch in range(args.epochs):
        losses = [step(xb, yb) for xb, yb in _batches(xtr, ytr, args.batch_size, epoch)]
        accuracy = _accuracy(predict, xte, yte, args.batch_size)
        print(f"epoch {epoch + 1:2d}  loss {np.mean(losses):.4f}  test accuracy {accuracy:.3f}")


def _batches(x, y, batch: int, epoch: int):
    order = np.random.default_rng(epoch).permutation(len(x))
    for start in range(0, len(x) - batch + 1, batch):
        index = order[start:start + batch]
        yield x[index], y[index]


def _accuracy(predict, x, y, batch: int) -> float:
    hits = [np.mean(predict(x[i:i + batch]) == y[i:i + batch])
            for i in range(0, len(x) - batch + 1, batch)]
    return float(np.mean(hits))


def _interpreted(x, y, loss, xtr, ytr) -> None:
    batch = x.shape[0]
    value = gc.interpret(loss, {x: xtr[:batch], y: ytr[:batch]})
    print(f"initial loss on one batch (numpy reference): {value:.4f}")


if __name__ == "__main__":
    main()
