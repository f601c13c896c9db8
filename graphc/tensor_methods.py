"""Operators and methods of `Tensor`, delegating to the functional API.

`==` and `!=` are elementwise, as in numpy, JAX and TF2: `gc.argmax(p, 1) == y` is a bool
tensor (gc.equal), never a Python bool. Tensors stay hashable by identity, so they remain
dict keys and set members; code that needs identity compares with `is` (never `==`, `in` on
a list of tensors, `list.index` or `list.remove`, which call `==`). A tensor has no truth
value: `bool(t)`, `if t:` and `t1 == t2 and ...` raise TruthValueError.
"""
from __future__ import annotations

import importlib

import numpy as np


def _gc():
    return importlib.import_module("graphc")


class TensorMethods:
    """Mixin giving symbolic tensors numpy's operators."""

    __slots__ = ()
    __array_ufunc__ = None      # numpy defers to our reflected operators: ndarray + Tensor works

    def __add__(self, other): return _gc().add(self, other)
    def __radd__(self, other): return _gc().add(other, self)
    def __sub__(self, other): return _gc().subtract(self, other)
    def __rsub__(self, other): return _gc().subtract(other, self)
    def __mul__(self, other): return _gc().multiply(self, other)
    def __rmul__(self, other): return _gc().multiply(other, self)
    def __truediv__(self, other): return _gc().divide(self, other)
    def __rtruediv__(self, other): return _gc().divide(other, self)
    def __pow__(self, other): return _gc().power(self, other)
    def __rpow__(self, other): return _gc().power(other, self)
    def __matmul__(self, other): return _gc().matmul(self, other)
    def __rmatmul__(self, other): return _gc().matmul(other, self)
    def __neg__(self): return _gc().negative(self)
    def __pos__(self): return self
    def __abs__(self): return _gc().abs(self)
    def __lt__(self, other): return _gc().less(self, other)
    def __le__(self, other): return _gc().less_equal(self, other)
    def __gt__(self, other): return _gc().greater(self, other)
    def __ge__(self, other): return _gc().greater_equal(self, other)
    def __and__(self, other): return _gc().logical_and(self, other)
    def __or__(self, other): return _gc().logical_or(self, other)
    def __invert__(self): return _gc().logical_not(self)
    def __getitem__(self, index): return _gc().getitem(self, index)

    def __eq__(self, other):
        return _gc().equal(self, other) if _comparable(other) else NotImplemented

    def __ne__(self, other):
        return _gc().not_equal(self, other) if _comparable(other) else NotImplemented

    __hash__ = object.__hash__          # identity: defining __eq__ would otherwise unset it

    def __bool__(self):
        from graphc.errors import TruthValueError
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
        return _gc().transpose(self)

    def reshape(self, *shape):
        """Same data, new shape (one dimension may be -1)."""
        return _gc().reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        """Permute axes (reversed when none are given)."""
        return _gc().transpose(self, (axes[0] if len(axes) == 1 else axes) or None)

    def sum(self, axis=None, keepdims=False):
        """Sum over `axis`."""
        return _gc().sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """Mean over `axis`."""
        return _gc().mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        """Maximum over `axis`."""
        return _gc().max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        """Minimum over `axis`."""
        return _gc().min(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None, keepdims=False):
        """Index of the maximum along `axis`."""
        return _gc().argmax(self, axis=axis, keepdims=keepdims)

    def astype(self, dtype):
        """Cast to `dtype`."""
        return _gc().cast(self, dtype)

    def get_value(self):
        """A variable's current value."""
        return _gc().builder.get_value(self)

    def set_value(self, value):
        """Replace a variable's value."""
        return _gc().builder.set_value(self, value)


def _comparable(other) -> bool:
    """Does `x == other` compare elementwise? Tensors, numbers, arrays and sequences do;
    None, strings and other objects fall back to Python's identity comparison (False)."""
    return isinstance(other, (TensorMethods, int, float, np.generic, np.ndarray, list, tuple))
