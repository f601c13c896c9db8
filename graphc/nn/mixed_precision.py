"""Keras's dtype policies and mixed precision.

    gc.nn.mixed_precision.set_global_policy("mixed_float16")
    model = ...                     # layers made from now on compute in float16,
    model.compile(opt, loss)        # keep float32 variables, and compile() wraps the
                                    # optimizer in a LossScaleOptimizer (dynamic scale)

A layer takes the global policy when it is made (or `dtype=` a policy name, e.g. an output
layer's `dtype="float32"`). Under a mixed policy its float inputs are cast to the compute
dtype and its float variables are read through a cast (the variables, their gradients and
the optimizer's state stay float32); normalization layers compute their statistics in
float32 and cast back (as Keras's). The loss and the metrics take float32 predictions.

float16 arithmetic needs a device with cl_khr_fp16; graphc.nn refuses, with a clear
error, to compile a float16 step for a device without it (the interpreter runs it).
"""
from __future__ import annotations

import numpy as np

from graphc.errors import DTypeError

__all__ = ["Policy", "DTypePolicy", "set_global_policy", "global_policy",
           "LossScaleOptimizer", "FLOAT32_LAYERS"]

POLICIES = {"float32": ("float32", "float32"), "float64": ("float64", "float64"),
            "float16": ("float16", "float16"), "mixed_float16": ("float16", "float32")}
# layers whose statistics are computed in float32 under a float16 policy (Keras upcasts)
FLOAT32_LAYERS = frozenset({"BatchNormalization", "LayerNormalization"})


class Policy:
    """A dtype policy: `compute_dtype` for the layer's math, `variable_dtype` for its
    weights. Names: float32 (default), float64, float16, mixed_float16."""

    def __init__(self, name: str = "float32"):
        if isinstance(name, Policy):
            name = name.name
        name = np.dtype(name).name if not isinstance(name, str) else name
        if name not in POLICIES:
            hint = (" (graphc has no bfloat16: use mixed_float16)" if "bfloat16" in name
                    else "")
            raise DTypeError(f"unknown dtype policy {name!r}{hint}; policies: "
                             f"{', '.join(POLICIES)}")
        self.name = name
        compute, variable = POLICIES[name]
        self.compute_dtype, self.variable_dtype = np.dtype(compute), np.dtype(variable)

    @property
    def is_mixed(self) -> bool:
        return self.compute_dtype != self.variable_dtype

    def __eq__(self, other) -> bool:
        return isinstance(other, Policy) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f'<Policy "{self.name}">'


DTypePolicy = Policy
_global = Policy("float32")


def set_global_policy(policy) -> None:
    """The policy of layers made from now on: a name or a Policy (None for float32)."""
    global _global
    _global = Policy("float32" if policy is None else policy)


def global_policy() -> Policy:
    """The policy new layers take."""
    return _global


def policy_of(value) -> Policy:
    """A layer's `dtype=` argument (a dtype or a policy name) as a Policy."""
    return Policy(value)


def __getattr__(name: str):
    if name == "LossScaleOptimizer":        # graphc.optim imports graphc.nn: import late
        from graphc.optim.loss_scale import LossScaleOptimizer
        return LossScaleOptimizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
