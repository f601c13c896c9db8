"""The Layer contract every gc.nn layer follows.

A layer is configured in its constructor (plain, JSON-serializable settings), creates its
variables in `build(input_shape)` once the per-example input shape is known, and maps a
symbolic batch to a symbolic batch in `call(x, training)`. Shapes exclude the batch axis
(as in Keras), because a model is compiled once per batch size over the same variables.
State that changes during training (BatchNormalization's running statistics) is returned
as update pairs by `add_update` during a training-mode `call`.
"""
from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
import re

import numpy as np

import graphc as gc
from graphc.nn import initializers, layer_options, mixed_precision
from graphc.nn.functional import call_symbolic, is_symbolic
from graphc.sites import creation_site, name_scope

_layer_ids = itertools.count()
REGISTRY: dict[str, type] = {}
MAX_LOADED_STEPS = 10_000


class LoadLimits:
    """What a model rebuilt from a file may allocate and unroll: no more weight values than
    the file stores (so a declared input of 2e7 features cannot allocate gigabytes before
    any check), and a bounded number of recurrent time steps. `fail(text)` makes the error."""

    def __init__(self, weight_values: int, fail):
        self.left, self.fail = int(weight_values), fail

    def weight(self, layer: str, name: str, shape) -> None:
        values = math.prod(int(d) for d in shape)
        if values > self.left:
            raise self.fail(f"layer {layer} would create weight {name} of shape {tuple(shape)}"
                            f" ({values:,} values), more than the file's weights hold "
                            f"({self.left:,} values left)")
        self.left -= values

    def steps(self, layer: str, count: int) -> None:
        if count > MAX_LOADED_STEPS:
            raise self.fail(f"layer {layer} would unroll {count:,} time steps (a loaded model "
                            f"may declare at most {MAX_LOADED_STEPS:,})")


_load_limits: contextvars.ContextVar[LoadLimits | None] = contextvars.ContextVar(
    "load_limits", default=None)


@contextlib.contextmanager
def load_limits(limits: LoadLimits):
    """Layers built inside this block check their sizes against `limits`."""
    token = _load_limits.set(limits)
    try:
        yield limits
    finally:
        _load_limits.reset(token)


def check_unroll(layer: str, steps: int) -> None:
    """Refuse, while loading a file, to unroll more time steps than a file may declare."""
    limits = _load_limits.get()
    if limits is not None:
        limits.steps(layer, steps)


def register_layer(cls: type) -> type:
    """Make a layer class loadable by name from a saved architecture."""
    REGISTRY[cls.__name__] = cls
    return cls


def serialize_layer(layer: Layer) -> dict:
    """{'class_name', 'config'} of a registered layer."""
    if REGISTRY.get(type(layer).__name__) is not type(layer):
        raise ValueError(f"layer class {type(layer).__name__} is not registered: decorate it"
                         f" with @gc.nn.register_layer to save it")
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize_layer(spec: dict) -> Layer:
    """The layer `serialize_layer` described."""
    name = spec.get("class_name")
    if name not in REGISTRY:
        raise ValueError(f"unknown layer class {name!r} (registered: "
                         f"{', '.join(sorted(REGISTRY))})")
    return REGISTRY[name].from_config(spec["config"])


def _snake(name: str) -> str:
    """Keras's layer-name rule: MaxPool2D -> max_pool2d, LSTM -> lstm, SimpleRNN -> simple_rnn."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _example_shape(x):
    """Per-example shape of a batch, or a list of them for a list of inputs."""
    if isinstance(x, (list, tuple)):
        return [tuple(t.shape[1:]) for t in x]
    return tuple(x.shape[1:])


class Layer:
    """Base class: settings in __init__, variables in build, the computation in call.

    Every layer also takes Keras's `kernel_regularizer`, `bias_regularizer`,
    `activity_regularizer`, `kernel_constraint`, ... and `dtype` (a dtype policy) without
    declaring them (graphc.nn.layer_options).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "__graphc_options__", False):
            cls.__init__ = layer_options.accepting_options(init)

    def __init__(self, name: str | None = None, input_shape=None):
        self.name = name or f"{_snake(type(self).__name__)}_{next(_layer_ids)}"
        # the user's line that made this layer: the site of every op it builds
        self.created_at = creation_site(self)
        self.built = False
        self.input_shape: tuple[int, ...] | None = None
        # Keras's `input_shape=` on a first layer: where a Sequential model starts
        self.declared_input_shape = None if input_shape is None else tuple(input_shape)
        self._weights: list[tuple[str, gc.Tensor, bool]] = []
        self._updates: list[tuple[gc.Tensor, gc.Tensor]] = []
        self._losses: list[gc.Tensor] = []
        self.dtype_policy = mixed_precision.global_policy()
        self._weight_options: dict = {}
        self._regularized: list = []          # (variable, regularizer)
        self._constrained: list = []          # (variable, constraint, Keras-layout view)
        self._no_autocast: set[int] = set()

    @property
    def compute_dtype(self) -> np.dtype:
        """The dtype of the layer's math (its policy's)."""
        return self.dtype_policy.compute_dtype

    @property
    def variable_dtype(self) -> np.dtype:
        """The dtype of the layer's weights (its policy's)."""
        return self.dtype_policy.variable_dtype

    # ---- to override ----

    def build(self, input_shape: tuple[int, ...]) -> None:
        """Create variables for per-example inputs of `input_shape` (no batch axis)."""

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        """The symbolic computation over a batch."""
        raise NotImplementedError

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-example output shape; by default found by building the graph once."""
        probe = gc.placeholder((1,) + tuple(input_shape), gc.float32, name="probe")
        return self(probe, training=False).shape[1:]

    def get_config(self) -> dict:
        """JSON-serializable constructor arguments."""
        return {"name": self.name, **layer_options.options_config(self)}

    # ---- shared machinery ----

    def __call__(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        if is_symbolic(x):                  # functional API: record a node in the layer DAG
            return call_symbolic(self, x)
        # ops and weights are named `dense_3/...` and carry the line that made the layer
        with name_scope(self.name, getattr(self, "created_at", "")):
            if not self.built:
                self.input_shape = _example_shape(x)
                self.build(self.input_shape)
                self.built = True
                layer_options.check_options_used(self)
            return layer_options.run_call(self, x, training)

    def add_weight(self, *args, shape=None, initializer=None, dtype=None,
                   trainable: bool = True, autocast: bool = True, regularizer=None,
                   constraint=None, name: str | None = None) -> gc.Tensor:
        """A variable owned by this layer, Keras's signature: `shape`, `initializer` (a name
        such as 'random_normal', an Initializer or a function of the shape; default
        glorot_uniform, zeros for integers), `dtype` (default the policy's variable dtype),
        `trainable`, `autocast` (read in the compute dtype under a mixed policy),
        `regularizer`, `constraint`, `name`. graphc's older positional form
        add_weight(name, shape, initializer, trainable, dtype) is accepted too."""
        if args:
            keys = ("name", "shape", "initializer", "trainable", "dtype") \
                if isinstance(args[0], str) else ("shape", "initializer", "dtype")
            if len(args) > len(keys):
                raise TypeError(f"add_weight takes at most {len(keys)} positional arguments "
                                f"({', '.join(keys)}), got {len(args)}")
            given = dict(zip(keys, args))
            name, shape = given.get("name", name), given.get("shape", shape)
            initializer = given.get("initializer", initializer)
            dtype, trainable = given.get("dtype", dtype), given.get("trainable", trainable)
        name = name or (f"variable_{len(self._weights)}" if self._weights else "variable")
        shape = tuple(int(d) for d in (() if shape is None else shape))
        dtype = np.dtype(self.variable_dtype if dtype is None else dtype)
        initializer = initializers.get(initializer if initializer is not None else
                                       "glorot_uniform" if dtype.kind == "f" else "zeros")
        limits = _load_limits.get()
        if limits is not None:          # before the initializer allocates anything
            limits.weight(self.name, name, shape)
        value = np.asarray(initializer(shape), dtype=dtype)
        variable = gc.variable(value, name=f"{self.name}/{name}")
        self._weights.append((name, variable, bool(trainable)))
        self._track_weight(name, variable, regularizer, constraint, autocast)
        return variable

    def _track_weight(self, name: str, variable, regularizer, constraint, autocast) -> None:
        """Regularizer and constraint (given, or from the layer's settings), autocast."""
        from graphc.nn import constraints, regularizers
        regularizer = regularizers.get(regularizer) or \
            layer_options.option_for(self, name, "regularizer")
        constraint = constraints.get(constraint) or \
            layer_options.option_for(self, name, "constraint")
        if regularizer is not None:
            self._regularized.append((variable, regularizer))
        if constraint is not None:
            view = layer_options.keras_view(self, name, tuple(variable.shape))
            self._constrained.append((variable, constraint, view))
        if not autocast:
            self._no_autocast.add(id(variable))

    def add_update(self, variable: gc.Tensor, value: gc.Tensor) -> None:
        """A state update applied by each training step (e.g. running statistics)."""
        self._updates.append((variable, value))

    def pop_updates(self) -> list[tuple[gc.Tensor, gc.Tensor]]:
        """Updates collected by training-mode calls since the last pop."""
        updates, self._updates = self._updates, []
        return updates

    def add_loss(self, value: gc.Tensor) -> None:
        """A scalar a `call` adds to the model's loss (a KL term, a weight penalty)."""
        self._losses.append(value)

    def pop_losses(self) -> list[gc.Tensor]:
        """Losses added by calls since the last pop."""
        losses, self._losses = self._losses, []
        return losses

    @property
    def weights(self) -> list[gc.Tensor]:
        return [v for _, v, _ in self._weights]

    @property
    def trainable_weights(self) -> list[gc.Tensor]:
        return [v for _, v, trainable in self._weights if trainable]

    def get_weights(self) -> list[np.ndarray]:
        """The current values of this layer's variables (device copies read back)."""
        return [v.get_value() for v in self.weights]

    def set_weights(self, values) -> None:
        """Set every variable, in the order of `weights`; shapes must match."""
        values = list(values)
        if len(values) != len(self.weights):
            raise ValueError(f"{self.name}: set_weights got {len(values)} arrays for "
                             f"{len(self.weights)} variables")
        for variable, value in zip(self.weights, values):
            variable.set_value(value)

    def count_params(self) -> int:
        """Number of scalars in this layer's variables."""
        return int(sum(v.size for v in self.weights))

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        return cls(**config)


Layer.__init__ = layer_options.accepting_options(Layer.__init__)
