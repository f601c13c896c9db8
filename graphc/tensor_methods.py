"""Operators and methods of `Tensor`, delegating to the functional API.

`==` and `!=` are elementwise, as in numpy, JAX and TF2: `gc.argmax(p, 1) == y` is a bool
tensor (gc.equal), never a Python bool. Tensors stay hashable by identity, so they remain
dict keys and set members; code that needs identity compares with `is` (never `==`, `in` on
a list of tensors, `list.index` or `list.remove`, which call `==`). A tensor has no truth
value: `bool(t)`, `if t:` and `t1 == t2 and ...` raise TruthValueError.

The IR (graphc/ir.py) sits below the functions that build graphs, which create its tensors,
so it cannot import them; this module, above both, installs the operators on `Tensor` when it
is imported (graphc/__init__.py imports it first of all).
"""
from __future__ import annotations

import numpy as np

from graphc.builder import cast, get_value, set_value
from graphc.errors import TruthValueError
from graphc.ir import Tensor
from graphc.math import abs as absolute
from graphc.math import (add, divide, equal, greater, greater_equal, less, less_equal,
                         logical_and, logical_not, logical_or, multiply, negative, not_equal,
                         power, subtract)
from graphc.ops.indexing import getitem
from graphc.ops.linalg import matmul
from graphc.ops.movement import reshape, transpose
from graphc.ops.reduction import argmax, mean
from graphc.ops.reduction import max as reduce_max
from graphc.ops.reduction import min as reduce_min
from graphc.ops.reduction import sum as reduce_sum

_NOT_METHODS = frozenset({"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__"})


class TensorMethods:
    """numpy's operators and methods, installed on graphc.ir.Tensor (see `install`)."""

    __array_ufunc__ = None      # numpy defers to our reflected operators: ndarray + Tensor works

    def __add__(self, other): return add(self, other)
    def __radd__(self, other): return add(other, self)
    def __sub__(self, other): return subtract(self, other)
    def __rsub__(self, other): return subtract(other, self)
    def __mul__(self, other): return multiply(self, other)
    def __rmul__(self, other): return multiply(other, self)
    def __truediv__(self, other): return divide(self, other)
    def __rtruediv__(self, other): return divide(other, self)
    def __pow__(self, other): return power(self, other)
    def __rpow__(self, other): return power(other, self)
    def __matmul__(self, other): return matmul(self, other)
    def __rmatmul__(self, other): return matmul(other, self)
    def __neg__(self): return negative(self)
    def __pos__(self): return self
    def __abs__(self): return absolute(self)
    def __lt__(self, other): return less(self, other)
    def __le__(self, other): return less_equal(self, other)
    def __gt__(self, other): return greater(self, other)
    def __ge__(self, other): return greater_equal(self, other)
    def __and__(self, other): return logical_and(self, other)
    def __or__(self, other): return logical_or(self, other)
    def __invert__(self): return logical_not(self)
    def __getitem__(self, index): return getitem(self, index)

    def __eq__(self, other):
        return equal(self, other) if _comparable(other) else NotImplemented

    def __ne__(self, other):
        return not_equal(self, other) if _comparable(other) else NotImplemented

    __hash__ = object.__hash__          # identity: defining __eq__ would otherwise unset it

    def __bool__(self):
        raise TruthValueError(
            f"the truth value of a symbolic tensor ({self!r}) is unknown until the function "
            "runs; use gc.where for a data-dependent choice, gc.equal / == for an elementwise "
            "comparison, and `is` to ask whether two tensors are the same object")

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        raise TypeError("a symbolic tensor is not iterable; index it with x[i]")

    @property
    def T(self):
        """Reversed axes."""
        return transpose(self)

    def reshape(self, *shape):
        """Same data, new shape (one dimension may be -1)."""
        return reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        """Permute axes (reversed when none are given)."""
        return transpose(self, (axes[0] if len(axes) == 1 else axes) or None)

    def sum(self, axis=None, keepdims=False):
        """Sum over `axis`."""
        return reduce_sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """Mean over `axis`."""
        return mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        """Maximum over `axis`."""
        return reduce_max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        """Minimum over `axis`."""
        return reduce_min(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None, keepdims=False):
        """Index of the maximum along `axis`."""
        return argmax(self, axis=axis, keepdims=keepdims)

    def astype(self, dtype):
        """Cast to `dtype`."""
        return cast(self, dtype)

    def get_value(self):
        """A variable's current value."""
        return get_value(self)

    def set_value(self, value):
        """Replace a variable's value."""
        return set_value(self, value)


def _comparable(other) -> bool:
    """Does `x == other` compare elementwise? Tensors, numbers, arrays and sequences do;
    None, strings and other objects fall back to Python's identity comparison (False)."""
    return isinstance(other, (Tensor, int, float, np.generic, np.ndarray, list, tuple))


def install(cls: type) -> None:
    """Give `cls` (graphc.ir.Tensor) the operators and methods of TensorMethods."""
    for name, value in vars(TensorMethods).items():
        if name not in _NOT_METHODS:
            setattr(cls, name, value)


install(Tensor)
