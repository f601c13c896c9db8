"""What fit / evaluate / predict check in the user's numpy data before anything runs.

A class label outside [0, classes) gives sparse cross-entropy a loss and a gradient of 0,
and an Embedding id outside [0, input_dim) reads a clamped row: both are silent wrong
numbers on the device, so arrays are checked on the host, where the position of the bad
value is still known. Shapes and dtypes are checked here too, so that an error names the
model's input and the user's batch, not a placeholder and the padded batch.
"""
from __future__ import annotations

import warnings

import numpy as np

from graphc.data import OutOfRangeError
from graphc.errors import FeedError
from graphc.ir import Tensor
from graphc.nn import losses as nn_losses
from graphc.sites import user_stacklevel

# ops that only move values: a bound on their input is a bound on their output
_MOVEMENT_OPS = frozenset({"reshape", "transpose", "broadcast_to", "slice", "pad", "take",
                           "concatenate", "cast"})
# ops whose output is not a probability (a linear layer, unbounded activations)
_UNBOUNDED_OPS = frozenset({"matmul", "conv2d", "add", "subtract", "negative", "relu",
                            "tanh", "exp", "log", "log_softmax"})
_SHAPED_LOSSES = (nn_losses.MeanSquaredError, nn_losses.MeanAbsoluteError,
                  nn_losses.BinaryCrossentropy, nn_losses.CategoricalCrossentropy,
                  nn_losses.SparseCategoricalCrossentropy, nn_losses.Huber,
                  nn_losses.KLDivergence, nn_losses.Poisson, nn_losses.Hinge,
                  nn_losses.CosineSimilarity)
_PROBABILITY_LOSSES = (nn_losses.BinaryCrossentropy, nn_losses.CategoricalCrossentropy,
                       nn_losses.SparseCategoricalCrossentropy)


# ---- names ----

def input_names(model) -> list[str]:
    """The model's input names (Input(name=...)), in input order."""
    return [t.name or f"input_{i}" for i, t in enumerate(model.inputs)]


def _source_layer(tensor) -> str:
    return tensor.node.layer.name if tensor.node is not None else (tensor.name or "input")


def output_names(model) -> list[str]:
    """Keras's output names: the layers that produce the outputs."""
    return [_source_layer(t) for t in model.outputs]


# ---- from_logits ----

def _final_ops(pred: Tensor) -> set[str]:
    """The ops that compute `pred`, looking through ops that only move values."""
    found, stack, seen = set(), [pred], set()
    while stack:
        value = stack.pop()
        node = value.producer
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op in _MOVEMENT_OPS:
            stack.extend(v for v in node.inputs if v.ndim > 0 or node.op == "cast")
        else:
            found.add(node.op)
    return found


def warn_if_not_probabilities(model, loss, pred: Tensor) -> None:
    """Warn (as Keras does) when a loss that takes probabilities is given outputs that are
    not bounded in [0, 1]: a final Dense layer without softmax/sigmoid gives logits."""
    if not isinstance(loss, _PROBABILITY_LOSSES) or loss.from_logits:
        return
    unbounded = sorted(_final_ops(pred) & _UNBOUNDED_OPS)
    if not unbounded:
        return
    layer = _source_layer(model.outputs[0])
    squash = "sigmoid" if isinstance(loss, nn_losses.BinaryCrossentropy) else "softmax"
    warnings.warn(
        f"{type(loss).__name__}(from_logits=False) expects probabilities, but the output of"
        f" model {model.name} comes from layer {layer!r} through {', '.join(unbounded)}: values"
        f" not bounded in [0, 1]. If they are logits, use {type(loss).__name__}"
        f"(from_logits=True); else give {layer!r} activation={squash!r}.",
        UserWarning, stacklevel=user_stacklevel())


# ---- inputs ----

def _describe(array: np.ndarray) -> str:
    if array.ndim == 0:
        return f"a scalar of {array.dtype}"
    return (f"shape {array.shape} ({array.shape[0]} examples of shape {array.shape[1:]},"
            f" {array.dtype})")


def check_input_arrays(model, xs: list[np.ndarray], what: str) -> list[np.ndarray]:
    """`xs` checked against the model's inputs and converted to their dtypes: FeedError
    naming the input and the data as the user gave them."""
    names = input_names(model)
    if len(xs) != len(model.inputs):
        raise FeedError(f"model {model.name} takes {len(model.inputs)} inputs"
                        f" ({', '.join(names)}), {what} gives {len(xs)}")
    return [_check_input(model, name, t, x, what) for name, t, x in zip(names, model.inputs, xs)]


def _check_input(model, name: str, t, x: np.ndarray, what: str) -> np.ndarray:
    wanted = f"examples of shape {t.example_shape} ({t.dtype.name})"
    if x.ndim == 0 or tuple(x.shape[1:]) != t.example_shape:
        raise FeedError(f"model {model.name}: input {name!r} takes {wanted}, but {what} has "
                        f"{_describe(x)}")
    if x.dtype == t.dtype:
        return x
    if x.dtype.kind in "iub" and t.dtype.kind in "iuf" or x.dtype.kind == t.dtype.kind == "f":
        return x.astype(t.dtype)
    if x.dtype.kind == "f" and t.dtype.kind in "iu":
        integral = np.isfinite(x) & (x == np.trunc(x))
        if integral.all():
            return x.astype(t.dtype)
        position = tuple(int(i) for i in np.argwhere(~integral)[0])
        raise FeedError(f"model {model.name}: input {name!r} takes {t.dtype.name} values, but"
                        f" {what} holds {x[position]!r} at sample {position[0]} (position "
                        f"{position})")
    raise FeedError(f"model {model.name}: input {name!r} takes {wanted}, but {what} holds "
                    f"{x.dtype} values")


# ---- value ranges ----

def _first_bad(values: np.ndarray, low: int, high: int) -> tuple | None:
    """The index of the first value outside [low, high) (after truncation, as a cast does),
    or None."""
    if values.dtype.kind == "b":
        bad = np.zeros(values.shape, bool) if high >= 2 else values
    elif values.dtype.kind in "iu":
        bad = (values < low) | (values >= high)
    elif values.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values < low) | (values >= high)
            bad |= np.isfinite(values) & (values != np.trunc(values))
    else:
        return ()
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0])


def _value_at(values: np.ndarray, where: tuple) -> str:
    return repr(values[where].item()) if where else f"values of dtype {values.dtype}"


class DataChecks:
    """The range checks a compiled model needs: sparse labels and Embedding ids."""

    def __init__(self, model, loss):
        self.model, self.loss = model, loss
        self.classes = None
        if isinstance(loss, nn_losses.SparseCategoricalCrossentropy) and model.outputs:
            self.classes = model.outputs[0].example_shape[-1]
            self.loss_name = type(loss).__name__
        self.embeddings = _input_embeddings(model)

    def targets(self, y: np.ndarray | None, first: int = 0, what: str = "y") -> None:
        """Targets shaped as the loss wants; labels within [0, classes) for sparse
        categorical cross-entropy."""
        if y is None:
            return
        self._target_shape(y, what)
        if self.classes is None:
            return
        where = _first_bad(np.asarray(y), 0, self.classes)
        if where is None:
            return
        output = output_names(self.model)[0]
        raise OutOfRangeError(
            f"{what}: label {_value_at(y, where)} of sample {first + where[0] if where else '?'}"
            f" is not a class index in [0, {self.classes}): {self.loss_name} takes integer"
            f" labels for the {self.classes} classes of model {self.model.name}'s output layer"
            f" {output!r}")

    def _target_shape(self, y: np.ndarray, what: str) -> None:
        """Built-in losses: per-example targets of the output's shape (class indices for
        sparse cross-entropy), so that nothing broadcasts silently."""
        if not isinstance(self.loss, _SHAPED_LOSSES) or len(self.model.outputs) != 1:
            return
        out, got = self.model.outputs[0].example_shape, tuple(y.shape[1:])
        if isinstance(self.loss, nn_losses.SparseCategoricalCrossentropy):
            wanted = [out[:-1], out[:-1] + (1,)]
        else:
            wanted = [out, out[:-1]] if out[-1:] == (1,) else [out]
        if got in wanted:
            return
        raise FeedError(
            f"{what}: targets of {_describe(y)} do not fit {type(self.loss).__name__}: model "
            f"{self.model.name}'s output {output_names(self.model)[0]!r} gives examples of "
            f"shape {out}, so it takes targets of shape {' or '.join(map(str, wanted))} per "
            f"example")

    def inputs(self, xs: list[np.ndarray], first: int = 0, what: str = "x") -> None:
        """Ids within [0, input_dim) for every Embedding that reads a model input."""
        names = input_names(self.model)
        for index, layer in self.embeddings:
            where = _first_bad(np.asarray(xs[index]), 0, layer.input_dim)
            if where is None:
                continue
            site = f" (created at {layer.created_at})" if getattr(layer, "created_at", "") \
                else ""
            raise OutOfRangeError(
                f"{what}: id {_value_at(xs[index], where)} of sample "
                f"{first + where[0] if where else '?'} (position {where}) of input "
                f"{names[index]!r} is not an id in [0, {layer.input_dim}): layer {layer.name}"
                f"{site} is an Embedding of input_dim={layer.input_dim}")


def _input_embeddings(model) -> list[tuple[int, object]]:
    """(input index, layer) of each Embedding whose input is a model input."""
    from graphc.nn.embedding import Embedding
    found = []
    for node in getattr(model, "_nodes", []):
        if isinstance(node.layer, Embedding) and not node.list_input:
            source = node.inputs[0]
            if source in model.inputs:
                found.append((model.inputs.index(source), node.layer))
    return found
