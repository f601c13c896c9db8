"""Random tensors: seeded, counter-based (Philox-4x32-10, see graphc.philox), and dropout.

Seeds follow TF1: `set_seed(s)` sets the global seed; an op made with `seed=None` gets a
distinct seed from (global seed, per-process op counter), and an op with an explicit seed
gets a stream fixed by (global seed, op seed). The derived 64-bit seed is an attribute of
the node, so the interpreter and every device draw the same numbers. A compiled function's
call number `step` moves the stream on by the op's whole draw, so calls never repeat.
Without `set_seed`, the global seed is DEFAULT_GLOBAL_SEED: programs are reproducible.
"""
from __future__ import annotations

import hashlib
import itertools

import numpy as np

from graphc import dtypes, philox
from graphc.builder import apply, as_tensor
from graphc.errors import DTypeError, ShapeError
from graphc.ir import Tensor, TensorType
from graphc.ops.registry import NonDifferentiable, OpDef, register
from graphc.sites import user_site

__all__ = ["uniform", "normal", "bernoulli", "set_seed", "get_seed", "dropout"]

DEFAULT_GLOBAL_SEED = 87654321          # TF1's DEFAULT_GRAPH_SEED
RANDOM_OUTPUT = NonDifferentiable("random output")
_STREAM_WRAP = 1 << 64


class _SeedState:
    """The global seed and the counter that numbers ops made without a seed."""

    def __init__(self, seed: int):
        self.seed = seed
        self.counter = itertools.count()


_state = _SeedState(DEFAULT_GLOBAL_SEED)


def set_seed(seed: int) -> None:
    """Set the global seed and restart the op counter: the same program then draws the same."""
    global _state
    _state = _SeedState(int(seed))


def get_seed() -> int:
    """The global seed."""
    return _state.seed


def derived_seed(op_seed: int | None) -> int:
    """A 64-bit Philox seed from the global seed and the op's seed (or the op counter)."""
    tag, value = ("auto", next(_state.counter)) if op_seed is None else ("op", int(op_seed))
    text = f"{_state.seed}:{tag}:{value}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


# ---- op records ----

def _check_shape(shape) -> None:
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ShapeError(f"shape must be a tuple of non-negative ints, got {shape!r}")


def _float_infer(types, shape, dtype, seed, **params) -> TensorType:
    _check_shape(shape)
    if dtype not in (dtypes.float32, dtypes.float64):
        raise DTypeError(f"draws float32 or float64, got {dtype.name}")
    return TensorType(tuple(shape), dtype)


def _bernoulli_infer(types, shape, dtype, seed, p) -> TensorType:
    _check_shape(shape)
    return TensorType(tuple(shape), dtype)


def _offset(kind: str, shape, dtype, step: int) -> int:
    """Where call `step` starts: after the blocks every earlier call used."""
    n = int(np.prod(shape, dtype=np.int64))
    return step * philox.blocks_used(kind, n, dtype) % _STREAM_WRAP


def _uniform_ref(*, shape, dtype, seed, low, high, step=0) -> np.ndarray:
    return philox.uniform(seed, _offset("uniform", shape, dtype, step), shape, dtype, low, high)


def _normal_ref(*, shape, dtype, seed, mean, std, step=0) -> np.ndarray:
    return philox.normal(seed, _offset("normal", shape, dtype, step), shape, dtype, mean, std)


def _bernoulli_ref(*, shape, dtype, seed, p, step=0) -> np.ndarray:
    return philox.bernoulli(seed, _offset("bernoulli", shape, dtype, step), shape, p, dtype)


register(OpDef("random_uniform", "random", 0, ("shape", "dtype", "seed", "low", "high"),
               _float_infer, _uniform_ref, RANDOM_OUTPUT, {},
               "Uniform floats in [low, high)."))
register(OpDef("random_normal", "random", 0, ("shape", "dtype", "seed", "mean", "std"),
               _float_infer, _normal_ref, RANDOM_OUTPUT, {},
               "Normal floats (Box-Muller) of the given mean and std."))
register(OpDef("random_bernoulli", "random", 0, ("shape", "dtype", "seed", "p"),
               _bernoulli_infer, _bernoulli_ref, RANDOM_OUTPUT, {},
               "1 with probability p, else 0, in any dtype."))


# ---- public functions ----

def _shape_attr(shape) -> tuple:
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    return tuple(int(d) if isinstance(d, np.integer) else d for d in shape)


def _dtype_attr(op: str, dtype) -> np.dtype:
    try:
        return dtypes.as_dtype(dtype)
    except DTypeError as exc:
        raise DTypeError(f"{op}: {exc}\n  created at {user_site()}") from None


def uniform(shape, low: float = 0.0, high: float = 1.0, dtype=dtypes.float32,
            seed: int | None = None) -> Tensor:
    """Uniform floats in [low, high), fresh at every call of a compiled function."""
    return apply("random_uniform", [], shape=_shape_attr(shape),
                 dtype=_dtype_attr("random_uniform", dtype), seed=derived_seed(seed),
                 low=float(low), high=float(high))


def normal(shape, mean: float = 0.0, std: float = 1.0, dtype=dtypes.float32,
           seed: int | None = None) -> Tensor:
    """Normal floats of `mean` and `std`, fresh at every call of a compiled function."""
    return apply("random_normal", [], shape=_shape_attr(shape),
                 dtype=_dtype_attr("random_normal", dtype), seed=derived_seed(seed),
                 mean=float(mean), std=float(std))


def bernoulli(shape, p: float = 0.5, dtype=dtypes.float32, seed: int | None = None) -> Tensor:
    """1 with probability `p`, else 0, as `dtype` (bool, int or float)."""
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"random_bernoulli: p must be in [0, 1], got {p}"
                         f"\n  created at {user_site()}")
    return apply("random_bernoulli", [], shape=_shape_attr(shape),
                 dtype=_dtype_attr("random_bernoulli", dtype), seed=derived_seed(seed),
                 p=float(p))


def dropout(x, rate: float, seed: int | None = None) -> Tensor:
    """Inverted dropout: zero each element with probability `rate`, scale the rest by 1/(1-rate)."""
    x = as_tensor(x)
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"dropout: rate must be in [0, 1), got {rate}"
                         f"\n  created at {user_site()}")
    if rate == 0:
        return x
    keep = 1.0 - float(rate)
    mask = bernoulli(x.shape, keep, dtype=x.dtype, seed=seed)
    return x * mask / keep
