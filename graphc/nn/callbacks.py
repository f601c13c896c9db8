"""Keras's callbacks: hooks `fit` calls at the start and end of training, epochs and batches.

`logs` hold the epoch's `loss`, metrics and `val_` versions. A callback stops training by
setting `model.stop_training = True`.
"""
from __future__ import annotations

import csv
import inspect
import math
import os
import warnings

import numpy as np

_MAXIMIZED = ("acc", "precision", "recall", "f1", "f1_score", "auc")


def maximized(monitor: str) -> bool:
    """Whether larger is better for a logged value (mode='auto'): accuracies, AUC and the
    confusion scores."""
    name = monitor[4:] if monitor.startswith("val_") else monitor
    return name in _MAXIMIZED or name.endswith("accuracy") or name.startswith("auc")


class Callback:
    """Base class: every hook does nothing."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): """Before the first epoch."""
    def on_train_end(self, logs=None): """After the last epoch."""
    def on_epoch_begin(self, epoch: int, logs=None): """Before each epoch (0-based)."""
    def on_epoch_end(self, epoch: int, logs=None): """After each epoch, with its logs."""
    def on_train_batch_begin(self, batch: int, logs=None): """Before each training batch."""
    def on_train_batch_end(self, batch: int, logs=None): """After it, with running logs."""


class CallbackList(Callback):
    """Several callbacks called in order."""

    def __init__(self, callbacks, model, params: dict):
        super().__init__()
        self.callbacks = list(callbacks or [])
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)

    def _each(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def on_train_begin(self, logs=None): self._each("on_train_begin", logs)
    def on_train_end(self, logs=None): self._each("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._each("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._each("on_epoch_end", epoch, logs)
    def on_train_batch_begin(self, batch, logs=None):
        self._each("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._each("on_train_batch_end", batch, logs)


class History(Callback):
    """Records every epoch's logs: `history.history['loss']` and so on; `fit` returns it."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


class _Monitor(Callback):
    """Shared by EarlyStopping and ModelCheckpoint: which way is better for `monitor`."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.maximize = mode == "max" or (mode == "auto" and maximized(monitor))
        self.min_delta = abs(float(min_delta))

    def improved(self, current: float, reference: float | None) -> bool:
        """current beats reference by more than min_delta (always, with no reference)."""
        if reference is None:
            return True
        if self.maximize:
            return current - self.min_delta > reference
        return current + self.min_delta < reference

    def current(self, logs) -> float | None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"{type(self).__name__}: {self.monitor!r} is not among the logs "
                          f"({', '.join(sorted(logs or {}))})", stacklevel=3)
        return value


class EarlyStopping(_Monitor):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs (Keras 3's
    rule); `restore_best_weights` puts back the best epoch's weights when training ends."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__(monitor, mode, min_delta)
        self.patience, self.verbose = int(patience), verbose
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = int(start_from_epoch)

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best: float | None = None
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch, logs=None):
        current = self.current(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self.improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_Monitor):
    """Save the model (or only its weights) after each epoch, or only when `monitor`
    improves; `filepath` may hold `{epoch}` and log keys, e.g. 'ckpt-{epoch:02d}.npz'."""

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto"):
        super().__init__(monitor, mode)
        self.filepath, self.verbose = str(filepath), verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.best: float | None = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = self.current(logs)
            if current is None or (isinstance(current, float) and math.isnan(current)):
                return
            if not self.improved(current, self.best):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class LambdaCallback(Callback):
    """A callback from plain functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ...)."""

    def __init__(self, **hooks):
        super().__init__()
        for name, hook in hooks.items():
            if not hasattr(Callback, name):
                raise ValueError(f"LambdaCallback: unknown hook {name!r}")
            setattr(self, name, hook)


class TerminateOnNaN(Callback):
    """Stop training when a batch's loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss, terminating training")
            self.model.stop_training = True


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by `factor` when `monitor` has not improved by
    `min_delta` for `patience` epochs, then wait `cooldown` epochs; never below `min_lr`
    (Keras 3's rule). Adds `learning_rate` to the epoch's logs."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0):
        super().__init__(monitor, mode, min_delta)
        if float(factor) >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be below 1, got {factor}")
        self.factor, self.patience, self.verbose = float(factor), int(patience), verbose
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.wait = self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(optimizer.learning_rate)
        current = self.current(logs)
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self.improved(current, self.best):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce(optimizer, epoch):
                self.cooldown_counter, self.wait = self.cooldown, 0

    def _reduce(self, optimizer, epoch: int) -> bool:
        old = float(optimizer.learning_rate)
        if not old > np.float32(self.min_lr):
            return False
        new = max(old * self.factor, self.min_lr)
        optimizer.learning_rate = new
        if self.verbose:
            print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
        return True


class LearningRateScheduler(Callback):
    """Set the learning rate before each epoch to `schedule(epoch, lr)` (or
    `schedule(epoch)`); adds `learning_rate` to the epoch's logs."""

    def __init__(self, schedule, verbose: int = 0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose
        self._takes_lr = _positional_count(schedule) >= 2

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        rate = self.schedule(epoch, float(optimizer.learning_rate)) if self._takes_lr \
            else self.schedule(epoch)
        if not isinstance(rate, (int, float, np.floating, np.integer)) or \
                isinstance(rate, bool) or not math.isfinite(float(rate)):
            raise ValueError(f"LearningRateScheduler: schedule({epoch}) gave {rate!r}; it "
                             f"must return a finite number")
        optimizer.learning_rate = float(rate)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{float(rate)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


def _positional_count(function) -> int:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):           # a builtin without a signature
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return 2
    return sum(p.kind in kinds for p in parameters)


class CSVLogger(Callback):
    """One CSV row per epoch: `epoch` then the logs' keys (sorted, fixed by the first
    epoch). `append=True` continues an existing file without a second header."""

    def __init__(self, filename, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, append
        self.keys: list[str] | None = None
        self._file = None
        self._writer = None

    def on_train_begin(self, logs=None):
        header_needed = not (self.append and os.path.exists(self.filename) and
                             os.path.getsize(self.filename) > 0)
        self._file = open(self.filename, "a" if self.append else "w", newline="",
                          encoding="utf-8")
        self._header_needed = header_needed
        self.keys, self._writer = None, None

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.keys is None:
            self.keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self.keys,
                                          delimiter=self.separator, extrasaction="ignore")
            if self._header_needed:
                self._writer.writeheader()
        row = {"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}}
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


from graphc.nn.eventlog import TensorBoard  # noqa: E402,F401  (it builds on Callback)
