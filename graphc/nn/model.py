"""Keras's Model (functional API) and Sequential: a layer DAG with compile/fit/evaluate/predict.

    inputs = gc.nn.Input((64,))
    outputs = gc.nn.Dense(10, activation="softmax")(gc.nn.Dense(32, "relu")(inputs))
    model = gc.nn.Model(inputs, outputs)
    model.compile(gc.optim.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=32, epochs=5, validation_split=0.1)

The DAG is kept per example (no batch size); `compile` only records the settings, and each
batch size gets its own train / eval / predict function the first time it is used.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

import graphc as gc
from graphc import optim
from graphc.ir import Tensor
from graphc.runtime.device import DEVICE_ENV, real_devices
from graphc.nn import loops, mixed_precision
from graphc.nn import metrics as nn_metrics
from graphc.nn.base import Layer, deserialize_layer, register_layer, serialize_layer
from graphc.nn.functional import Input, KerasTensor, nodes_between, run_nodes
from graphc.nn.summary import model_summary
from graphc.nn.training import DEVICE_INTERPRET, Steps, resolve_loss
from graphc.nn import losses as nn_losses
from graphc.sites import user_site, user_stacklevel


def _unique(items) -> list:
    seen, out = set(), []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


_warned_no_device = False


def _default_device(device):
    """The device for compiled steps: the reference interpreter when there is no OpenCL
    device, or only a simulator (said once per process, at the user's line)."""
    global _warned_no_device
    if device is None and not os.environ.get(DEVICE_ENV) and not real_devices():
        if not _warned_no_device:
            _warned_no_device = True
            warnings.warn("no OpenCL device found: the model runs on the numpy reference "
                          "interpreter (slow). Install an OpenCL driver (`graphc devices` "
                          "lists what is found), or compile(..., device='interpret') to "
                          "choose the interpreter and silence this", NoDeviceWarning,
                          stacklevel=user_stacklevel())
        return DEVICE_INTERPRET
    return device


class NoDeviceWarning(UserWarning):
    """A model runs on the reference interpreter because no OpenCL device was found."""


@register_layer
class Model(Layer):
    """A DAG of layers from `inputs` to `outputs` (KerasTensors of the functional API)."""

    def __init__(self, inputs=None, outputs=None, name: str | None = None):
        super().__init__(name)
        self.inputs: list[KerasTensor] = []
        self.outputs: list[KerasTensor] = []
        self._nodes: list = []
        self.stop_training = False
        self.history = None
        self.optimizer: optim.Optimizer | None = None
        self.loss: nn_losses.Loss | None = None
        self.metrics: list[nn_metrics.Metric] = []
        self.compile_config: dict | None = None
        self.compile_site = ""
        self.device = None
        self._steps: Steps | None = None
        if inputs is not None or outputs is not None:
            self._set_graph(inputs, outputs)

    def _set_graph(self, inputs, outputs) -> None:
        self._single_input = not isinstance(inputs, (list, tuple))
        self._single_output = not isinstance(outputs, (list, tuple))
        self.inputs = [inputs] if self._single_input else list(inputs)
        self.outputs = [outputs] if self._single_output else list(outputs)
        for t in self.inputs + self.outputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"Model inputs and outputs must come from gc.nn.Input and layer"
                                f" calls on it, got {t!r}")
        if any(t.node is not None for t in self.inputs):
            raise ValueError("Model inputs must be gc.nn.Input tensors")
        self._nodes = nodes_between(self.inputs, self.outputs)
        shapes = [t.example_shape for t in self.inputs]
        self.input_shape = shapes[0] if self._single_input else shapes
        self.built = True
        self._steps = None

    # ---- structure ----

    @property
    def layers(self) -> list[Layer]:
        """Each layer once, in the order the DAG runs them."""
        return _unique(node.layer for node in self._nodes)

    @property
    def weights(self) -> list[Tensor]:
        return _unique(v for layer in self.layers for v in layer.weights)

    @property
    def trainable_weights(self) -> list[Tensor]:
        return _unique(v for layer in self.layers for v in layer.trainable_weights)

    @property
    def non_trainable_weights(self) -> list[Tensor]:
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable]

    def pop_updates(self) -> list[tuple[Tensor, Tensor]]:
        return [u for layer in self.layers for u in layer.pop_updates()] + super().pop_updates()

    def pop_losses(self) -> list[Tensor]:
        return [v for layer in self.layers for v in layer.pop_losses()] + super().pop_losses()

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called `name`, or model.layers[index] (graphc's layers hold no
        InputLayer, so index 0 is the first real layer)."""
        layers = self.layers
        if (name is None) == (index is None):
            raise ValueError("get_layer takes a name or an index (one of them)")
        if index is not None:
            if not -len(layers) <= int(index) < len(layers):
                raise ValueError(f"get_layer: index {index} is out of range: model "
                                 f"{self.name} has {len(layers)} layers")
            return layers[int(index)]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r} in {self.name} (layers: "
                         f"{', '.join(layer.name for layer in layers)})")

    # ---- the computation ----

    def forward(self, xs: list[Tensor], training: bool = False) -> list[Tensor]:
        """The outputs for real tensors `xs` (one per input)."""
        if not self.built:
            raise RuntimeError(f"model {self.name} is not built: give it an input shape")
        return run_nodes(self._nodes, self.inputs, list(xs), self.outputs, training)

    def call(self, x, training: bool = False):
        outputs = self.forward([x] if self._single_input else list(x), training)
        return outputs[0] if self._single_output else outputs

    def build_from_data(self, xs: list[np.ndarray]) -> None:
        """Build from the first batch of data (Sequential without an input shape)."""
        if not self.built:
            raise RuntimeError(f"model {self.name} has no inputs")

    def convert_inputs(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """Arrays as the inputs' dtypes (same kind only; feeds report the rest)."""
        if len(xs) != len(self.inputs):
            raise ValueError(f"model {self.name} takes {len(self.inputs)} inputs, got {len(xs)}")
        return [x.astype(t.dtype, copy=False) if x.dtype.kind == t.dtype.kind or
                (x.dtype.kind in "iub" and t.dtype.kind == "f") else x
                for x, t in zip(xs, self.inputs)]

    # ---- training ----

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, device=None,
                auto_scale_loss: bool = True) -> None:
        """Choose the optimizer, the loss and metrics, and the device (or 'interpret').
        Under the mixed_float16 policy the optimizer is wrapped in a LossScaleOptimizer
        (unless auto_scale_loss=False), as Keras does."""
        optimizer, loss = optim.get(optimizer), resolve_loss(loss)
        if auto_scale_loss and mixed_precision.uses_policy(self, "mixed_float16") and \
                not isinstance(optimizer, optim.LossScaleOptimizer):
            optimizer = optim.LossScaleOptimizer(optimizer)
        metrics = [nn_metrics.get(m) for m in (metrics or [])]
        self.compile_config = {
            "optimizer": optim.serialize(optimizer), "loss": nn_losses.serialize(loss),
            "metrics": [nn_metrics.serialize(m) for m in metrics]}
        for metric in metrics:
            metric.resolve(loss)
        self.optimizer, self.loss, self.metrics = optimizer, loss, metrics
        self.compile_site = user_site()       # the line of the loss's and optimizer's ops
        self.device = device
        self._steps = None

    def compiled_steps(self, allow_uncompiled: bool = False) -> Steps:
        """The per-batch-size compiled functions (made on first use)."""
        if self.optimizer is None and not allow_uncompiled:
            raise RuntimeError(f"model {self.name} must be compiled before training or "
                               f"evaluation: call model.compile(optimizer, loss)")
        if self._steps is None:
            self._steps = Steps(self, self.optimizer, self.loss, self.metrics,
                                _default_device(self.device))
        return self._steps

    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1,
            verbose="auto", callbacks=None, validation_split: float = 0.0,
            validation_data=None, shuffle: bool = True, initial_epoch: int = 0,
            seed: int | None = None, sample_weight=None, steps_per_epoch: int | None = None,
            validation_steps: int | None = None, class_weight=None):
        """Train epochs initial_epoch..epochs-1; returns a History. `x` and `y` are arrays (a
        list or a dict by input name for several inputs; y may be a dict by output name), or
        `x` is a loader, iterator or generator of (x, y) or (x, y, sample_weight) batches.
        `steps_per_epoch` bounds an epoch (on arrays the next epoch continues where it
        stopped). `class_weight` {class: weight} weighs each example by its class. The
        shuffle order is seeded by `seed` (or by gc.random's global seed), and a last
        partial batch is padded, not recompiled."""
        return loops.fit(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
                         validation_data, shuffle, initial_epoch, seed, sample_weight,
                         steps_per_epoch, validation_steps, class_weight)

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose=0,
                 return_dict: bool = False, sample_weight=None, steps: int | None = None):
        """The loss (and metrics: [loss, *metrics], or a dict) over the data (as fit's)."""
        return loops.evaluate(self, x, y, batch_size, verbose, return_dict, sample_weight,
                              steps)

    def predict(self, x, batch_size: int | None = None, verbose=0, steps: int | None = None):
        """The model's outputs for every example, in order (x as fit's, without targets)."""
        return loops.predict(self, x, batch_size, verbose, steps)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict: bool = False):
        """One training step on this batch (its own compiled size): the batch's loss, or
        [loss, *metrics], or a dict."""
        return loops.train_on_batch(self, x, y, sample_weight, class_weight, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict: bool = False):
        """The loss (and metrics) of this batch; nothing is updated."""
        return loops.test_on_batch(self, x, y, sample_weight, return_dict)

    def predict_on_batch(self, x):
        """The outputs for this batch."""
        return loops.predict_on_batch(self, x)

    # ---- description ----

    def summary(self, print_fn=print) -> str:
        """A table of layers (name and type), output shapes and parameter counts."""
        text = model_summary(self)
        print_fn(text)
        return text

    def _summary_inputs(self) -> list[KerasTensor]:
        return self.inputs

    # ---- saving ----

    def get_config(self) -> dict:
        layers = self.layers
        layer_index = {id(layer): i for i, layer in enumerate(layers)}
        node_index = {id(node): j for j, node in enumerate(self._nodes)}

        def ref(t: KerasTensor) -> list:
            if t.node is None:
                return ["input", self.inputs.index(t), 0]
            return ["node", node_index[id(t.node)], t.index]

        return {"name": self.name, "layers": [serialize_layer(layer) for layer in layers],
                "inputs": [{"shape": list(t.example_shape), "dtype": t.dtype.name,
                            "name": t.name} for t in self.inputs],
                "nodes": [{"layer": layer_index[id(n.layer)], "inputs": [ref(t) for t in n.inputs],
                           "list_input": n.list_input} for n in self._nodes],
                "outputs": [ref(t) for t in self.outputs],
                "single_input": self._single_input, "single_output": self._single_output}

    @classmethod
    def from_config(cls, config: dict) -> "Model":
        layers = [deserialize_layer(spec) for spec in config["layers"]]
        inputs = [Input(spec["shape"], spec["dtype"], spec["name"]) for spec in config["inputs"]]
        produced: list[list[KerasTensor]] = []

        def tensor(ref) -> KerasTensor:
            kind, i, k = ref
            return inputs[i] if kind == "input" else produced[i][k]

        for node in config["nodes"]:
            args = [tensor(r) for r in node["inputs"]]
            out = layers[node["layer"]](args if node["list_input"] else args[0])
            produced.append(list(out) if isinstance(out, (list, tuple)) else [out])
        outputs = [tensor(r) for r in config["outputs"]]
        return cls(inputs[0] if config["single_input"] else inputs,
                   outputs[0] if config["single_output"] else outputs, name=config["name"])

    def to_json(self, **kwargs) -> str:
        """The architecture as JSON text (no weights); gc.nn.model_from_json reads it."""
        from graphc.nn.model_json import to_json
        return to_json(self, **kwargs)

    def save(self, path) -> None:
        """Architecture, weights and optimizer state in one .npz file, written atomically."""
        from graphc.nn.saving import save_model
        save_model(self, path)

    def save_weights(self, path) -> None:
        """Only the weights, in one .npz file, written atomically."""
        from graphc.nn.saving import save_weights
        save_weights(self, path)

    def load_weights(self, path) -> None:
        """Weights saved by save_weights (or save) of a model of the same architecture."""
        from graphc.nn.saving import load_weights
        load_weights(self, path)

    def export(self, path, batch_size: int = 32):
        """The inference step (predict's) for batches of `batch_size`, as a folder that
        graphc.runtime.load runs and graphc serve serves (graphc/export.py)."""
        from graphc.export import export_model
        return export_model(self, path, batch_size)


@register_layer
class Sequential(Model):
    """A stack of layers, each fed the previous one's output.

    The input shape comes from a leading gc.nn.Input, a first layer's `input_shape=`,
    `build(input_shape)`, or the data of the first fit/evaluate/predict.
    """

    def __init__(self, layers=None, name: str | None = None):
        super().__init__(name=name)
        self._layers: list[Layer] = []
        self._input: KerasTensor | None = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer) -> None:
        """Append a layer (or, first, a gc.nn.Input giving the input shape)."""
        if isinstance(layer, KerasTensor):
            if layer.node is not None or self._layers or self._input is not None:
                raise ValueError("Sequential: only a gc.nn.Input may come first, and only once")
            self._input = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add takes a gc.nn layer, got {layer!r}")
        self._layers.append(layer)
        declared = getattr(layer, "declared_input_shape", None)
        if self._input is None and len(self._layers) == 1 and declared is not None:
            self._input = Input(declared, name=f"{self.name}_input")
        self.built = False
        if self._input is not None:
            self._connect()

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        layer = self._layers.pop()
        self.built = False
        if self._input is not None and self._layers:
            self._connect()
        return layer

    def _connect(self) -> None:
        x = self._input
        for layer in self._layers:
            x = layer(x)
        self._set_graph(self._input, x)

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def build(self, input_shape=None, dtype=gc.float32) -> None:
        """Fix the per-example input shape (no batch axis) and build every layer."""
        if self._input is None:
            if input_shape is None:
                raise ValueError("Sequential.build needs an input shape")
            self._input = Input(input_shape, dtype, name=f"{self.name}_input")
        if not self._layers:
            raise ValueError("Sequential: add layers before building")
        self._connect()

    def build_from_data(self, xs: list[np.ndarray]) -> None:
        if not self.built:
            dtype = gc.int32 if xs[0].dtype.kind in "iu" else gc.float32
            self.build(xs[0].shape[1:], dtype)

    def __call__(self, x, training: bool = False):
        if not self.built and isinstance(x, Tensor):
            self.build(x.shape[1:], x.dtype)
        return super().__call__(x, training)

    def _summary_inputs(self) -> list[KerasTensor]:
        return []

    def get_config(self) -> dict:
        source = None if self._input is None else {
            "shape": list(self._input.example_shape), "dtype": self._input.dtype.name}
        return {"name": self.name, "layers": [serialize_layer(layer) for layer in self._layers],
                "input": source}

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        model = cls([deserialize_layer(spec) for spec in config["layers"]], name=config["name"])
        if config.get("input") and not model.built:
            model.build(config["input"]["shape"], config["input"]["dtype"])
        return model
