"""The data fit / evaluate / predict take (what Keras takes), as batches of one size.

- numpy arrays, or what np.asarray makes one of (nested lists, pandas frames);
- for several inputs, a list of arrays in input order or a dict {input name: array};
  targets `y` as an array or a dict {output name: array}; `sample_weight` one per example;
- a re-iterable data loader (gc.data.ShiftedBatches, any object with __iter__), or a one-shot
  iterator or generator (gc.data.batches(...)), yielding (x, y) or (x, y, sample_weight)
  batches, x alone for predict. `steps_per_epoch` (`validation_steps`, `steps`) bounds the
  batches an epoch takes; a one-shot iterator continues where the last epoch stopped.

Every batch has the compiled size: a short one is padded with repeated real rows whose mask
is 0. Anything else is refused with gc.data.DataTypeError naming its type.
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from graphc.data import DataError, DataTypeError
from graphc.errors import FeedError
from graphc.nn.checks import input_names, output_names

DEFAULT_BATCH_SIZE = 32
ACCEPTED = ("numpy arrays (nested lists, array-likes), a list or a dict {input name: array} "
            "for several inputs, or a data loader, iterator or generator of (x, y) or "
            "(x, y, sample_weight) batches such as gc.data.batches(...)")
_END = object()


class Batch(NamedTuple):
    """One padded batch: inputs, targets, mask (1 real row, 0 padding), weights or None."""

    xs: list
    y: np.ndarray | None
    mask: np.ndarray
    sample_weight: np.ndarray | None
    real: int


def refuse(value, what: str) -> DataTypeError:
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    return DataTypeError(f"{what}: cannot take a {kind} as data; fit, evaluate and predict "
                         f"take {ACCEPTED}")


def is_stream(x) -> bool:
    """True for a loader, iterator or generator of batches (not arrays)."""
    if isinstance(x, (np.ndarray, list, tuple, dict, str, bytes, set, frozenset)) or \
            hasattr(x, "__array__"):
        return False
    return hasattr(x, "__iter__")


def to_array(value, what: str) -> np.ndarray:
    """`value` as a numeric array, or DataTypeError."""
    if value is None or isinstance(value, (str, bytes, dict, set)) or is_stream(value):
        raise refuse(value, what)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:          # ragged nested lists
        raise DataTypeError(f"{what}: cannot make an array of it ({exc})") from None
    if array.dtype.kind not in "biuf":
        raise refuse(value, what) if array.dtype.kind == "O" else DataTypeError(
            f"{what}: {array.dtype} data; models take numbers (bool, int, float)")
    return array


# ---- inputs, targets, weights ----

def model_inputs(model, x, what: str = "x") -> list[np.ndarray]:
    """One array per model input, from an array, a list/tuple of arrays or a dict by name."""
    count = max(len(model.inputs), 1)
    if isinstance(x, dict):
        return _by_name(x, input_names(model), f"model {model.name}'s inputs", what)
    if isinstance(x, (list, tuple)) and x and (
            all(isinstance(v, np.ndarray) for v in x) or (count > 1 and len(x) == count)):
        return [to_array(v, f"{what}[{i}]") for i, v in enumerate(x)]
    return [to_array(x, what)]


def model_targets(model, y, what: str = "y") -> np.ndarray | None:
    """The targets as one array (from an array, [array] or {output name: array})."""
    if y is None:
        return None
    if isinstance(y, dict):
        (y,) = _by_name(y, output_names(model), f"model {model.name}'s outputs", what)
    elif isinstance(y, (list, tuple)) and len(y) == 1 and isinstance(y[0], np.ndarray):
        y = y[0]
    return to_array(y, what)


def _by_name(values: dict, names: list[str], whose: str, what: str) -> list[np.ndarray]:
    unknown = [k for k in values if k not in names]
    missing = [n for n in names if n not in values]
    if unknown or missing:
        parts = [f"unknown keys {unknown}" if unknown else "",
                 f"missing keys {missing}" if missing else ""]
        raise FeedError(f"{what}: a dict by name needs the keys {names} ({whose}); "
                        f"{' and '.join(p for p in parts if p)}")
    return [to_array(values[n], f"{what}[{n!r}]") for n in names]


def sample_weights(weights, n: int, what: str = "sample_weight") -> np.ndarray | None:
    """Per-example weights, finite, shape (n,)."""
    if weights is None:
        return None
    array = to_array(weights, what).astype(np.float32)
    if array.shape != (n,):
        raise FeedError(f"{what}: one weight per example wanted, shape ({n},), got "
                        f"{array.shape}")
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise FeedError(f"{what}: weight {array[bad]} of sample {bad} is not finite")
    return array


def class_weights(class_weight, y: np.ndarray, what: str = "class_weight") -> np.ndarray:
    """Keras's per-example weights from {class index: weight}: the class of a row is its
    integer label, the argmax of a one-hot row, or the rounded value of a single column;
    classes not in the dict weigh 1."""
    if not hasattr(class_weight, "items"):
        raise ValueError(f"{what}: a dict {{class index: weight}} is wanted, got "
                         f"{type(class_weight).__name__}")
    table = {}
    for key, value in class_weight.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: keys are class indices, got {key!r}") from None
        if isinstance(key, (float, np.floating)) and key != index:
            raise ValueError(f"{what}: keys are class indices, got {key!r}")
        weight = float(value)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"{what}: the weight of class {index} is {value!r}; weights are"
                             f" finite and >= 0")
        table[index] = weight
    labels = np.asarray(y)
    if labels.ndim > 2 or (labels.ndim == 2 and labels.shape[-1] != 1 and
                           labels.dtype.kind in "iub"):
        raise ValueError(f"{what}: takes one class per example (labels, one-hot rows or one"
                         f" column), got targets of shape {labels.shape}; pass sample_weight")
    if labels.ndim == 2:
        labels = labels.argmax(-1) if labels.shape[-1] != 1 else labels[:, 0]
    labels = np.round(labels).astype(np.int64)
    return np.array([table.get(int(label), 1.0) for label in labels], np.float32)


def same_length(xs, y, weights) -> int:
    """The common number of examples (ValueError naming every length otherwise)."""
    sizes = [len(x) if x.ndim else 0 for x in xs] + ([len(y)] if y is not None else []) + \
        ([len(weights)] if weights is not None else [])
    if len(set(sizes)) > 1:
        raise ValueError(f"inputs and targets must have the same length, got {sizes}")
    if not sizes or sizes[0] == 0:
        raise ValueError("no data: the arrays are empty")
    return sizes[0]


def pad_index(index: np.ndarray, batch: int, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`index` filled up to `batch` with rows from `pool` (cycled); mask 1 real, 0 pad."""
    real = len(index)
    mask = np.zeros(batch, np.float32)
    mask[:real] = 1.0
    if real < batch:
        index = np.concatenate([index, np.resize(pool, batch - real)])
    return index, mask


# ---- arrays ----

class ArrayData:
    """Batches of arrays of one size; the last one padded; shuffled per pass if asked.

    With `steps` and `cycle` (fit's steps_per_epoch), an epoch is `steps` batches and the
    next epoch continues where it stopped, starting a new (reshuffled) pass through the
    data when one ends: every example is seen, however steps_per_epoch divides the data.
    Otherwise each epoch is one pass (its first `steps` batches, for evaluate's steps).
    """

    def __init__(self, xs, y, weights, batch_size, shuffle: bool = False, steps=None,
                 cycle: bool = False):
        self.xs, self.y, self.weights = xs, y, weights
        self.batch = int(batch_size or DEFAULT_BATCH_SIZE)
        if self.batch <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if steps is not None and int(steps) <= 0:
            raise ValueError(f"steps must be positive, got {steps}")
        self.n = same_length(xs, y, weights)
        self.shuffle, self.steps = shuffle, steps
        self.cycle = bool(cycle and steps)
        self._passes = None

    def count(self) -> int:
        """Batches per epoch."""
        if self.cycle:
            return int(self.steps)
        count = math.ceil(self.n / self.batch)
        return min(count, self.steps) if self.steps else count

    def has_more(self) -> bool:
        return True

    def first_inputs(self) -> list[np.ndarray]:
        return [x[:self.batch] for x in self.xs]

    def epoch(self, rng: np.random.Generator | None = None):
        """Yield a Batch per step."""
        if self.cycle:
            if self._passes is None:
                self._passes = self._endless(rng)
            yield from itertools.islice(self._passes, int(self.steps))
            return
        for step, batch in enumerate(self._one_pass(rng)):
            if self.steps and step >= self.steps:
                return
            yield batch

    def _endless(self, rng):
        while True:
            yield from self._one_pass(rng)

    def _one_pass(self, rng):
        order = rng.permutation(self.n) if (self.shuffle and rng is not None) else \
            np.arange(self.n)
        for start in range(0, self.n, self.batch):
            index, mask = pad_index(order[start:start + self.batch], self.batch, order)
            yield Batch([x[index] for x in self.xs],
                        None if self.y is None else self.y[index], mask,
                        None if self.weights is None else self.weights[index],
                        int(mask.sum()))


# ---- loaders, iterators, generators ----

def split_item(item, what: str):
    """(x, y, sample_weight) of one yielded batch: a tuple of 1 to 3, or x alone."""
    if not isinstance(item, tuple):
        return item, None, None
    if not 1 <= len(item) <= 3:
        raise DataTypeError(f"{what}: a batch is (x,), (x, y) or (x, y, sample_weight); got a"
                            f" tuple of {len(item)}")
    return tuple(item) + (None,) * (3 - len(item))


class StreamData:
    """Batches from a re-iterable loader (a fresh pass per epoch) or a one-shot iterator
    (consumed across epochs); `prepare(xs, y, weights, first, what)` checks each batch."""

    def __init__(self, source, batch_size, steps=None, name: str = "data"):
        self.source, self.steps, self.name = source, steps, name
        self.one_shot = hasattr(source, "__next__")     # a generator: one stream for all
        self.pending = iter(source)
        first = next(self.pending, _END)
        if first is _END:
            raise DataError(f"{name}: the {_kind(source)} yields no batches")
        self.pending = itertools.chain([first], self.pending)
        x, _, _ = split_item(first, f"{name}, batch 0")
        self.first = x
        self.batch = batch_size or len(_leading(x, f"{name}, batch 0"))
        self.prepare = None

    def count(self) -> int | None:
        """Batches per epoch, when known."""
        if self.steps:
            return self.steps
        return None if self.one_shot or not hasattr(self.source, "__len__") else \
            len(self.source)

    def first_inputs(self):
        return self.first

    def has_more(self) -> bool:
        """False once a one-shot iterator is exhausted."""
        if not self.one_shot:
            return True
        item = next(self.pending, _END)
        if item is _END:
            return False
        self.pending = itertools.chain([item], self.pending)
        return True

    def _iterator(self):
        if self.one_shot:
            return self.pending
        iterator, self.pending = (self.pending or iter(self.source)), None
        return iterator

    def epoch(self, rng=None):
        iterator, seen, step = self._iterator(), 0, 0
        while not self.steps or step < self.steps:
            item = next(iterator, _END)
            if item is _END:
                return
            what = f"{self.name}, batch {step}"
            batch = self._pad(*self.prepare(*split_item(item, what), seen, what), what)
            seen += batch.real
            step += 1
            yield batch

    def _pad(self, xs, y, weights, what: str) -> Batch:
        real = len(xs[0])
        if real > self.batch:
            raise ValueError(f"{what}: {real} examples, more than batch_size={self.batch} "
                             f"(the first batch's size, unless batch_size is given)")
        index, mask = pad_index(np.arange(real), self.batch, np.arange(real))
        return Batch([x[index] for x in xs], None if y is None else y[index], mask,
                     None if weights is None else weights[index], real)


def _kind(source) -> str:
    return type(source).__qualname__


def _leading(x, what: str):
    if isinstance(x, dict):
        x = next(iter(x.values()), None)
    elif isinstance(x, (list, tuple)) and x and isinstance(x[0], np.ndarray):
        x = x[0]
    return to_array(x, what)
