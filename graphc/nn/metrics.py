"""Metrics from counts: each batch's counts are extra outputs of the compiled step, summed
on the host over the epoch, and turned into a value once (so an epoch's accuracy is exact,
not an average of batch averages). Every count is weighted by the per-example weight the
step gets (0 for the rows that pad a last partial batch).

Kinds, chosen like Keras's 'accuracy' from the compiled loss (else from shapes):
binary (one output unit, or binary_crossentropy; predictions above 0.5, or above 0 for
logits, are positive), categorical (one-hot targets) and sparse (integer labels).
precision / recall / f1 are binary for the binary kind; otherwise macro averages over the
classes that occur among labels or predictions, with 0 for 0/0 (scikit-learn's
average='macro', zero_division=0).
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc import losses as loss_fns
from graphc.ir import Tensor
from graphc.nn import losses as nn_losses


def example_weights(w: Tensor, like: Tensor) -> Tensor:
    """Per-example weights (batch,) broadcast against a (batch, ...) tensor."""
    return gc.reshape(w, (w.shape[0],) + (1,) * (like.ndim - 1)) if like.ndim > 1 else w


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


class Metric:
    """Base: `counts` builds batch counts (graph), `result` turns epoch totals into a value."""

    def __init__(self, name: str | None = None, kind: str | None = None,
                 from_logits: bool = False):
        self.name = name or self.default_name
        self.kind = kind
        self.from_logits = from_logits

    default_name = "metric"
    n_counts = 2                        # how many count tensors `counts` returns

    def resolve(self, loss) -> None:
        """Take the kind (binary/categorical/sparse) and from_logits from the compiled loss."""
        if self.kind is not None:
            return
        self.kind = {nn_losses.BinaryCrossentropy: "binary",
                     nn_losses.CategoricalCrossentropy: "categorical",
                     nn_losses.SparseCategoricalCrossentropy: "sparse"}.get(type(loss))
        self.from_logits = bool(getattr(loss, "from_logits", False))

    def kind_for(self, y_true: Tensor, y_pred: Tensor) -> str:
        """The kind, from the loss or else from shapes."""
        if self.kind is not None:
            return self.kind
        if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
            return "binary"
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == y_pred.shape[-1]:
            return "categorical"
        return "sparse"

    def counts(self, y_true: Tensor, y_pred: Tensor, w: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def result(self, totals: list[np.ndarray]) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"name": self.name, "kind": self.kind, "from_logits": self.from_logits}


def _binary_hits(metric: Metric, y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted and true positives as float tensors of y_pred's shape."""
    threshold = 0.0 if metric.from_logits else 0.5
    predicted = gc.cast(gc.greater(y_pred, threshold), gc.float32)
    if y_true.shape != y_pred.shape and y_true.size == y_pred.size:
        y_true = gc.reshape(y_true, y_pred.shape)
    actual = gc.cast(gc.greater(gc.cast(y_true, gc.float32), 0.5), gc.float32)
    return predicted, actual


def _class_indices(kind: str, y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted and true class indices, each of y_pred's shape without the class axis."""
    predicted = gc.argmax(y_pred, axis=-1)
    if kind == "categorical":
        return predicted, gc.argmax(y_true, axis=-1)
    labels = y_true
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = gc.squeeze(labels, axis=-1)
    return predicted, gc.cast(labels, gc.int32)


class Accuracy(Metric):
    """Fraction of correct predictions (binary, categorical or sparse, as the loss says)."""

    default_name = "accuracy"

    def counts(self, y_true, y_pred, w):
        kind = self.kind_for(y_true, y_pred)
        if kind == "binary":
            predicted, actual = _binary_hits(self, y_true, y_pred)
            hits = gc.cast(gc.equal(predicted, actual), gc.float32)
        else:
            predicted, actual = _class_indices(kind, y_true, y_pred)
            hits = gc.cast(gc.equal(predicted, actual), gc.float32)
        weights = example_weights(w, hits) * gc.ones_like(hits)
        return [gc.sum(hits * weights), gc.sum(weights)]

    def result(self, totals):
        return _ratio(totals[0], totals[1])


class BinaryAccuracy(Accuracy):
    """Keras's binary_accuracy: predictions above `threshold` are positive."""

    default_name = "binary_accuracy"

    def __init__(self, name: str | None = None, threshold: float = 0.5):
        super().__init__(name, kind="binary")
        self.threshold = float(threshold)

    def counts(self, y_true, y_pred, w):
        if y_true.shape != y_pred.shape and y_true.size == y_pred.size:
            y_true = gc.reshape(y_true, y_pred.shape)
        predicted = gc.greater(y_pred, self.threshold)
        actual = gc.greater(gc.cast(y_true, gc.float32), self.threshold)
        hits = gc.cast(gc.equal(predicted, actual), gc.float32)
        weights = example_weights(w, hits) * gc.ones_like(hits)
        return [gc.sum(hits * weights), gc.sum(weights)]

    def get_config(self) -> dict:
        return {"name": self.name, "threshold": self.threshold}


class TopKCategoricalAccuracy(Accuracy):
    """The true class is among the k highest scores: fewer than k classes score strictly
    higher (ties at the boundary count as in the top k, as tf.math.in_top_k)."""

    default_name = "top_k_categorical_accuracy"
    sparse = False

    def __init__(self, k: int = 5, name: str | None = None):
        super().__init__(name, kind="sparse" if self.sparse else "categorical")
        if int(k) < 1:
            raise ValueError(f"{type(self).__name__}: k must be at least 1, got {k}")
        self.k = int(k)

    def counts(self, y_true, y_pred, w):
        classes = y_pred.shape[-1]
        _, actual = _class_indices(self.kind, y_true, y_pred)
        true_score = gc.sum(y_pred * gc.one_hot(actual, classes, dtype=y_pred.dtype), axis=-1,
                            keepdims=True)
        higher = gc.sum(gc.cast(gc.greater(y_pred, true_score), gc.float32), axis=-1)
        hits = gc.cast(gc.less(higher, float(self.k)), gc.float32)
        weights = example_weights(w, hits) * gc.ones_like(hits)
        return [gc.sum(hits * weights), gc.sum(weights)]

    def get_config(self) -> dict:
        return {"k": self.k, "name": self.name}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """Top-k accuracy of integer labels."""

    default_name = "sparse_top_k_categorical_accuracy"
    sparse = True


class _Confusion(Metric):
    """True positives, false positives, false negatives: scalars, or per class."""

    n_counts = 3

    def counts(self, y_true, y_pred, w):
        kind = self.kind_for(y_true, y_pred)
        if kind == "binary":
            predicted, actual = _binary_hits(self, y_true, y_pred)
            axes = None
        else:
            classes = y_pred.shape[-1]
            pred_index, true_index = _class_indices(kind, y_true, y_pred)
            predicted = gc.one_hot(pred_index, classes, dtype=gc.float32)
            actual = gc.one_hot(true_index, classes, dtype=gc.float32)
            axes = tuple(range(predicted.ndim - 1))
        weights = example_weights(w, predicted)
        return [gc.sum(weights * predicted * actual, axis=axes),
                gc.sum(weights * predicted * (1.0 - actual), axis=axes),
                gc.sum(weights * (1.0 - predicted) * actual, axis=axes)]

    def result(self, totals):
        tp, fp, fn = (np.asarray(t, np.float64) for t in totals)
        if tp.ndim == 0:
            return self.score(float(tp), float(fp), float(fn))
        present = (tp + fp + fn) > 0
        scores = [self.score(*c) for c in zip(tp[present], fp[present], fn[present])]
        return float(np.mean(scores)) if scores else 0.0

    def score(self, tp: float, fp: float, fn: float) -> float:
        raise NotImplementedError


class Precision(_Confusion):
    """tp / (tp + fp)."""

    default_name = "precision"

    def score(self, tp, fp, fn):
        return _ratio(tp, tp + fp)


class Recall(_Confusion):
    """tp / (tp + fn)."""

    default_name = "recall"

    def score(self, tp, fp, fn):
        return _ratio(tp, tp + fn)


class F1Score(_Confusion):
    """2 tp / (2 tp + fp + fn)."""

    default_name = "f1"

    def score(self, tp, fp, fn):
        return _ratio(2 * tp, 2 * tp + fp + fn)


class MeanMetric(Metric):
    """The weighted mean of a per-example function (mse, mae)."""

    def __init__(self, function, name: str):
        super().__init__(name)
        self.function = function

    def counts(self, y_true, y_pred, w):
        if y_true.shape != y_pred.shape and y_true.size == y_pred.size:
            y_true = gc.reshape(y_true, y_pred.shape)
        values = self.function(y_true, y_pred)
        weights = example_weights(w, values) * gc.ones_like(values)
        return [gc.sum(values * weights), gc.sum(weights)]

    def result(self, totals):
        return _ratio(totals[0], totals[1])


FACTORIES = {
    "accuracy": Accuracy, "acc": Accuracy,
    "sparse_categorical_accuracy": lambda name: Accuracy(name, kind="sparse"),
    "categorical_accuracy": lambda name: Accuracy(name, kind="categorical"),
    "binary_accuracy": BinaryAccuracy,
    "top_k_categorical_accuracy": lambda name: TopKCategoricalAccuracy(name=name),
    "sparse_top_k_categorical_accuracy": lambda name: SparseTopKCategoricalAccuracy(name=name),
    "precision": Precision, "recall": Recall, "f1": F1Score, "f1_score": F1Score,
    "auc": lambda name: AUC(name=name),
    "mse": lambda name: MeanMetric(loss_fns.mse, name),
    "mean_squared_error": lambda name: MeanMetric(loss_fns.mse, name),
    "mae": lambda name: MeanMetric(loss_fns.mae, name),
    "mean_absolute_error": lambda name: MeanMetric(loss_fns.mae, name),
}


def get(identifier) -> Metric:
    """A metric from a Keras name ('accuracy', 'sparse_categorical_accuracy', 'auc', ...), a
    saved config, or a Metric (as is)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str) and identifier in FACTORIES:
        return FACTORIES[identifier](name=identifier)
    if isinstance(identifier, dict) and identifier.get("class_name") in CLASSES:
        return CLASSES[identifier["class_name"]](**identifier["config"])
    raise ValueError(f"unknown metric {identifier!r} (known: {', '.join(FACTORIES)})")


from graphc.nn.auc import AUC  # noqa: E402  (it builds on Metric)

CLASSES = {cls.__name__: cls for cls in (
    Accuracy, BinaryAccuracy, TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy,
    Precision, Recall, F1Score, AUC)}


def serialize(metric: Metric):
    """A built-in metric's name when it has that name's settings, else its class and
    settings."""
    made = FACTORIES[metric.name](name=metric.name) if metric.name in FACTORIES else None
    if made is not None and type(made) is type(metric) and \
            made.get_config() == metric.get_config():
        return metric.name
    if type(metric).__name__ not in CLASSES:
        raise ValueError(f"cannot save metric {metric.name!r}: only built-in metrics are saved")
    return {"class_name": type(metric).__name__, "config": metric.get_config()}
