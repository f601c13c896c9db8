"""LeNet-5 on Fashion-MNIST: test accuracy after 2 epochs (target >= 88%) and samples/s.

Needs the IDX files (Debian: `apt-get install dataset-fashion-mnist`, or --data-dir DIR);
nothing is downloaded. Prints one line per epoch, the test accuracy, training samples/s
(steady epochs; the first includes compiling), and with --profile the slowest kernels of
one training step.

    python bench/fashion_lenet.py [--epochs 2] [--batch-size 32] [--lr 2e-3] [--profile]

Measured on PoCL, 2-core AMD EPYC (shared, loaded): 88.4% test accuracy, ~220 samples/s
(~270 s per epoch); convolution kernels take ~90% of a training step.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc
from graphc import nn
from graphc.models import common, lenet

TARGET_ACCURACY = 0.88


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--device", default=None, help="index or name substring")
    parser.add_argument("--data-dir", default=None, help="folder with the IDX files")
    parser.add_argument("--limit", type=int, default=None, help="first N training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="per-kernel times of one step")
    return parser.parse_args(argv)


def load(args: argparse.Namespace):
    """Fashion-MNIST, (N, 1, 28, 28) float32 in [0, 1], optionally cut to --limit."""
    (x_train, y_train), (x_test, y_test) = gc.data.load_mnist("fashion", args.data_dir)
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    return x_train, y_train, x_test, y_test


def profile_step(model: nn.Model, x: np.ndarray, y: np.ndarray, top: int = 10) -> None:
    """The slowest kernels of one training step (OpenCL event times)."""
    batch = len(x)
    step = model.compiled_steps().train(batch, ((), np.dtype(np.int32)))
    timings = step.profile(x, y, np.ones(batch, np.float32))
    total = sum(seconds for _, seconds in timings)
    print(f"one training step: {len(timings)} kernels, {total * 1e3:.1f} ms of kernel time")
    for name, seconds in sorted(timings, key=lambda t: -t[1])[:top]:
        print(f"  {seconds * 1e3:9.2f} ms  {seconds / total:6.1%}  {name}")


def main(argv=None) -> None:
    args = parse_args(argv)
    x_train, y_train, x_test, y_test = load(args)
    model = lenet.build(x_train.shape[1:], 10, args.seed, lr=args.lr, device=args.device)
    device = gc.runtime.select_device(args.device)
    print(f"device: {device.name} ({device.platform_name}); {len(x_train)} training images,"
          f" batch {args.batch_size}, {args.epochs} epochs, Adam({args.lr})")
    times = common.EpochTimes()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=2,
              seed=args.seed, callbacks=[times])
    started = time.perf_counter()
    _, accuracy = model.evaluate(x_test, y_test, batch_size=args.batch_size)
    eval_seconds = time.perf_counter() - started
    steady = times.steady()
    verdict = "meets" if accuracy >= TARGET_ACCURACY else "below"
    print(f"test accuracy {accuracy:.4f} ({verdict} the {TARGET_ACCURACY:.0%} target)")
    print(f"training: {len(x_train) / steady:,.0f} samples/s ({steady:.1f} s per epoch after"
          f" the first; first epoch {times.seconds[0]:.1f} s incl. compiling)")
    print(f"evaluation: {len(x_test) / eval_seconds:,.0f} samples/s")
    if args.profile:
        profile_step(model, x_train[:args.batch_size], y_train[:args.batch_size])


if __name__ == "__main__":
    main()
