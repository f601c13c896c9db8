"""The compiled steps of a model: one train, one eval and one predict function per batch size.

A train step is one gc.function: forward (training=True), the loss, the optimizer's updates
and the layers' state updates (BatchNormalization's running statistics). Every batch has the
compiled batch size: a last partial batch is padded with real rows (repeated from the data)
whose per-example weight is 0, so neither the loss, sum(w * l) / sum(w), nor the metrics
see them, and no second program is compiled. Each step returns counts (the weighted loss
sum, the weight sum, each metric's counts) that the host adds up over an epoch.
"""
from __future__ import annotations

import warnings

import numpy as np

import graphc as gc
from graphc.ir import Tensor
from graphc.nn import losses as nn_losses

DEVICE_INTERPRET = "interpret"


class InterpretedFunction:
    """gc.function's calling convention run by the reference interpreter (no device)."""

    def __init__(self, inputs, outputs, updates=(), name: str = "function"):
        self.inputs, self.name = list(inputs), name
        self.single = isinstance(outputs, Tensor)
        self.outputs = [outputs] if self.single else list(outputs)
        self.updates = list(updates)
        self.calls = 0

    def __call__(self, *feeds):
        """Every output and new value from the current state, then the assignments."""
        values = gc.interpret(self.outputs + [v for _, v in self.updates],
                              dict(zip(self.inputs, feeds)), step=self.calls)
        self.calls += 1
        for (variable, _), value in zip(self.updates, values[len(self.outputs):]):
            variable.set_value(value)
        results = values[:len(self.outputs)]
        return results[0] if self.single else results


def compile_function(inputs, outputs, updates, device, name: str):
    """gc.function on `device`, or the interpreter for device='interpret'."""
    if device == DEVICE_INTERPRET:
        return InterpretedFunction(inputs, outputs, updates, name)
    return gc.function(inputs, outputs, updates=updates, device=device, name=name)


def align_targets(y: Tensor, pred: Tensor) -> Tensor:
    """Targets of shape (batch,) against predictions (batch, 1) are reshaped to match."""
    if y.ndim + 1 == pred.ndim and pred.shape[-1] == 1 and y.size == pred.size:
        return gc.reshape(y, pred.shape)
    return y


class Steps:
    """The compiled functions of a compiled model, cached by batch size and target spec."""

    def __init__(self, model, optimizer, loss, metrics, device):
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self.metrics, self.device = metrics, device
        self.train_cache: dict = {}
        self.eval_cache: dict = {}
        self.predict_cache: dict = {}

    def _placeholders(self, batch: int) -> list[Tensor]:
        return [gc.placeholder((batch,) + t.example_shape, t.dtype, name=f"x{i}")
                for i, t in enumerate(self.model.inputs)]

    def _loss_and_counts(self, xs, y, w, training: bool) -> tuple[Tensor, list[Tensor]]:
        """The batch loss, sum(w * l) / sum(w) plus the layers' added losses, and counts."""
        self.model.pop_losses()
        pred = self.model.forward(xs, training=training)[0]
        y = align_targets(y, pred)
        per_example = _per_example(self.loss.call(y, pred), w.shape[0], self.loss)
        weight_sum = gc.sum(w)
        loss = gc.sum(per_example * w) / weight_sum
        for added in self.model.pop_losses():
            loss = loss + gc.cast(gc.sum(added), gc.float32)
        counts = [loss * weight_sum, weight_sum]
        for metric in self.metrics:
            counts.extend(metric.counts(y, pred, w))
        return loss, counts

    def _inputs(self, batch: int, y_spec) -> tuple[list, Tensor, Tensor]:
        xs = self._placeholders(batch)
        y = gc.placeholder((batch,) + tuple(y_spec[0]), y_spec[1], name="y")
        w = gc.placeholder((batch,), gc.float32, name="sample_weight")
        return xs, y, w

    def train(self, batch: int, y_spec):
        """The train step for this batch size: (xs..., y, w) -> counts; updates the state."""
        key = (batch, y_spec)
        if key not in self.train_cache:
            xs, y, w = self._inputs(batch, y_spec)
            self.model.pop_updates()
            loss, counts = self._loss_and_counts(xs, y, w, training=True)
            layer_updates = self.model.pop_updates()
            updates = self.optimizer.updates(loss, self.model.trainable_weights,
                                             disconnected="zero") + layer_updates
            self.train_cache[key] = compile_function(xs + [y, w], counts, updates,
                                                     self.device, f"train_step_{batch}")
        return self.train_cache[key]

    def evaluate(self, batch: int, y_spec):
        """The eval step: (xs..., y, w) -> counts, no updates."""
        key = (batch, y_spec)
        if key not in self.eval_cache:
            xs, y, w = self._inputs(batch, y_spec)
            _, counts = self._loss_and_counts(xs, y, w, training=False)
            self.model.pop_updates()
            self.eval_cache[key] = compile_function(xs + [y, w], counts, [], self.device,
                                                    f"eval_step_{batch}")
        return self.eval_cache[key]

    def predict(self, batch: int):
        """The predict step: xs... -> outputs."""
        if batch not in self.predict_cache:
            xs = self._placeholders(batch)
            outputs = self.model.forward(xs, training=False)
            self.model.pop_updates()
            self.model.pop_losses()
            self.predict_cache[batch] = compile_function(xs, outputs, [], self.device,
                                                         f"predict_step_{batch}")
        return self.predict_cache[batch]


def _per_example(values: Tensor, batch: int, loss) -> Tensor:
    """Per-example loss values (batch,): extra axes averaged, a scalar taken as is."""
    if values.ndim == 0:
        warnings.warn(f"loss {loss.name!r} returned a scalar: padded rows of a last partial"
                      f" batch count in it (return per-example values instead)", stacklevel=4)
        return gc.broadcast_to(values, (batch,))
    if values.shape[0] != batch:
        raise gc.ShapeError(f"loss {loss.name!r} returned shape {values.shape}: expected "
                            f"per-example values of leading size {batch}")
    if values.ndim > 1:
        values = gc.mean(values, axis=tuple(range(1, values.ndim)))
    return gc.cast(values, gc.float32)


class Totals:
    """Counts summed over an epoch on the host, turned into logs."""

    def __init__(self, metrics):
        self.metrics = metrics
        self.sums: list[np.ndarray] | None = None

    def add(self, counts) -> None:
        counts = [np.asarray(c, np.float64) for c in counts]
        self.sums = counts if self.sums is None else [s + c for s, c in zip(self.sums, counts)]

    def logs(self, prefix: str = "") -> dict[str, float]:
        """{'loss': ..., metric names: ...}, each name with `prefix` ('val_')."""
        if self.sums is None:
            return {}
        logs = {f"{prefix}loss": float(self.sums[0] / self.sums[1])}
        position = 2
        for metric in self.metrics:
            size = metric.n_counts
            logs[f"{prefix}{metric.name}"] = metric.result(self.sums[position:position + size])
            position += size
        return logs


def resolve_loss(loss) -> nn_losses.Loss:
    """compile's loss argument as a Loss."""
    if loss is None:
        raise ValueError("compile: a loss is needed (a name such as 'mse', a Loss or a function)")
    return nn_losses.get(loss)
