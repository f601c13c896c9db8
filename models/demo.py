"""`make demo`: LeNet trained on scikit-learn's 8x8 digits on the default OpenCL device.

The Keras-style model (Conv2D-MaxPool-Conv2D-MaxPool-Dense-Dense, NCHW) compiles into one
fused training step of OpenCL kernels on the default device ($GRAPHC_DEVICE picks another);
the demo prints the model, the compiled step, each epoch, the test accuracy, and saves
training curves under plots/. With no OpenCL device (a simulator such as Oclgrind does not
count: it would take minutes per epoch) the same model runs on the numpy reference
interpreter, with a note saying so.

    python -m graphc.models.demo [--epochs 8] [--device D] [--plots DIR]
"""
from __future__ import annotations

import argparse
import os

from graphc.models import common, lenet
from graphc.runtime.device import real_devices

DEFAULTS = {**lenet.DEFAULTS, "epochs": 8}


def describe_step(model) -> None:
    """Kernel count and compile time of the compiled training step(s)."""
    for function in model.compiled_steps().train_cache.values():
        kernels = getattr(function, "kernel_count", None)
        if kernels is not None:
            print(f"compiled {function.name} on {function.device.name}: {kernels} kernels, "
                  f"{function.compile_seconds:.2f}s")


def main(argv: list[str] | None = None) -> int:
    parser = common.add_training_args(argparse.ArgumentParser(description=__doc__))
    args = common.resolve_args(parser.parse_args(argv), DEFAULTS)
    if args.device is None and not os.environ.get("GRAPHC_DEVICE") and not real_devices():
        print("no OpenCL device (simulators aside): training on the numpy reference "
              "interpreter instead")
        args.device = "interpret"
    metrics = lenet.train(args)
    describe_step(metrics["model"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
