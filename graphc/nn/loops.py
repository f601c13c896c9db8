"""fit / evaluate / predict: batches (padded to the compiled size), progress, callbacks.

Data are numpy arrays (a list of arrays for several inputs), or any re-iterable that
yields (x, y) batches (a data loader): then the batch size is the first batch's, unless
given, and a shorter batch is padded like a last partial one.
"""
from __future__ import annotations

import math
import time

import numpy as np

from graphc.nn.callbacks import CallbackList, History
from graphc.nn.training import Totals
from graphc.ops.random import _derived_seed

try:                                    # optional: a progress bar per epoch
    from tqdm.auto import tqdm
except ImportError:                     # pragma: no cover - exercised without tqdm only
    tqdm = None

DEFAULT_BATCH_SIZE = 32


# ---- data ----

def as_arrays(x) -> list[np.ndarray]:
    """One array per model input."""
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, np.ndarray) for v in x):
        return list(x)
    return [np.asarray(x)]


def target_dtype(y: np.ndarray) -> np.dtype:
    """int32 for integer labels, float32 otherwise."""
    return np.dtype(np.int32) if y.dtype.kind in "iu" else np.dtype(np.float32)


def y_spec_of(y: np.ndarray) -> tuple:
    """(per-example shape, dtype) of the targets: part of a compiled step's key."""
    return (tuple(y.shape[1:]), target_dtype(y))


def is_dataset(x, y) -> bool:
    """True for a loader of (x, y) batches rather than arrays."""
    return (y is None and not isinstance(x, (np.ndarray, list, tuple))
            and hasattr(x, "__iter__"))


def pad_index(index: np.ndarray, batch: int, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`index` filled up to `batch` with rows from `pool` (cycled); weights 1 real, 0 pad."""
    real = len(index)
    weights = np.zeros(batch, np.float32)
    weights[:real] = 1.0
    if real < batch:
        index = np.concatenate([index, np.resize(pool, batch - real)])
    return index, weights


class ArrayBatches:
    """Batches of arrays of one size; the last one padded; shuffled per epoch if asked."""

    def __init__(self, xs, y, batch_size: int, shuffle: bool = False):
        self.xs, self.y, self.batch = xs, y, int(batch_size)
        self.n = len(xs[0])
        if any(len(x) != self.n for x in xs) or (y is not None and len(y) != self.n):
            sizes = [len(x) for x in xs] + ([len(y)] if y is not None else [])
            raise ValueError(f"inputs and targets must have the same length, got {sizes}")
        if self.n == 0:
            raise ValueError("no data: the arrays are empty")
        self.shuffle = shuffle

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch)

    def epoch(self, rng: np.random.Generator | None = None):
        """Yield (xs, y or None, weights, real count) per batch."""
        order = rng.permutation(self.n) if (self.shuffle and rng is not None) else \
            np.arange(self.n)
        for start in range(0, self.n, self.batch):
            index, weights = pad_index(order[start:start + self.batch], self.batch, order)
            y = self.y[index] if self.y is not None else None
            yield [x[index] for x in self.xs], y, weights, int(weights.sum())


class LoaderBatches:
    """Batches from a re-iterable of (x, y) tuples (or x alone, for predict)."""

    def __init__(self, loader, batch_size: int | None):
        self.loader, self.batch = loader, batch_size
        if self.batch is None:
            first = next(iter(loader))
            xs = as_arrays(first[0] if isinstance(first, tuple) else first)
            self.batch = len(xs[0])

    def __len__(self) -> int | None:
        return len(self.loader) if hasattr(self.loader, "__len__") else None

    def epoch(self, rng=None):
        for item in self.loader:
            x, y = item if isinstance(item, tuple) else (item, None)
            xs = as_arrays(x)
            y = None if y is None else np.asarray(y)
            if len(xs[0]) > self.batch:
                raise ValueError(f"a batch of {len(xs[0])} examples from the loader is larger"
                                 f" than batch_size={self.batch}")
            index, weights = pad_index(np.arange(len(xs[0])), self.batch, np.arange(len(xs[0])))
            yield [v[index] for v in xs], (None if y is None else y[index]), weights, \
                int(weights.sum())


def make_batches(x, y, batch_size, shuffle: bool = False):
    """ArrayBatches for arrays, LoaderBatches for a loader."""
    if is_dataset(x, y):
        return LoaderBatches(x, batch_size)
    return ArrayBatches(as_arrays(x), None if y is None else np.asarray(y),
                        batch_size or DEFAULT_BATCH_SIZE, shuffle)


def split_validation(x, y, fraction: float):
    """Keras's validation_split: the last `fraction` of the arrays, before shuffling."""
    xs, y = as_arrays(x), np.asarray(y)
    cut = int(len(y) * (1.0 - fraction))
    if not 0 < cut < len(y):
        raise ValueError(f"validation_split={fraction} leaves no training or no validation data"
                         f" of {len(y)} examples")
    return ([v[:cut] for v in xs], y[:cut]), ([v[cut:] for v in xs], y[cut:])


# ---- progress ----

def _format(logs: dict) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class Progress:
    """A tqdm bar per epoch (verbose=1), or one printed line per epoch (verbose=2 or no tqdm)."""

    def __init__(self, verbose: int, epoch: int, epochs: int, steps: int | None):
        self.verbose, self.started = verbose, time.perf_counter()
        self.label = f"Epoch {epoch + 1}/{epochs}"
        self.bar = None
        if verbose == 1 and tqdm is not None:
            self.bar = tqdm(total=steps, desc=self.label, unit="batch", leave=True)

    def update(self, logs: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            self.bar.update(1)

    def close(self, logs: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            self.bar.close()
        elif self.verbose:
            seconds = time.perf_counter() - self.started
            print(f"{self.label} - {seconds:.1f}s - {_format(logs)}", flush=True)


# ---- loops ----

def run_eval(model, batches) -> Totals:
    """Counts of the eval step over every batch."""
    steps = model.compiled_steps()
    totals = Totals(steps.metrics)
    for xs, y, weights, _ in batches.epoch():
        step = steps.evaluate(batches.batch, y_spec_of(y))
        totals.add(step(*model.convert_inputs(xs), y.astype(target_dtype(y)), weights))
    return totals


def _split(x, y, validation_data, validation_split):
    """Training data and validation data (None, a loader, or an (x, y) pair)."""
    if validation_data is not None:
        if is_dataset(validation_data, None):
            return x, y, validation_data
        return x, y, (validation_data[0], validation_data[1])
    if validation_split:
        (x, y), validation = split_validation(x, y, validation_split)
        return x, y, validation
    return x, y, None


def _validation_batches(validation, batch_size: int):
    """Validation batches of the training batch size (one compiled eval step)."""
    if validation is None:
        return None
    if is_dataset(validation, None):
        return LoaderBatches(validation, batch_size)
    return make_batches(validation[0], validation[1], batch_size)


def _require_targets(x, y, what: str) -> None:
    if y is None and not is_dataset(x, y):
        raise ValueError(f"{what} needs targets y (or a loader of (x, y) batches); for an "
                         f"autoencoder pass y=x")


def fit(model, x, y=None, batch_size=None, epochs: int = 1, verbose=1, callbacks=None,
        validation_split: float = 0.0, validation_data=None, shuffle: bool = True,
        initial_epoch: int = 0, seed: int | None = None) -> History:
    """Keras's fit; see Model.fit."""
    verbose = 1 if verbose == "auto" else int(verbose)
    _require_targets(x, y, "fit")
    x, y, validation = _split(x, y, validation_data, validation_split)
    batches = make_batches(x, y, batch_size, shuffle)
    val_batches = _validation_batches(validation, batches.batch)
    model.build_from_data(next(batches.epoch())[0])
    rng = np.random.default_rng(seed if seed is not None else _derived_seed(None))
    history = History()
    hooks = CallbackList([history] + list(callbacks or []), model,
                         {"epochs": epochs, "steps": len(batches), "verbose": verbose})
    model.stop_training = False
    hooks.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        progress = Progress(verbose, epoch, epochs, len(batches))
        logs = _train_epoch(model, batches, val_batches, rng, hooks, progress, epoch)
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end()
    model.history = history
    return history


def _train_epoch(model, batches, val_batches, rng, hooks, progress, epoch: int) -> dict:
    steps = model.compiled_steps()
    totals = Totals(steps.metrics)
    hooks.on_epoch_begin(epoch)
    iteration = int(steps.optimizer.iterations.get_value())
    for index, (xs, y, weights, _) in enumerate(batches.epoch(rng)):
        hooks.on_train_batch_begin(index)
        step = steps.train(batches.batch, y_spec_of(y))
        # random ops (dropout) draw stream number `calls`: the optimizer's step, so a
        # resumed or recompiled model continues the streams instead of repeating them
        step.calls = iteration
        totals.add(step(*model.convert_inputs(xs), y.astype(target_dtype(y)), weights))
        iteration += 1
        logs = totals.logs()
        progress.update(logs)
        hooks.on_train_batch_end(index, logs)
        if model.stop_training:
            break
    logs = totals.logs()
    if val_batches is not None:
        logs.update(run_eval(model, val_batches).logs("val_"))
    progress.close(logs)
    return logs


def evaluate(model, x, y=None, batch_size=None, verbose=0, return_dict: bool = False):
    """Keras's evaluate: the loss, or [loss, *metrics], or a dict."""
    _require_targets(x, y, "evaluate")
    batches = make_batches(x, y, batch_size)
    model.build_from_data(next(batches.epoch())[0])
    logs = run_eval(model, batches).logs()
    if verbose:
        print(_format(logs), flush=True)
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def predict(model, x, batch_size=None, verbose=0):
    """Keras's predict: the outputs for every example (a list for several outputs)."""
    batches = make_batches(x, None, batch_size)
    model.build_from_data(next(batches.epoch())[0])
    steps = model.compiled_steps(allow_uncompiled=True)
    parts: list[list[np.ndarray]] = []
    for xs, _, _, real in batches.epoch():
        outputs = steps.predict(batches.batch)(*model.convert_inputs(xs))
        parts.append([np.asarray(o)[:real] for o in outputs])
    results = [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
    if verbose:
        print(f"predicted {len(results[0])} examples", flush=True)
    return results[0] if len(results) == 1 else results
