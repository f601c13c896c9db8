"""Operators and methods of `Tensor`, delegating to the functional API.

`==` and `!=` keep Python's identity meaning (as in Theano and TF 1.x), so tensors work as
dict keys; use `gc.equal` / `gc.not_equal` for the elementwise comparison.
"""
from __future__ import annotations

import importlib


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
    __hash__ = object.__hash__

    def __bool__(self):
        raise TypeError("a symbolic tensor has no truth value: it is known only when the graph"
                        " runs (use gc.where for a data-dependent choice)")

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
