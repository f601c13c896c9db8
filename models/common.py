"""What the example models share: command-line options, data, seeding, metrics and plots.

Every model module defines DEFAULTS (its epochs, batch size, learning rate...),
`build(input_shape, num_classes, seed)` and `train(args) -> dict` of final metrics, and a
`main(argv)` made by `make_main`; `graphc train NAME` runs the same `train`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

import graphc as gc
from graphc import nn

MODELS = ("linreg", "mlp", "mlp_adam", "lenet", "lstm", "autoencoder", "vae", "vit")
DATASETS = gc.data.DATASETS
COMMON_DEFAULTS = {"dataset": "digits", "epochs": 10, "batch_size": 32, "lr": None,
                   "device": None, "data_dir": None, "plots": "plots", "seed": 0,
                   "verbose": 1, "limit": None, "augment": 0, "distributed": False}


# ---- options ----

def add_training_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `graphc train NAME` and of each model's main; defaults filled later."""
    add = parser.add_argument
    add("--dataset", choices=DATASETS, default=None, help="training data (default: digits)")
    add("--epochs", type=positive_int, default=None, help="passes over the training set")
    add("--batch-size", type=positive_int, default=None, help="examples per training step")
    add("--lr", type=float, default=None, help="learning rate (default: the model's)")
    add("--device", default=None, help="OpenCL device: index or name substring")
    add("--data-dir", default=None, help="folder with MNIST/Fashion-MNIST IDX files")
    add("--plots", default=None, help="folder for plots (default: plots/); 'none' skips them")
    add("--seed", type=int, default=None, help="seed for weights, shuffling and noise")
    add("--limit", type=positive_int, default=None,
        help="use only the first N training examples")
    add("--augment", type=non_negative_int, default=None, metavar="PIXELS",
        help="classifiers: shift training images by up to PIXELS at random, anew each epoch")
    add("--quiet", dest="verbose", action="store_const", const=0, default=None,
        help="print only the final metrics")
    add("--distributed", action="store_const", const=True, default=None,
        help="data-parallel on the ranks of mpirun (gc.distributed): each rank trains on its "
             "share of the data at --batch-size, gradients averaged; rank 0 prints and plots")
    return parser


def positive_int(text: str) -> int:
    """An option's value that must be a whole number of at least 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An option's value that must be a whole number of at least 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def resolve_args(args: argparse.Namespace, defaults: dict) -> argparse.Namespace:
    """Fill options left unset with the model's defaults, then the common ones."""
    for key, value in {**COMMON_DEFAULTS, **defaults}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return _plots_off(args)


def make_args(defaults: dict, **overrides) -> argparse.Namespace:
    """Arguments for calling `train` from Python: the defaults, then `overrides` as given
    (plots=None turns plots off)."""
    args = resolve_args(argparse.Namespace(), defaults)
    for key, value in overrides.items():
        setattr(args, key, value)
    return _plots_off(args)


def _plots_off(args: argparse.Namespace) -> argparse.Namespace:
    """--plots none (or '' or None) means no plots: args.plots becomes None."""
    if not args.plots or str(args.plots).lower() == "none":
        args.plots = None
    return args


def make_main(doc: str, defaults: dict, train: Callable) -> Callable:
    """A `main(argv)` that parses the training options and runs `train`."""
    def main(argv: list[str] | None = None) -> int:
        parser = add_training_args(argparse.ArgumentParser(description=doc))
        args = resolve_args(parser.parse_args(argv), defaults)
        with ranks_of(args):
            train(args)
        return 0
    return main


def ranks_of(args: argparse.Namespace):
    """--distributed: join the MPI world; on ranks other than 0, no plots and nothing
    printed (a context manager that swallows their output)."""
    if not args.distributed:
        return contextlib.nullcontext()
    gc.distributed.init()
    if gc.distributed.size() == 1:
        warnings.warn("--distributed without mpirun (or without mpi4py): training on one "
                      "process; run `mpirun -n N graphc train ... --distributed`", stacklevel=2)
    if gc.distributed.rank() == 0:
        return contextlib.nullcontext()
    args.plots, args.verbose = None, 0
    return contextlib.redirect_stdout(io.StringIO())


def distribute(model) -> None:
    """Recompile `model` with its optimizer averaging gradients over the ranks."""
    model.compile(gc.distributed.DistributedOptimizer(model.optimizer), model.loss,
                  model.metrics, device=model.device)


# ---- setup ----

def set_seed(seed: int) -> None:
    """Seed numpy's global state (layer initializers) and graphc's random ops."""
    np.random.seed(seed)
    gc.random.set_seed(seed)


def load_split(args: argparse.Namespace, flat: bool = False) -> gc.data.Split:
    """The data set named by --dataset, optionally cut to --limit training examples."""
    split = gc.data.load_dataset(args.dataset, data_folder(args), flat=flat, seed=args.seed)
    if args.limit:
        split = split._replace(x_train=split.x_train[:args.limit],
                               y_train=split.y_train[:args.limit])
    return split


def data_folder(args: argparse.Namespace) -> Path | None:
    """The folder --data-dir names, holding --dataset's files; never another one in its place.

    gc.data also looks in $GRAPHC_DATA_DIR and Debian's folder: a --data-dir that does not
    hold the files must be an error, not a quiet fall-back to other data.
    """
    if args.data_dir is None:
        return None
    folder = Path(args.data_dir)
    if not folder.is_dir():
        raise gc.data.DataError(f"--data-dir {folder}: no such folder")
    if args.dataset not in ("mnist", "fashion-mnist"):
        raise gc.data.DataError(
            f"--data-dir {folder} is only read for --dataset mnist or fashion-mnist, not "
            f"{args.dataset!r} (the digits come with scikit-learn)")
    found = gc.data.find_mnist_dir(args.dataset, folder)
    if found.resolve() != folder.resolve() and folder.resolve() not in found.resolve().parents:
        raise gc.data.DataError(
            f"--data-dir {folder} holds no {args.dataset} IDX files (they are in {found}: "
            "pass that folder, or leave --data-dir out)")
    return found


def describe_split(split: gc.data.Split) -> str:
    """One line: sizes and shapes of a split."""
    return (f"{len(split.x_train)} training and {len(split.x_test)} test examples of shape "
            f"{split.x_train.shape[1:]}")


# ---- training ----

class EpochTimes(nn.Callback):
    """Wall-clock seconds of each epoch (the first includes compiling the steps)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.timer = Timer()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(self.timer.seconds)

    def steady(self) -> float:
        """Median seconds per epoch after the first (the first when there is only one)."""
        later = self.seconds[1:] or self.seconds
        return float(np.median(later))


def fit(model, x, y, args: argparse.Namespace, validation_data=None) -> tuple[dict, dict]:
    """model.fit with the options of `args` (x may be a loader, y then None); (history,
    timings)."""
    if args.epochs < 1:
        raise gc.data.DataError(f"epochs must be at least 1, got {args.epochs}")
    examples = len(x.x) if isinstance(x, gc.data.ShiftedBatches) else len(x)
    if args.distributed:
        distribute(model)
        examples *= gc.distributed.size() if isinstance(x, gc.data.ShiftedBatches) else 1
    times = EpochTimes()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs,
                        verbose=1 if args.verbose else 0, validation_data=validation_data,
                        seed=args.seed, callbacks=[times])
    timings = {"train_seconds": float(sum(times.seconds)),
               "first_epoch_seconds": times.seconds[0],
               "epoch_seconds": times.steady(),
               "samples_per_second": examples / times.steady()}
    return history.history, timings


def train_classifier(name: str, build: Callable, args: argparse.Namespace,
                     flat: bool = False) -> dict:
    """Load --dataset, build, fit, evaluate on the test set, plot curves; the metrics."""
    split = load_split(args, flat=flat)
    if args.verbose:
        print(f"{name} on {args.dataset}: {describe_split(split)}")
    model = build(split.x_train.shape[1:], 10, args.seed, lr=args.lr, device=args.device)
    if args.verbose:
        model.summary()
    x, y = split.x_train, split.y_train
    if args.augment:
        if args.distributed:            # fit shards arrays, not loaders: this rank's share
            rank, size = gc.distributed.rank(), gc.distributed.size()
            x, y = x[rank::size], y[rank::size]
        x, y = gc.data.ShiftedBatches(x, y, args.batch_size, args.augment, args.seed), None
    history, timings = fit(model, x, y, args, validation_data=(split.x_test, split.y_test))
    test_loss, test_accuracy = model.evaluate(split.x_test, split.y_test,
                                              batch_size=args.batch_size)
    metrics = {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
               **timings}
    print_metrics(name, metrics)
    save_curves(history, plot_path(args, f"{name}_curves.png"),
                f"{name} on {args.dataset}")
    return {**metrics, "history": history, "model": model}


# ---- metrics ----

class Timer:
    """Wall-clock seconds since creation."""

    def __init__(self):
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def print_metrics(name: str, metrics: dict) -> None:
    """One line of `key value` pairs (numbers only), floats with 4 significant digits."""
    def fmt(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    print(f"{name}: " + "  ".join(f"{k} {fmt(v)}" for k, v in shown.items()), flush=True)


# ---- plots ----

def pyplot():
    """matplotlib.pyplot on the Agg backend, or None (with a message) when not installed."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: skipping plots (pip install graphc[plot])")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_path(args: argparse.Namespace, filename: str) -> Path | None:
    """Where to save a plot, creating --plots; None when plots are off."""
    if not args.plots:
        return None
    folder = Path(args.plots)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / filename


def save_curves(history: dict[str, list[float]], path: Path | None, title: str) -> Path | None:
    """Training curves, one panel per metric (val_* drawn with its metric)."""
    plt = pyplot() if path else None
    if plt is None:
        return None
    names = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label=name)
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", label=f"val_{name}")
        ax.set_xlabel("epoch")
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
        ax.set_title(name)
        ax.legend()
    fig.suptitle(title)
    return save_figure(plt, fig, path)


def save_image_grid(rows: list[np.ndarray], path: Path | None, title: str,
                    row_titles: list[str] | None = None) -> Path | None:
    """Rows of grayscale images (each row (n, H, W) or (n, 1, H, W)) in one figure."""
    plt = pyplot() if path else None
    if plt is None:
        return None
    count = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), count, figsize=(count * 0.9, len(rows) * 1.0),
                             squeeze=False)
    for r, images in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c < len(images):
                ax.imshow(np.asarray(images[c]).reshape(images[c].shape[-2:]), cmap="gray",
                          vmin=0.0, vmax=1.0)
        if row_titles:
            axes[r][0].set_title(row_titles[r], fontsize=8, loc="left")
    fig.suptitle(title)
    return save_figure(plt, fig, path)


def save_figure(plt, fig, path: Path) -> Path:
    """Lay out, save and close `fig`; print where it went."""
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"saved {path}")
    return path
