"""Keras's metric names (sparse_categorical_accuracy, categorical_accuracy, binary_accuracy,
top_k_categorical_accuracy, sparse_top_k_categorical_accuracy, auc): epoch values against
numpy transcriptions of Keras's rules and scikit-learn, through evaluate (padded last
batches included), on the interpreter and the device."""
from __future__ import annotations

import numpy as np
import pytest

from graphc import nn
from graphc.nn import metrics as nn_metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _identity_model(shape, activation=None):
    """A model without weights: predictions are activation(x), so the metric sees `x`."""
    layers = [nn.Input(shape)] + ([nn.Activation(activation)] if activation else [])
    layers += [nn.Reshape(shape)]
    return nn.Sequential(layers)


def _evaluate(model, loss, metrics, x, y, device="interpret", batch_size=8):
    model.compile("sgd", loss, metrics, device=device)
    return model.evaluate(x, y, batch_size=batch_size, return_dict=True)


def _scores(n=29, classes=6, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.random((n, classes)).astype(np.float32)
    scores /= scores.sum(1, keepdims=True)
    labels = rng.integers(0, classes, n).astype(np.int32)
    return scores, labels


def test_accuracy_names_fix_the_kind():
    scores, labels = _scores()
    onehot = np.eye(6, dtype=np.float32)[labels]
    model = _identity_model((6,))
    expected = float(np.mean(scores.argmax(1) == labels))
    logs = _evaluate(model, "sparse_categorical_crossentropy",
                     ["sparse_categorical_accuracy"], scores, labels)
    assert logs["sparse_categorical_accuracy"] == pytest.approx(expected)
    logs = _evaluate(model, "categorical_crossentropy", ["categorical_accuracy"], scores,
                     onehot)
    assert logs["categorical_accuracy"] == pytest.approx(expected)
    # the kind comes from the name, not the loss: mse on one-hot targets
    logs = _evaluate(model, "mse", ["categorical_accuracy", "accuracy"], scores, onehot)
    assert logs["categorical_accuracy"] == pytest.approx(expected)


def _keras_in_top_k(scores, labels, k):
    """tf.math.in_top_k: fewer than k classes score strictly higher than the target."""
    target = scores[np.arange(len(labels)), labels]
    return (scores > target[:, None]).sum(1) < k


@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_k_accuracy_matches_in_top_k_and_sklearn(k):
    scores, labels = _scores(seed=k)
    model = _identity_model((6,))
    sparse = nn_metrics.SparseTopKCategoricalAccuracy(k=k)
    dense = nn_metrics.TopKCategoricalAccuracy(k=k, name="topk")
    logs = _evaluate(model, "mse", [dense], scores, np.eye(6, dtype=np.float32)[labels])
    expected = float(np.mean(_keras_in_top_k(scores, labels, k)))
    assert logs["topk"] == pytest.approx(expected)
    assert expected == pytest.approx(sklearn_metrics.top_k_accuracy_score(
        labels, scores, k=k, labels=np.arange(6)))
    logs = _evaluate(model, "sparse_categorical_crossentropy", [sparse], scores, labels)
    assert logs["sparse_top_k_categorical_accuracy"] == pytest.approx(expected)


def test_top_k_counts_ties_at_the_boundary_as_hits():
    scores = np.array([[0.4, 0.3, 0.3], [0.2, 0.2, 0.6]], np.float32)
    labels = np.array([2, 0], np.int32)
    model = _identity_model((3,))
    logs = _evaluate(model, "sparse_categorical_crossentropy",
                     [nn_metrics.SparseTopKCategoricalAccuracy(k=2)], scores, labels)
    assert logs["sparse_top_k_categorical_accuracy"] == 1.0
    assert _keras_in_top_k(scores, labels, 2).all()


def test_binary_accuracy_threshold():
    rng = np.random.default_rng(4)
    p = rng.random((21, 1)).astype(np.float32)
    y = rng.integers(0, 2, 21).astype(np.float32)
    model = _identity_model((1,))
    logs = _evaluate(model, "binary_crossentropy",
                     ["binary_accuracy", nn_metrics.BinaryAccuracy("at_0_7", threshold=0.7)],
                     p, y)
    assert logs["binary_accuracy"] == pytest.approx(np.mean((p[:, 0] > 0.5) == (y > 0.5)))
    assert logs["at_0_7"] == pytest.approx(np.mean((p[:, 0] > 0.7) == (y > 0.7)))


def _keras_auc(y, p, num_thresholds=200, curve="ROC", summation="interpolation"):
    """Keras 3's AUC.result over confusion counts at its thresholds, in numpy float64."""
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    thresholds = np.array([-1e-7] + inner + [1 + 1e-7], np.float32)
    y, p = y.reshape(-1, 1), p.reshape(-1, 1)
    pos = p > thresholds
    tp = (pos & (y == 1)).sum(0).astype(float)
    fp = (pos & (y == 0)).sum(0).astype(float)
    tn = (~pos & (y == 0)).sum(0).astype(float)
    fn = (~pos & (y == 1)).sum(0).astype(float)

    def div(a, b):
        return np.divide(a, b, out=np.zeros_like(a), where=b != 0)

    if curve == "ROC":
        x, h = div(fp, fp + tn), div(tp, tp + fn)
    else:
        x, h = div(tp, tp + fn), div(tp, tp + fp)
    heights = {"interpolation": (h[:-1] + h[1:]) / 2, "minoring": np.minimum(h[:-1], h[1:]),
               "majoring": np.maximum(h[:-1], h[1:])}[summation]
    return float(np.sum((x[:-1] - x[1:]) * heights))


@pytest.mark.parametrize("curve,summation", [("ROC", "interpolation"), ("ROC", "minoring"),
                                             ("PR", "majoring")])
def test_auc_matches_keras_rule_and_sklearn(curve, summation):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 61).astype(np.float32)
    p = np.clip(0.35 * y + 0.65 * rng.random(61), 0, 1).astype(np.float32)[:, None]
    model = _identity_model((1,))
    metric = nn_metrics.AUC(curve=curve, summation_method=summation, name="area")
    logs = _evaluate(model, "binary_crossentropy", [metric], p, y, batch_size=16)
    assert logs["area"] == pytest.approx(_keras_auc(y, p, curve=curve,
                                                    summation=summation), abs=1e-6)
    if (curve, summation) == ("ROC", "interpolation"):
        assert logs["area"] == pytest.approx(sklearn_metrics.roc_auc_score(y, p[:, 0]),
                                             abs=5e-3)


def test_auc_from_logits_and_interpolated_pr():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 40).astype(np.float32)
    logits = (2 * y - 1 + rng.standard_normal(40)).astype(np.float32)[:, None]
    model = _identity_model((1,))
    logs = _evaluate(model, "binary_crossentropy",
                     [nn_metrics.AUC(from_logits=True, name="roc"),
                      nn_metrics.AUC(curve="PR", name="pr")], 1 / (1 + np.exp(-logits)), y)
    probs = 1 / (1 + np.exp(-logits))
    assert logs["roc"] == pytest.approx(_keras_auc(y, 1 / (1 + np.exp(-probs))), abs=1e-6)
    # interpolated PR lies near the average precision
    assert logs["pr"] == pytest.approx(sklearn_metrics.average_precision_score(y, probs[:, 0]),
                                       abs=0.05)


@pytest.mark.opencl
def test_metric_names_on_device(cl_device):
    scores, labels = _scores(n=37, seed=9)
    model = _identity_model((6,))
    logs = _evaluate(model, "sparse_categorical_crossentropy",
                     ["sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"],
                     scores, labels, device=cl_device)
    assert logs["sparse_categorical_accuracy"] == pytest.approx(
        np.mean(scores.argmax(1) == labels))
    assert logs["sparse_top_k_categorical_accuracy"] == pytest.approx(
        np.mean(_keras_in_top_k(scores, labels, 5)))
    y = (labels % 2).astype(np.float32)
    p = scores[:, :1] * 2
    model = _identity_model((1,))
    logs = _evaluate(model, "binary_crossentropy", ["auc"], np.clip(p, 0, 1), y,
                     device=cl_device)
    assert logs["auc"] == pytest.approx(_keras_auc(y, np.clip(p, 0, 1)), abs=1e-6)


@pytest.mark.parametrize("spec", [
    "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy", "auc",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
    nn_metrics.AUC(num_thresholds=50, curve="PR", name="pr"),
    nn_metrics.AUC(thresholds=[0.2, 0.5]),
    nn_metrics.SparseTopKCategoricalAccuracy(k=3, name="top3"),
    nn_metrics.BinaryAccuracy(threshold=0.2),
])
def test_metrics_serialize_and_come_back(spec):
    metric = nn_metrics.get(spec)
    saved = nn_metrics.serialize(metric)
    if isinstance(spec, str):
        assert saved == spec
    again = nn_metrics.get(saved)
    assert type(again) is type(metric) and again.get_config() == metric.get_config()


def test_auc_settings_are_checked():
    with pytest.raises(ValueError, match="curve"):
        nn_metrics.AUC(curve="GAIN")
    with pytest.raises(ValueError, match="num_thresholds"):
        nn_metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="k must"):
        nn_metrics.TopKCategoricalAccuracy(k=0)


def test_early_stopping_maximizes_keras_accuracy_names():
    for name in ("val_sparse_categorical_accuracy", "categorical_accuracy", "val_auc",
                 "top_k_categorical_accuracy"):
        assert nn.EarlyStopping(monitor=name).maximize
    assert not nn.EarlyStopping(monitor="val_loss").maximize
