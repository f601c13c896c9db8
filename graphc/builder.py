"""Define-then-run frontend: leaves, constants, and `apply`, which checks types eagerly.

Every op family's public functions call `apply(op_name, inputs, **attrs)`: it runs the
op's shape/dtype rule now, so a mistake is reported at the user's line, before anything runs.
"""
from __future__ import annotations

import itertools

import numpy as np

from graphc import dtypes
from graphc.errors import DTypeError, GraphcError, ShapeError
from graphc.ir import Node, Tensor, TensorType, VariableStorage
from graphc.ops.registry import get_op
from graphc.sites import user_site

_placeholder_ids = itertools.count()


def apply(op: str, inputs, **attrs) -> Tensor:
    """Create a node of `op` over `inputs` (tensors) and return its output."""
    opdef = get_op(op)
    inputs = tuple(inputs)
    site = user_site()
    try:
        out_type = opdef.infer([t.type for t in inputs], **attrs)
    except (ShapeError, DTypeError) as exc:
        raise type(exc)(op_error_text(op, inputs, attrs, site, str(exc))) from None
    return Node(op, inputs, attrs, [out_type], site).output


def op_error_text(op: str, inputs, attrs: dict, site: str, problem: str) -> str:
    """`op(f32[3], f32[4]): problem (at file:line)` — the shape of every build-time error."""
    operands = ", ".join(str(t.type) for t in inputs)
    attr_text = "".join(f" {k}={v!r}" for k, v in attrs.items() if k not in ("value",))
    return f"{op}({operands}){attr_text}: {problem}\n  created at {site or '<unknown>'}"


def placeholder(shape, dtype=dtypes.float32, name: str | None = None) -> Tensor:
    """A value fed at every call, with a static shape."""
    type_ = TensorType(_check_shape(shape), dtypes.as_dtype(dtype))
    return Tensor(type_, name=name or f"input{next(_placeholder_ids)}", role="placeholder",
                  site=user_site())


def variable(value, name: str | None = None, dtype=None) -> Tensor:
    """State kept across calls (on the device): weights, optimizer slots."""
    array = np.array(value, dtype=dtypes.as_dtype(dtype or dtypes.default_dtype_of(value)))
    type_ = TensorType(array.shape, array.dtype)
    return Tensor(type_, name=name, role="variable", data=VariableStorage(array),
                  site=user_site())


def constant(value, dtype=None, name: str | None = None) -> Tensor:
    """A fixed value baked into the graph."""
    array = np.array(value, dtype=dtypes.as_dtype(dtype or dtypes.default_dtype_of(value)))
    array.setflags(write=False)
    return Tensor(TensorType(array.shape, array.dtype), name=name, role="constant",
                  data=array, site=user_site())


def as_tensor(value, like: np.dtype | None = None) -> Tensor:
    """A tensor as is; a Python scalar as a constant of `like`'s dtype; an array as a constant.
    Without `like` (no tensor beside it) a bool scalar is refused: see refuse_bool."""
    if isinstance(value, Tensor):
        return value
    if like is None:
        refuse_bool(value)
    if like is not None and dtypes.is_weak_scalar(value):
        return constant(value, dtypes.weak_scalar_dtype(value, like))
    return constant(value)


def refuse_bool(value) -> None:
    """A Python (or numpy) bool where a tensor is expected is almost always the result of a
    comparison that Python, not graphc, evaluated: `a == b` between values that are not
    graphc tensors, or `x in seq`. Taking it as a constant would silently give a wrong
    number (a mean of False is 0.0), so it is an error; gc.constant(True) says it on purpose."""
    if isinstance(value, (bool, np.bool_)):
        kind, flag = "Python bool" if isinstance(value, bool) else "numpy bool", bool(value)
        raise DTypeError(
            f"got the {kind} {flag} where a tensor is expected: it is "
            "probably the result of a comparison Python evaluated (== or != between values "
            "that are not graphc tensors, `in`, `and`/`or`); compare tensors with == or "
            f"gc.equal, or write gc.constant({flag}) for a constant\n"
            f"  created at {user_site() or '<unknown>'}")


def as_tensors(*values) -> list[Tensor]:
    """Convert operands together, so Python scalars take the dtype of the tensors beside them;
    numpy arrays and numpy scalars count with their own dtypes (NEP 50)."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    arrays = [v for v in values if isinstance(v, (np.ndarray, np.generic))]
    if not tensors and not any(isinstance(a, np.ndarray) for a in arrays):
        for value in values:            # only scalars: none of them may be a bool
            refuse_bool(value)
    like = None
    if tensors or arrays:
        like = dtypes.promote(*[t.dtype for t in tensors], *[dtypes.as_dtype(a.dtype) for a in arrays])
    return [as_tensor(v, like) for v in values]


def cast(x, dtype) -> Tensor:
    """Convert to `dtype` (numpy's astype: floats to ints truncate toward zero)."""
    x = as_tensor(x)
    dtype = dtypes.as_dtype(dtype)
    return x if x.dtype == dtype else apply("cast", [x], dtype=dtype)


def get_value(tensor: Tensor) -> np.ndarray:
    """The current value of a variable (read back from the device if it changed there)."""
    return _storage(tensor).get()


def set_value(tensor: Tensor, value) -> None:
    """Replace a variable's value; shape and dtype must stay the same."""
    array = np.asarray(value)
    if array.shape != tensor.shape:
        raise ShapeError(f"set_value of variable {tensor.name!r}: expected shape {tensor.shape},"
                         f" got {array.shape}")
    if not np.can_cast(array.dtype, tensor.dtype, casting="same_kind"):
        raise DTypeError(f"set_value of variable {tensor.name!r}: expected {tensor.dtype.name},"
                         f" got {array.dtype.name}")
    _storage(tensor).set(np.array(array, dtype=tensor.dtype))


def _storage(tensor: Tensor) -> VariableStorage:
    if tensor.role != "variable":
        raise GraphcError(f"{tensor!r} is not a variable: only variables have a value")
    return tensor.data


def _check_shape(shape) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
        raise ShapeError(f"shape must be a tuple of non-negative ints, got {shape!r}"
                         f"\n  created at {user_site()}")
    return tuple(int(d) for d in shape)
