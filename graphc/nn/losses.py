"""Keras-style loss objects for `Model.compile`: settings (from_logits) plus a name.

`loss.call(y_true, y_pred)` gives per-example values (what compile weights and averages);
`loss(y_true, y_pred)` their mean. The math is gc.losses'.
"""
from __future__ import annotations

import graphc as gc
from graphc import losses as fn
from graphc.ir import Tensor


class Loss:
    """Base class: per-example values in `call`, the batch mean in `__call__`."""

    name = "loss"

    def call(self, y_true, y_pred) -> Tensor:
        raise NotImplementedError

    def __call__(self, y_true, y_pred) -> Tensor:
        return gc.mean(self.call(y_true, y_pred))

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Loss":
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


class _LogitsLoss(Loss):
    """A cross-entropy that may take logits."""

    def __init__(self, from_logits: bool = False):
        self.from_logits = bool(from_logits)

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits}


class MeanSquaredError(Loss):
    """mean((y_pred - y_true)**2) over the last axis."""

    name = "mean_squared_error"

    def call(self, y_true, y_pred) -> Tensor:
        return fn.mse(y_true, y_pred)


class MeanAbsoluteError(Loss):
    """mean(|y_pred - y_true|) over the last axis."""

    name = "mean_absolute_error"

    def call(self, y_true, y_pred) -> Tensor:
        return fn.mae(y_true, y_pred)


class BinaryCrossentropy(_LogitsLoss):
    """Binary cross-entropy of 0/1 (or soft) targets."""

    name = "binary_crossentropy"

    def call(self, y_true, y_pred) -> Tensor:
        return fn.binary_crossentropy(y_true, y_pred, from_logits=self.from_logits)


class CategoricalCrossentropy(_LogitsLoss):
    """Cross-entropy of one-hot (or soft) targets over the last axis."""

    name = "categorical_crossentropy"

    def call(self, y_true, y_pred) -> Tensor:
        return fn.categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits)


class SparseCategoricalCrossentropy(_LogitsLoss):
    """Cross-entropy of integer class labels over the last axis."""

    name = "sparse_categorical_crossentropy"

    def call(self, y_true, y_pred) -> Tensor:
        return fn.sparse_categorical_crossentropy(y_true, y_pred,
                                                  from_logits=self.from_logits)


class Huber(Loss):
    """0.5 e**2 for |e| <= delta, delta |e| - 0.5 delta**2 beyond, averaged over the last axis."""

    name = "huber_loss"

    def __init__(self, delta: float = 1.0):
        self.delta = float(delta)

    def call(self, y_true, y_pred) -> Tensor:
        return fn.huber(y_true, y_pred, self.delta)

    def get_config(self) -> dict:
        return {"delta": self.delta}


class KLDivergence(Loss):
    """sum(y_true * log(y_true / y_pred)) over the last axis (both clipped to [eps, 1])."""

    name = "kl_divergence"

    def call(self, y_true, y_pred) -> Tensor:
        return fn.kl_divergence(y_true, y_pred)


class Poisson(Loss):
    """y_pred - y_true * log(y_pred + eps), averaged over the last axis."""

    name = "poisson"

    def call(self, y_true, y_pred) -> Tensor:
        return fn.poisson(y_true, y_pred)


class Hinge(Loss):
    """max(1 - y_true * y_pred, 0) averaged over the last axis; 0/1 labels become -1/1."""

    name = "hinge"

    def call(self, y_true, y_pred) -> Tensor:
        return fn.hinge(y_true, y_pred)


class CosineSimilarity(Loss):
    """-cos(y_true, y_pred) along `axis`: -1 when they point the same way."""

    name = "cosine_similarity"

    def __init__(self, axis: int = -1):
        self.axis = int(axis)

    def call(self, y_true, y_pred) -> Tensor:
        return fn.cosine_similarity(y_true, y_pred, self.axis)

    def get_config(self) -> dict:
        return {"axis": self.axis}


class LossFunction(Loss):
    """A user function `fn(y_true, y_pred) -> per-example values` as a loss."""

    def __init__(self, function, name: str | None = None):
        self.function = function
        self.name = name or getattr(function, "__name__", "loss")

    def call(self, y_true, y_pred) -> Tensor:
        return self.function(y_true, y_pred)

    def get_config(self) -> dict:
        raise ValueError(f"loss {self.name!r} is a Python function: it cannot be saved by name"
                         f" (pass custom_objects={{{self.name!r}: fn}} to load_model)")


LOSSES = {cls.__name__: cls for cls in (MeanSquaredError, MeanAbsoluteError, BinaryCrossentropy,
                                        CategoricalCrossentropy, SparseCategoricalCrossentropy,
                                        Huber, KLDivergence, Poisson, Hinge, CosineSimilarity)}
ALIASES = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
           "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
           "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
           "categorical_crossentropy": CategoricalCrossentropy,
           "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
           "huber": Huber, "huber_loss": Huber, "kl_divergence": KLDivergence,
           "kld": KLDivergence, "kullback_leibler_divergence": KLDivergence,
           "poisson": Poisson, "hinge": Hinge, "cosine_similarity": CosineSimilarity}


def get(identifier) -> Loss:
    """A Loss from a name ('mse'), a config dict, a Loss (as is) or a function."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier not in ALIASES:
            raise ValueError(f"unknown loss {identifier!r} (known: {', '.join(ALIASES)})")
        return ALIASES[identifier]()
    if isinstance(identifier, dict):
        return LOSSES[identifier["class_name"]].from_config(identifier.get("config", {}))
    if callable(identifier):
        return LossFunction(identifier)
    raise ValueError(f"cannot make a loss of {identifier!r}")


def serialize(loss: Loss) -> dict:
    """{'class_name', 'config'} of a built-in loss; a function loss by its name."""
    if isinstance(loss, LossFunction):
        return {"function": loss.name}
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config: dict, custom_objects: dict | None = None) -> Loss:
    """The loss `serialize` described (functions from `custom_objects`)."""
    if "function" in config:
        name = config["function"]
        if not custom_objects or name not in custom_objects:
            raise ValueError(f"the model was compiled with the Python function loss {name!r}:"
                             f" pass custom_objects={{{name!r}: fn}}")
        return LossFunction(custom_objects[name], name)
    return get(config)
