"""Keras's AUC metric: the area under the ROC (or precision-recall) curve from confusion
counts at fixed thresholds.

Each step counts, at every threshold, true and false positives and negatives (a prediction
is positive when it is strictly above the threshold; every prediction element is one
example, as Keras's multi_label=False); the host sums the counts over the epoch and takes
the Riemann sum once, so the epoch's value is Keras's, not an average of batch values.
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.nn.metrics import Metric, example_weights

EPSILON = 1e-7
CURVES = ("ROC", "PR")
SUMMATIONS = ("interpolation", "minoring", "majoring")


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0 (Keras's divide_no_nan)."""
    safe = np.where(b == 0, 1.0, b)
    return np.where(b == 0, 0.0, a / safe)


class AUC(Metric):
    """AUC(num_thresholds=200, curve='ROC', summation_method='interpolation', name=None,
    thresholds=None, from_logits=False), Keras 3's defaults and rules."""

    default_name = "auc"
    n_counts = 4

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name: str | None = None,
                 thresholds=None, from_logits: bool = False):
        super().__init__(name, kind="binary", from_logits=from_logits)
        curve = str(curve).upper()
        if curve not in CURVES:
            raise ValueError(f"AUC: curve must be one of {CURVES}, got {curve!r}")
        if summation_method not in SUMMATIONS:
            raise ValueError(f"AUC: summation_method must be one of {SUMMATIONS}, got "
                             f"{summation_method!r}")
        self.curve, self.summation_method = curve, summation_method
        self.given_thresholds = None if thresholds is None else sorted(float(t) for t in
                                                                       thresholds)
        if self.given_thresholds is None:
            if int(num_thresholds) <= 1:
                raise ValueError(f"AUC: num_thresholds must be an integer > 1, got "
                                 f"{num_thresholds}")
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        else:
            inner = self.given_thresholds
        self.thresholds = np.array([-EPSILON] + inner + [1.0 + EPSILON], np.float32)
        self.num_thresholds = len(self.thresholds)

    def resolve(self, loss) -> None:
        """The kind is always binary; from_logits is the metric's own setting (Keras)."""

    def counts(self, y_true, y_pred, w):
        pred = gc.sigmoid(y_pred) if self.from_logits else y_pred
        labels = gc.cast(y_true, pred.dtype)
        if labels.shape != pred.shape and labels.size == pred.size:
            labels = gc.reshape(labels, pred.shape)
        batch = pred.shape[0]
        pred = gc.reshape(pred, (batch, -1, 1))
        labels = gc.reshape(labels, (batch, -1, 1))
        weights = example_weights(w, pred)
        positive = gc.cast(gc.greater(pred, gc.constant(self.thresholds)), pred.dtype)
        axes = (0, 1)
        return [gc.sum(weights * labels * positive, axis=axes),
                gc.sum(weights * (1.0 - labels) * positive, axis=axes),
                gc.sum(weights * (1.0 - labels) * (1.0 - positive), axis=axes),
                gc.sum(weights * labels * (1.0 - positive), axis=axes)]

    def result(self, totals) -> float:
        tp, fp, tn, fn = (np.asarray(t, np.float64) for t in totals)
        if self.curve == "PR" and self.summation_method == "interpolation":
            return float(_interpolated_pr_auc(tp, fp, fn))
        recall = _divide(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide(fp, fp + tn), recall
        else:
            x, y = recall, _divide(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.sum((x[:-1] - x[1:]) * heights))

    def get_config(self) -> dict:
        config = {"num_thresholds": self.num_thresholds, "curve": self.curve,
                  "summation_method": self.summation_method, "name": self.name,
                  "from_logits": self.from_logits}
        if self.given_thresholds is not None:
            config["thresholds"] = self.given_thresholds
            del config["num_thresholds"]
        return config


def _interpolated_pr_auc(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """Davis & Goadrich's interpolation of the precision-recall curve between thresholds
    (Keras's interpolate_pr_auc)."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _divide(dtp, np.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = np.where(both, _divide(p[:-1], np.maximum(p[1:], 0)), 1.0)
    increments = _divide(slope * (dtp + intercept * np.log(ratio)),
                         np.maximum(tp[1:] + fn[1:], 0))
    return float(np.sum(increments))
