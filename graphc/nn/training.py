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
from graphc.errors import GraphcError
from graphc.ir import Tensor
from graphc.nn import layer_options, mixed_precision, regularizers
from graphc.nn import losses as nn_losses
from graphc.nn.checks import output_names, warn_if_not_probabilities
from graphc.sites import name_scope

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
    if isinstance(device, str) and device == DEVICE_INTERPRET:
        return InterpretedFunction(inputs, outputs, updates, name)
    return gc.function(inputs, outputs, updates=updates, device=device, name=name)


def align_targets(y: Tensor, pred: Tensor) -> Tensor:
    """Targets of shape (batch,) against predictions (batch, 1) are reshaped to match."""
    if y.ndim + 1 == pred.ndim and pred.shape[-1] == 1 and y.size == pred.size:
        return gc.reshape(y, pred.shape)
    return y


class Steps:
    """The compiled functions of a compiled model, cached by batch size and target spec.

    A train or eval step takes (xs..., y, mask) or, for data with sample weights,
    (xs..., y, mask, sample_weight): `mask` is 1 for real rows, 0 for padding. The loss is
    Keras's: sum(mask * sample_weight * per-example loss) / (real rows); metrics count
    every real row alike (Keras's `metrics`, not `weighted_metrics`).
    """

    def __init__(self, model, optimizer, loss, metrics, device):
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self.metrics, self.device = metrics, device
        self.site = getattr(model, "compile_site", "")
        self.train_cache: dict = {}
        self.eval_cache: dict = {}
        self.predict_cache: dict = {}
        self.checked_probabilities = False
        interpreted = isinstance(device, str) and device == DEVICE_INTERPRET
        if not interpreted and mixed_precision.computes_in_float16(model):
            mixed_precision.check_float16_device(device)

    def _placeholders(self, batch: int) -> list[Tensor]:
        """One per model input, named as the input (feed errors then name it)."""
        return [gc.placeholder((batch,) + t.example_shape, t.dtype, name=t.name or f"x{i}")
                for i, t in enumerate(self.model.inputs)]

    def _loss_and_counts(self, xs, y, mask, weights, training: bool):
        """The batch loss plus the layers' added losses and weight penalties, and the counts
        the host adds up."""
        self.model.pop_losses()
        with regularizers.example_mask(mask):
            pred = self.model.forward(xs, training=training)[0]
        self._check_probabilities(pred)
        if pred.dtype.kind == "f" and pred.dtype.itemsize < 4:
            pred = gc.cast(pred, gc.float32)        # a float16 model's loss and metrics
        with name_scope(self.loss.name, self.site):
            y = align_targets(y, pred)
            per_example = _per_example(self.loss.call(y, pred), mask.shape[0], self.loss)
            examples = gc.sum(mask)
            weighted = per_example * (mask if weights is None else mask * weights)
            loss = gc.sum(weighted) / examples
            added = self.model.pop_losses() + layer_options.weight_penalties(self.model)
            for value in added:
                loss = loss + gc.cast(gc.sum(value), gc.float32)
            counts = [loss * examples, examples]
        for metric in self.metrics:
            with name_scope(metric.name, self.site):
                counts.extend(metric.counts(y, pred, mask))
        return loss, counts

    def _check_probabilities(self, pred: Tensor) -> None:
        """Keras's warning, once: a probability loss given outputs that are not probabilities."""
        if not self.checked_probabilities:
            self.checked_probabilities = True
            warn_if_not_probabilities(self.model, self.loss, pred)

    def _inputs(self, batch: int, y_spec, weighted: bool):
        self._require_one_output()
        xs = self._placeholders(batch)
        y = gc.placeholder((batch,) + tuple(y_spec[0]), y_spec[1], name="y")
        mask = gc.placeholder((batch,), gc.float32, name="mask")
        weights = gc.placeholder((batch,), gc.float32, name="sample_weight") if weighted \
            else None
        return xs, y, mask, weights

    def _require_one_output(self) -> None:
        if len(self.model.outputs) > 1:
            names = ", ".join(output_names(self.model))
            raise GraphcError(f"model {self.model.name} has {len(self.model.outputs)} outputs"
                              f" ({names}): fit and evaluate train one output (join them with"
                              f" a Concatenate layer and a loss that splits them)")

    @staticmethod
    def _feeds(xs, y, mask, weights) -> list:
        return xs + [y, mask] + ([] if weights is None else [weights])

    def train(self, batch: int, y_spec, weighted: bool = False):
        """The train step for this batch size: (xs..., y, mask[, sample_weight]) -> counts;
        it updates the weights, the optimizer's state and the layers' state."""
        key = (batch, y_spec, weighted)
        if key not in self.train_cache:
            xs, y, mask, weights = self._inputs(batch, y_spec, weighted)
            self.model.pop_updates()
            loss, counts = self._loss_and_counts(xs, y, mask, weights, training=True)
            layer_updates = self.model.pop_updates()
            with name_scope(self.optimizer.name, self.site):
                updates = self.optimizer.updates(loss, self.model.trainable_weights,
                                                 disconnected="zero")
                updates = layer_options.constrained(self.model, updates) + layer_updates
            self.train_cache[key] = compile_function(self._feeds(xs, y, mask, weights), counts,
                                                     updates, self.device, f"train_step_{batch}")
        return self.train_cache[key]

    def evaluate(self, batch: int, y_spec, weighted: bool = False):
        """The eval step: (xs..., y, mask[, sample_weight]) -> counts, no updates."""
        key = (batch, y_spec, weighted)
        if key not in self.eval_cache:
            xs, y, mask, weights = self._inputs(batch, y_spec, weighted)
            _, counts = self._loss_and_counts(xs, y, mask, weights, training=False)
            self.model.pop_updates()
            self.eval_cache[key] = compile_function(self._feeds(xs, y, mask, weights), counts,
                                                    [], self.device, f"eval_step_{batch}")
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
