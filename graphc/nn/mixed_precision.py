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

import warnings

import numpy as np

from graphc.errors import DTypeError
from graphc.sites import user_stacklevel

__all__ = ["Policy", "DTypePolicy", "set_global_policy", "global_policy",
           "LossScaleOptimizer", "FLOAT32_LAYERS", "Float16Warning"]

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


def uses_policy(model, name: str) -> bool:
    """Whether any layer of `model` (nested models included) has policy `name`."""
    from graphc.nn.layer_options import leaf_layers
    return any(getattr(layer, "dtype_policy", None) == Policy(name)
               for layer in leaf_layers(model))


def computes_in_float16(model) -> bool:
    """Whether any layer of `model` computes in float16."""
    from graphc.nn.layer_options import leaf_layers
    return any(getattr(getattr(layer, "dtype_policy", None), "compute_dtype", None) ==
               np.float16 for layer in leaf_layers(model))


_float16_probes: dict = {}
_warned: set = set()


class Float16Warning(UserWarning):
    """A float16 model runs on a device without cl_khr_fp16 (half storage, float math)."""


def check_float16_device(device) -> None:
    """DTypeError unless `device` runs float16 graphs: it has cl_khr_fp16, or graphc's code
    generator stores half there and computes in float (probed once per device; that case
    warns once, Float16Warning: no speed to gain there)."""
    import graphc as gc
    from graphc.runtime import select_device
    target = select_device(device)
    if target.fp16:
        return
    key = (target.platform_name, target.name)
    if key not in _float16_probes:
        probe = gc.placeholder((4,), gc.float16, name="float16_probe")
        try:
            gc.function([probe], probe * 2.0 + 1.0, device=target, name="float16_probe")
            _float16_probes[key] = None
        except gc.CompileError as exc:
            _float16_probes[key] = str(exc).splitlines()[0]
    if _float16_probes[key] is None:
        if key not in _warned:
            _warned.add(key)
            warnings.warn(
                f"device {target.name!r} has no cl_khr_fp16: the model's float16 values are "
                f"stored as half and computed in float, which saves memory but is slower than"
                f" the float32 policy (float16 matrix products do not run on graphc's tuned "
                f"GEMM kernels); use the float32 policy for speed on this device",
                Float16Warning, stacklevel=user_stacklevel())
        return
    raise DTypeError(
        f"the model computes in float16 (dtype policy mixed_float16 or float16), but device "
        f"{target.name!r} has no cl_khr_fp16 and this graphc cannot run float16 there "
        f"({_float16_probes[key]}). Use a device with half support (`graphc devices` shows "
        f"fp16), the float32 policy, or compile(device='interpret')")


def __getattr__(name: str):
    if name == "LossScaleOptimizer":        # graphc.optim imports graphc.nn: import late
        from graphc.optim.loss_scale import LossScaleOptimizer
        return LossScaleOptimizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
