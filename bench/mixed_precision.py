"""Keras-style training of an MLP 784-512-512-10 (batch 128) under the float32 and the
mixed_float16 dtype policies on one device: samples/s per policy and kernels per step.

    python bench/mixed_precision.py [--steps 20] [--repeats 3]

On a device without cl_khr_fp16 (a CPU through PoCL) float16 is stored as half and computed
in float, and graphc warns that mixed precision gains no speed there; this measures by how
much it loses.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import graphc as gc
from graphc import nn
from graphc.nn import mixed_precision


def run(policy: str, x: np.ndarray, y: np.ndarray, repeats: int) -> tuple[float, int, str]:
    """(samples/s of the best of `repeats` epochs, kernels per step, optimizer class)."""
    mixed_precision.set_global_policy(policy)
    gc.random.set_seed(0)
    model = nn.Sequential([nn.Input((784,)), nn.Dense(512, activation="relu"),
                           nn.Dense(512, activation="relu"), nn.Dense(10),
                           nn.Activation("softmax", dtype="float32")])
    mixed_precision.set_global_policy("float32")
    model.compile(gc.optim.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x[:256], y[:256], batch_size=128, epochs=1, verbose=0)     # compile, warm up
    steps = model.compiled_steps()
    kernels = next(iter(steps.train_cache.values())).kernel_count
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.fit(x, y, batch_size=128, epochs=1, verbose=0, shuffle=False)
        times.append(time.perf_counter() - started)
    return len(x) / min(times), kernels, type(model.optimizer).__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128 * args.steps, 784)).astype(np.float32)
    y = rng.integers(0, 10, len(x)).astype(np.int32)
    print(f"device: {gc.runtime.select_device().name}")
    print("| policy | samples/s | kernels/step | optimizer |\n|---|---|---|---|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mixed_precision.Float16Warning)
        for policy in ("float32", "mixed_float16"):
            speed, kernels, optimizer = run(policy, x, y, args.repeats)
            print(f"| {policy} | {speed:,.0f} | {kernels} | {optimizer} |")


if __name__ == "__main__":
    main()
