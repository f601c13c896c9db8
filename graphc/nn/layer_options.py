"""The Keras settings every layer takes without declaring them: weight regularizers and
constraints by weight (`kernel_regularizer`, `bias_constraint`, `recurrent_regularizer`,
`embeddings_constraint`, ...), `activity_regularizer`, and `dtype` (a dtype policy).

`Layer.__init_subclass__` wraps each layer class's __init__ with `accepting_options`: the
wrapper takes these keywords out, calls the layer's own __init__, then records them on the
layer; `Layer.get_config` saves them. A `<prefix>_regularizer` or `<prefix>_constraint`
applies to the layer's weight named by WEIGHT_PREFIXES (`kernel`, `recurrent_kernel`, ...);
one given to a layer that makes no such weight is an error when the layer is built.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import warnings

import graphc as gc
from graphc.nn import constraints as nn_constraints
from graphc.nn import mixed_precision
from graphc.nn import regularizers as nn_regularizers
from graphc.sites import user_stacklevel

WEIGHT_PREFIXES = {"kernel": "kernel", "bias": "bias", "recurrent": "recurrent_kernel",
                   "embeddings": "embeddings", "depthwise": "depthwise_kernel",
                   "pointwise": "pointwise_kernel", "gamma": "gamma", "beta": "beta"}
WEIGHT_OPTIONS = tuple(f"{prefix}_{kind}" for prefix in WEIGHT_PREFIXES
                       for kind in ("regularizer", "constraint"))
OPTIONS = WEIGHT_OPTIONS + ("activity_regularizer",)


def _weight_of(option: str) -> tuple[str, str]:
    """('kernel', 'regularizer') for 'kernel_regularizer'."""
    prefix, kind = option.rsplit("_", 1)
    return WEIGHT_PREFIXES[prefix], kind


def accepting_options(init):
    """`init` wrapped to take OPTIONS and `dtype` / `dtype_policy` whether it declares them
    or not (a declared `dtype` gets the policy's variable dtype)."""
    declares_dtype = "dtype" in inspect.signature(init).parameters

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in OPTIONS}
        policy, explicit = None, False
        if "dtype" in kwargs:           # explicit where it differs from the global policy
            policy = mixed_precision.policy_of(kwargs.pop("dtype"))
            explicit = policy != mixed_precision.global_policy()
        if "dtype_policy" in kwargs:    # as saved by get_config: always explicit
            policy, explicit = mixed_precision.policy_of(kwargs.pop("dtype_policy")), True
        if declares_dtype and (policy is not None or
                               mixed_precision.global_policy().name != "float32"):
            kwargs["dtype"] = (policy or mixed_precision.global_policy()).variable_dtype.name
        init(self, *args, **kwargs)
        if options:
            set_options(self, options)
        if policy is not None:
            self.dtype_policy, self._explicit_policy = policy, explicit
    wrapped.__graphc_options__ = True
    return wrapped


def set_options(layer, options: dict) -> None:
    """Record regularizers and constraints (checked now, applied when weights are made)."""
    table = getattr(layer, "_weight_options", None)
    if table is None:
        table = layer._weight_options = {}
    for key, value in options.items():
        if key.endswith("_constraint"):
            table[key] = nn_constraints.get(value)
        else:
            table[key] = nn_regularizers.get(value)
    for key in [k for k, v in table.items() if v is None]:
        del table[key]


def _names(name: str, weight: str) -> bool:
    """Weight `name` is `weight`, or a part's (`query/kernel` for MultiHeadAttention)."""
    return name == weight or name.endswith("/" + weight)


def option_for(layer, name: str, kind: str):
    """The regularizer or constraint the layer's settings give its weight `name`."""
    table = getattr(layer, "_weight_options", {})
    for option, value in table.items():
        if option == "activity_regularizer":
            continue
        weight, option_kind = _weight_of(option)
        if option_kind == kind and _names(name, weight):
            return value
    return None


def check_options_used(layer) -> None:
    """After build: warn about a weight option naming no weight the layer made (a
    Flatten's kernel_regularizer; a bias_regularizer with use_bias=False)."""
    made = {name for name, _, _ in layer._weights}
    for option in getattr(layer, "_weight_options", {}):
        if option == "activity_regularizer":
            continue
        weight, _ = _weight_of(option)
        if not any(_names(name, weight) for name in made):
            warnings.warn(f"layer {layer.name} ({type(layer).__name__}) has no weight "
                          f"{weight!r}: its {option} does nothing (its weights: "
                          f"{', '.join(sorted(made)) or 'none'})", UserWarning,
                          stacklevel=user_stacklevel())


def options_config(layer) -> dict:
    """The options for get_config (only those set, so older configs stay as they were)."""
    config = {}
    for option, value in getattr(layer, "_weight_options", {}).items():
        serialize = nn_constraints.serialize if option.endswith("_constraint") else \
            nn_regularizers.serialize
        config[option] = serialize(value)
    policy = getattr(layer, "dtype_policy", None)
    if policy is not None and (policy.name != "float32" or
                               getattr(layer, "_explicit_policy", False)):
        config["dtype_policy"] = policy.name
    return config


# ---- calls under a policy ----

def _cast_floats(x, dtype):
    if isinstance(x, (list, tuple)):
        return type(x)(_cast_floats(v, dtype) for v in x)
    if isinstance(x, gc.Tensor) and x.dtype.kind == "f" and x.dtype != dtype:
        return gc.cast(x, dtype)
    return x


@contextlib.contextmanager
def _variables_read_as(layer, dtype):
    """Attributes of `layer` holding its float variables read through casts to `dtype`."""
    own = {id(v) for v in layer.weights if v.dtype.kind == "f" and v.dtype != dtype
           and id(v) not in layer._no_autocast}
    swapped = {name: value for name, value in vars(layer).items()
               if isinstance(value, gc.Tensor) and id(value) in own}
    for name, value in swapped.items():
        setattr(layer, name, gc.cast(value, dtype))
    try:
        yield
    finally:
        for name, value in swapped.items():
            setattr(layer, name, value)


def run_call(layer, x, training: bool):
    """layer.call under its dtype policy, plus its activity penalty."""
    policy = getattr(layer, "dtype_policy", None)
    # the default float32 policy casts nothing (float64 data runs in float64), unless the
    # layer was given it (dtype="float32": an output layer of a mixed model)
    plain = policy is None or (policy.name == "float32" and
                               not getattr(layer, "_explicit_policy", False))
    compute = None if plain else policy.compute_dtype
    if compute is None or getattr(layer, "layers", None) is not None:
        out = layer.call(x, training=training)            # no policy, or a whole model
    elif compute.itemsize < 4 and type(layer).__name__ in mixed_precision.FLOAT32_LAYERS:
        out = _cast_floats(layer.call(_cast_floats(x, gc.float32), training=training),
                           compute)
    else:
        with _variables_read_as(layer, compute):
            out = layer.call(_cast_floats(x, compute), training=training)
    regularizer = getattr(layer, "_weight_options", {}).get("activity_regularizer")
    if regularizer is not None:
        for value in (out if isinstance(out, (list, tuple)) else [out]):
            layer.add_loss(nn_regularizers.activity_penalty(regularizer, value))
    return out


# ---- what a training step adds ----

def leaf_layers(model) -> list:
    """Every layer of `model` that is not itself a model, once, in order; a wrapper's
    (Bidirectional, TimeDistributed) inner layers as well as the wrapper."""
    found, stack, seen = [], list(reversed(model.layers)), set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        inner = getattr(layer, "layers", None)
        if inner is not None:
            stack.extend(reversed(inner))
            continue
        found.append(layer)
        if callable(getattr(layer, "inner_layers", None)):
            stack.extend(reversed(layer.inner_layers()))
    return found


def weight_penalties(model) -> list:
    """Each regularized variable's penalty, once per variable, as float32 scalars."""
    penalties, seen = [], set()
    for layer in leaf_layers(model):
        for variable, regularizer in getattr(layer, "_regularized", []):
            if id(variable) not in seen:
                seen.add(id(variable))
                penalties.append(gc.cast(regularizer(variable), gc.float32))
    return penalties


def constrained(model, updates: list) -> list:
    """`updates` with each constrained variable's new value projected by its constraint."""
    projections = {}
    for layer in leaf_layers(model):
        for variable, constraint, view in getattr(layer, "_constrained", []):
            projections[id(variable)] = (constraint, view)
    if not projections:
        return updates
    result = []
    for variable, value in updates:
        if id(variable) in projections:
            constraint, view = projections[id(variable)]
            value = _project(constraint, value, view)
        result.append((variable, value))
    return result


def _project(constraint, value, view):
    """constraint(value), seen in Keras's layout of the weight when `view` says it differs."""
    if view is None:
        return constraint(value)
    to_keras, from_keras = view
    return from_keras(constraint(to_keras(value)))


_CONVOLUTIONS = {"Conv1D", "Conv2D", "Conv2DTranspose", "BaseConv"}


def keras_view(layer, name: str, shape: tuple[int, ...]):
    """(to_keras, from_keras) between graphc's layout of a convolution's weight and Keras's
    (constraint axes count in Keras's), or None where they agree. graphc stores kernels
    channels first: (out, in, *k) for Keras's (*k, in, out), and a depthwise kernel
    (channels * m, 1, *k) for Keras's (*k, channels, m)."""
    classes = {cls.__name__ for cls in type(layer).__mro__}
    depthwise = name == "depthwise_kernel" or (name == "kernel" and
                                               "DepthwiseConv2D" in classes)
    if depthwise and len(shape) == 4:
        m = int(getattr(layer, "depth_multiplier", 1))
        grouped = (shape[0] // m, m) + tuple(shape[2:])
        return (lambda w: gc.transpose(gc.reshape(w, grouped), (2, 3, 0, 1)),
                lambda k: gc.reshape(gc.transpose(k, (2, 3, 0, 1)), shape))
    if classes & _CONVOLUTIONS and name in ("kernel", "pointwise_kernel") and len(shape) > 2:
        rank = len(shape) - 2
        axes = tuple(range(2, rank + 2)) + (1, 0)
        back = tuple(axes.index(i) for i in range(len(axes)))
        return (lambda w: gc.transpose(w, axes), lambda k: gc.transpose(k, back))
    return None
