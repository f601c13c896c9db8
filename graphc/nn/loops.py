"""fit / evaluate / predict: data checked and batched (graphc.nn.adapters), progress, callbacks.

Arrays are checked whole before anything runs (shapes against the model's inputs, class
labels, Embedding ids), so an error names the user's input, sample and batch size; batches
from a loader or a generator are checked one by one as they come.
"""
from __future__ import annotations

import sys
import time
import warnings

import numpy as np

from graphc.distributed import keras as on_ranks
from graphc.nn.adapters import (ArrayData, StreamData, class_weights, is_stream, model_inputs,
                                model_targets, refuse, same_length, sample_weights)
from graphc.nn.callbacks import CallbackList, History
from graphc.nn.checks import DataChecks, check_input_arrays
from graphc.nn.training import Totals
from graphc.ops.random import derived_seed as _derived_seed
from graphc.sites import user_stacklevel

try:                                    # optional: a live progress bar per epoch
    from tqdm.auto import tqdm
except ImportError:                     # pragma: no cover - exercised without tqdm only
    tqdm = None


def target_dtype(y: np.ndarray) -> np.dtype:
    """int32 for integer labels, float32 otherwise."""
    return np.dtype(np.int32) if y.dtype.kind in "iu" else np.dtype(np.float32)


def y_spec_of(y: np.ndarray) -> tuple:
    """(per-example shape, dtype) of the targets: part of a compiled step's key."""
    return (tuple(y.shape[1:]), target_dtype(y))


# ---- data ----

def _arrays(model, x, y, weights, needs_targets: bool, prefix: str = ""):
    """(xs, y, weights) of array data, the model built from them, shapes checked."""
    xs = model_inputs(model, x, f"{prefix}x")
    model.build_from_data(xs)
    xs = check_input_arrays(model, xs, f"{prefix}x")
    y = model_targets(model, y, f"{prefix}y") if needs_targets else None
    n = same_length(xs, y, None)
    return xs, y, sample_weights(weights, n, f"{prefix}sample_weight")


def _preparer(model, checks: DataChecks, needs_targets: bool, class_weight=None):
    """What a stream's batches go through: the checks arrays get, batch by batch (and
    class weights made into sample weights)."""
    def prepare(x, y, weights, first: int, what: str):
        xs = check_input_arrays(model, model_inputs(model, x, f"{what}: x"), f"{what}: x")
        if needs_targets and y is None:
            raise ValueError(f"{what}: the data yielded x alone; fit and evaluate need (x, y)"
                             f" or (x, y, sample_weight) batches")
        y = model_targets(model, y, f"{what}: y") if needs_targets else None
        n = same_length(xs, y, None)
        weights = sample_weights(weights, n, f"{what}: sample_weight") if needs_targets \
            else None
        checks.inputs(xs, first, what)
        checks.targets(y, first, what)
        if class_weight is not None:
            weights = _weights_of_classes(class_weight, y, weights, what)
        return xs, y, weights
    return prepare


def _weights_of_classes(class_weight, y, weights, what: str):
    if weights is not None:
        raise ValueError(f"{what}: class_weight and sample_weight cannot both be given "
                         f"(multiply them into sample_weight)")
    return class_weights(class_weight, y, f"class_weight (for {what})")


def make_data(model, x, y, weights, batch_size, shuffle: bool, steps, needs_targets: bool,
              name: str = "data", prefix: str = "", class_weight=None, cycle: bool = False):
    """ArrayData (checked whole) or StreamData (checked per batch) for `x`."""
    if is_stream(x):
        if y is not None or weights is not None:
            raise ValueError(f"{name}: y and sample_weight come from the batches a loader or"
                             f" generator yields; pass y=None")
        data = StreamData(x, batch_size, steps, name)
        model.build_from_data(model_inputs(model, data.first_inputs(), f"{name}: x"))
        data.prepare = _preparer(model, DataChecks(model, model.loss), needs_targets,
                                 class_weight)
        return data
    if x is None:
        raise refuse(x, f"{prefix}x")
    xs, y, weights = _arrays(model, x, y, weights, needs_targets, prefix)
    checks = DataChecks(model, model.loss)
    checks.inputs(xs, 0, f"{prefix}x")
    checks.targets(y, 0, f"{prefix}y")
    if class_weight is not None:
        weights = _weights_of_classes(class_weight, y, weights, f"{prefix}y")
    return ArrayData(xs, y, weights, batch_size, shuffle, steps, cycle)


def _require_targets(x, y, what: str) -> None:
    if y is None and not is_stream(x):
        raise ValueError(f"{what} needs targets y (or a loader of (x, y) batches); for an "
                         f"autoencoder pass y=x")


def _split(model, x, y, weights, validation_split: float):
    """Keras's validation_split: the last `fraction` of the arrays, before shuffling."""
    if is_stream(x):
        raise ValueError("validation_split takes arrays; for a loader or a generator pass "
                         "validation_data")
    xs, y, weights = _arrays(model, x, y, weights, True)
    cut = int(len(y) * (1.0 - validation_split))
    if not 0 < cut < len(y):
        raise ValueError(f"validation_split={validation_split} leaves no training or no "
                         f"validation data of {len(y)} examples")
    part = (lambda a, s: None if a is None else a[s])
    train = ([v[:cut] for v in xs], y[:cut], part(weights, slice(None, cut)))
    validation = ([v[cut:] for v in xs], y[cut:], part(weights, slice(cut, None)))
    return train, validation


def _validation(model, validation_data, batch: int, steps):
    """Validation batches of the training batch size (one compiled eval step)."""
    if validation_data is None:
        return None
    if is_stream(validation_data):
        if hasattr(validation_data, "__next__") and not steps:
            raise ValueError("validation_data is a one-shot iterator: every epoch would need"
                             " a fresh one; give validation_steps, or a re-iterable loader")
        return make_data(model, validation_data, None, None, batch, False, steps, True,
                         "validation_data")
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError(f"validation_data is (x, y), (x, y, sample_weight) or a loader; got "
                         f"{type(validation_data).__name__}")
    x, y, *weights = validation_data
    return make_data(model, x, y, weights[0] if weights else None, batch, False, steps, True,
                     prefix="validation_data: ")


# ---- progress ----

def _format(logs: dict) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


def _interactive() -> bool:
    """A live bar only on a terminal: a log file would get every redraw."""
    isatty = getattr(sys.stdout, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:                  # a closed stream
        return False


class Progress:
    """verbose=1: a live bar on a terminal, else one line per epoch; verbose=2: one line per
    epoch; 0: nothing."""

    def __init__(self, verbose: int, epoch: int, epochs: int, steps: int | None):
        self.verbose, self.started = verbose, time.perf_counter()
        self.label = f"Epoch {epoch + 1}/{epochs}"
        self.steps, self.done = steps, 0
        self.live = verbose == 1 and _interactive()
        self.bar = None
        if self.live and tqdm is not None:
            self.bar = tqdm(total=steps, desc=self.label, unit="batch", leave=True,
                            file=sys.stdout)

    def update(self, logs: dict) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            self.bar.update(1)
        elif self.live:
            total = f"/{self.steps}" if self.steps else ""
            sys.stdout.write(f"\r{self.label} {self.done}{total} - {_format(logs)}")
            sys.stdout.flush()

    def close(self, logs: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            self.bar.close()
            return
        if self.verbose:
            seconds = time.perf_counter() - self.started
            lead = "\r" if self.live else ""
            print(f"{lead}{self.label} - {seconds:.1f}s - {_format(logs)}", flush=True)


# ---- loops ----

def _feeds(model, batch) -> list:
    feeds = model.convert_inputs(batch.xs) + [batch.y.astype(target_dtype(batch.y)), batch.mask]
    return feeds + ([] if batch.sample_weight is None else [batch.sample_weight])


def run_eval(model, data) -> Totals:
    """Counts of the eval step over every batch."""
    steps = model.compiled_steps()
    totals = Totals(steps.metrics)
    for batch in data.epoch():
        step = steps.evaluate(data.batch, y_spec_of(batch.y), batch.sample_weight is not None)
        totals.add(step(*_feeds(model, batch)))
    return on_ranks.summed_over_ranks(totals)


def fit(model, x, y=None, batch_size=None, epochs: int = 1, verbose=1, callbacks=None,
        validation_split: float = 0.0, validation_data=None, shuffle: bool = True,
        initial_epoch: int = 0, seed: int | None = None, sample_weight=None,
        steps_per_epoch: int | None = None, validation_steps: int | None = None,
        class_weight=None) -> History:
    """Keras's fit; see Model.fit."""
    verbose = 1 if verbose == "auto" else int(verbose)
    _require_targets(x, y, "fit")
    model.compiled_steps()              # compiled? (before any data is looked at)
    if not 0 <= int(initial_epoch) <= int(epochs):
        raise ValueError(f"fit: initial_epoch={initial_epoch} must be in [0, epochs={epochs}]"
                         f" (epochs is the index of the last epoch, as in Keras)")
    ranks = on_ranks.ranks_of_fit()     # under mpirun: (rank, size); see distributed/keras.py
    if ranks:
        on_ranks.check_optimizer(model)
        verbose, callbacks = on_ranks.rank_zero_only(verbose, callbacks, ranks[0])
    if validation_split and validation_data is None:
        (x, y, sample_weight), validation_data = _split(model, x, y, sample_weight,
                                                        validation_split)
    if ranks:
        x, y, sample_weight = on_ranks.shard_training(x, y, sample_weight, *ranks)
        validation_data = on_ranks.shard_validation(validation_data, *ranks)
    data = make_data(model, x, y, sample_weight, batch_size, shuffle, steps_per_epoch, True,
                     class_weight=class_weight, cycle=True)
    if ranks:
        on_ranks.broadcast_state(model)
    val_data = _validation(model, validation_data, data.batch, validation_steps)
    rng = np.random.default_rng(seed if seed is not None else _derived_seed(None))
    history = History()
    # History last, as in Keras: it records what earlier callbacks add (learning_rate)
    hooks = CallbackList(list(callbacks or []) + [history], model,
                         {"epochs": epochs, "steps": data.count(), "verbose": verbose})
    model.stop_training = False
    hooks.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        if not data.has_more():
            _ran_out(epoch - initial_epoch, epochs - initial_epoch)
            break
        progress = Progress(verbose, epoch, epochs, data.count())
        logs = _train_epoch(model, data, val_data, rng, hooks, progress, epoch)
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end()
    model.history = history
    return history


def _ran_out(done: int, wanted: int) -> None:
    warnings.warn(f"the data ran out after {done} of {wanted} epochs: training stops. A "
                  f"generator is read once; give steps_per_epoch so that it yields "
                  f"steps_per_epoch * epochs batches, or pass a re-iterable loader",
                  UserWarning, stacklevel=user_stacklevel())


def _train_epoch(model, data, val_data, rng, hooks, progress, epoch: int) -> dict:
    steps = model.compiled_steps()
    totals = Totals(steps.metrics)
    hooks.on_epoch_begin(epoch)
    iteration = int(steps.optimizer.iterations.get_value())
    for index, batch in enumerate(data.epoch(rng)):
        hooks.on_train_batch_begin(index)
        step = steps.train(data.batch, y_spec_of(batch.y), batch.sample_weight is not None)
        # random ops (dropout) draw stream number `calls`: the optimizer's step, so a
        # resumed or recompiled model continues the streams instead of repeating them
        step.calls = iteration
        totals.add(step(*_feeds(model, batch)))
        iteration += 1
        logs = totals.logs()
        progress.update(logs)
        hooks.on_train_batch_end(index, logs)
        if model.stop_training:
            break
    logs = on_ranks.summed_over_ranks(totals).logs()
    if val_data is not None:
        logs.update(run_eval(model, val_data).logs("val_"))
    progress.close(logs)
    return logs


def evaluate(model, x, y=None, batch_size=None, verbose=0, return_dict: bool = False,
             sample_weight=None, steps: int | None = None):
    """Keras's evaluate: the loss, or [loss, *metrics], or a dict."""
    _require_targets(x, y, "evaluate")
    model.compiled_steps()
    data = make_data(model, x, y, sample_weight, batch_size, False, steps, True)
    logs = run_eval(model, data).logs()
    if verbose:
        print(_format(logs), flush=True)
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def predict(model, x, batch_size=None, verbose=0, steps: int | None = None):
    """Keras's predict: the outputs for every example (a list for several outputs)."""
    data = make_data(model, x, None, None, batch_size, False, steps, False)
    compiled = model.compiled_steps(allow_uncompiled=True)
    parts: list[list[np.ndarray]] = []
    for batch in data.epoch():
        outputs = compiled.predict(data.batch)(*model.convert_inputs(batch.xs))
        parts.append([np.asarray(o)[:batch.real] for o in outputs])
    if not parts:
        raise ValueError("predict: the data yielded no batches")
    results = [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
    if verbose:
        print(f"predicted {len(results[0])} examples", flush=True)
    return results[0] if len(results) == 1 else results


# ---- one batch (Keras's *_on_batch) ----

def _whole_batch(model, x, y, weights, needs_targets: bool, what: str, class_weight=None):
    """The arrays as one batch of their own size (one compiled step per size)."""
    if is_stream(x):
        raise refuse(x, f"{what}: x")
    if x is None:
        raise refuse(x, f"{what}: x")
    data = make_data(model, x, y, weights, 1, False, None, needs_targets, prefix=f"{what}: ",
                     class_weight=class_weight)
    data.batch = data.n
    return data, next(iter(data.epoch()))


def _returned(logs: dict, return_dict: bool):
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def train_on_batch(model, x, y=None, sample_weight=None, class_weight=None,
                   return_dict: bool = False):
    """One training step on exactly this batch: its loss (and metrics, of this batch)."""
    _require_targets(x, y, "train_on_batch")
    steps = model.compiled_steps()
    data, batch = _whole_batch(model, x, y, sample_weight, True, "train_on_batch",
                               class_weight)
    step = steps.train(data.batch, y_spec_of(batch.y), batch.sample_weight is not None)
    step.calls = int(steps.optimizer.iterations.get_value())
    totals = Totals(steps.metrics)
    totals.add(step(*_feeds(model, batch)))
    return _returned(totals.logs(), return_dict)


def test_on_batch(model, x, y=None, sample_weight=None, return_dict: bool = False):
    """The loss (and metrics) of this batch, nothing updated."""
    _require_targets(x, y, "test_on_batch")
    steps = model.compiled_steps()
    data, batch = _whole_batch(model, x, y, sample_weight, True, "test_on_batch")
    step = steps.evaluate(data.batch, y_spec_of(batch.y), batch.sample_weight is not None)
    totals = Totals(steps.metrics)
    totals.add(step(*_feeds(model, batch)))
    return _returned(totals.logs(), return_dict)


def predict_on_batch(model, x):
    """The model's outputs for this batch (a list for several outputs)."""
    data, batch = _whole_batch(model, x, None, None, False, "predict_on_batch")
    compiled = model.compiled_steps(allow_uncompiled=True)
    outputs = [np.asarray(o) for o in compiled.predict(data.batch)(
        *model.convert_inputs(batch.xs))]
    return outputs[0] if len(outputs) == 1 else outputs
