"""Keras's functional API: symbolic inputs without a batch size, and the layer DAG.

`Input(shape)` gives a `KerasTensor`: a per-example shape and dtype, no graph. Calling a
layer on KerasTensors records a `LayerNode` (the layer, its inputs, its outputs) and
returns new KerasTensors; the layer is built then, and its output shapes and dtypes are
found by running it once on batch-1 placeholders. A `Model` keeps the nodes between its
inputs and outputs and replays them on real placeholders once the batch size is known.
"""
from __future__ import annotations

import itertools

import numpy as np

import graphc as gc
from graphc import dtypes

_input_ids = itertools.count()


class KerasTensor:
    """A symbolic per-example value of the functional API (the batch axis is left open)."""

    _graphc_symbolic = True

    def __init__(self, shape, dtype, node: "LayerNode | None" = None, index: int = 0,
                 name: str | None = None):
        self.example_shape = tuple(int(d) for d in shape)
        self.dtype = dtypes.as_dtype(dtype)
        self.node = node
        self.index = index
        self.name = name

    @property
    def shape(self) -> tuple:
        """(None, *per-example shape), as Keras prints it."""
        return (None,) + self.example_shape

    @property
    def ndim(self) -> int:
        return len(self.example_shape) + 1

    def __repr__(self) -> str:
        source = self.node.layer.name if self.node else "input"
        return f"<KerasTensor shape={self.shape} dtype={self.dtype.name} from {source}>"


class LayerNode:
    """One call of a layer in the DAG: `outputs = layer(inputs)`."""

    def __init__(self, layer, inputs: list[KerasTensor], list_input: bool):
        self.layer = layer
        self.inputs = inputs
        self.list_input = list_input
        self.outputs: list[KerasTensor] = []
        self.list_output = False

    def run(self, values: list[gc.Tensor], training: bool) -> list[gc.Tensor]:
        """Apply the layer to real tensors standing for `inputs`."""
        out = self.layer(values if self.list_input else values[0], training=training)
        return list(out) if isinstance(out, (list, tuple)) else [out]


def Input(shape, dtype=gc.float32, name: str | None = None) -> KerasTensor:  # noqa: N802
    """A model input of per-example `shape` (no batch axis), as keras.Input."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(d is None for d in shape):
        raise ValueError(f"Input: graphc needs static shapes, got {shape} (None is not allowed)")
    return KerasTensor(shape, dtype, name=name or f"input_{next(_input_ids)}")


def is_symbolic(x) -> bool:
    """True for a KerasTensor or a list holding one."""
    if isinstance(x, (list, tuple)):
        return any(getattr(v, "_graphc_symbolic", False) for v in x)
    return getattr(x, "_graphc_symbolic", False)


def call_symbolic(layer, x):
    """Record `layer(x)` on KerasTensors: build the layer, probe its outputs, return new ones."""
    list_input = isinstance(x, (list, tuple))
    inputs = list(x) if list_input else [x]
    if not all(isinstance(v, KerasTensor) for v in inputs):
        raise TypeError(f"layer {layer.name}: cannot mix KerasTensors and other values: "
                        f"{inputs!r}")
    probes = [gc.placeholder((1,) + t.example_shape, t.dtype, name=f"probe_{i}")
              for i, t in enumerate(inputs)]
    out = layer(probes if list_input else probes[0], training=False)
    layer.pop_updates()
    layer.pop_losses()
    node = LayerNode(layer, inputs, list_input)
    node.list_output = isinstance(out, (list, tuple))
    outs = list(out) if node.list_output else [out]
    node.outputs = [KerasTensor(o.shape[1:], o.dtype, node, i) for i, o in enumerate(outs)]
    return node.outputs if node.list_output else node.outputs[0]


def nodes_between(inputs: list[KerasTensor], outputs: list[KerasTensor]) -> list[LayerNode]:
    """The nodes that lead from `inputs` to `outputs`, in an order that runs them."""
    known = set(inputs)
    order: list[LayerNode] = []
    seen: set = set()
    stack: list[tuple[KerasTensor, bool]] = [(t, False) for t in reversed(outputs)]
    while stack:
        tensor, expanded = stack.pop()
        if tensor in known:
            continue
        node = tensor.node
        if node is None:
            raise ValueError(f"the model's outputs depend on {tensor!r}, which is not among"
                             f" its inputs: the graph is disconnected")
        if expanded:
            if node not in seen:
                seen.add(node)
                order.append(node)
                known.update(node.outputs)
            continue
        stack.append((tensor, True))
        stack.extend((t, False) for t in reversed(node.inputs) if t not in known)
    return order


def run_nodes(nodes: list[LayerNode], inputs: list[KerasTensor], values: list[gc.Tensor],
              outputs: list[KerasTensor], training: bool) -> list[gc.Tensor]:
    """Replay the DAG on real tensors `values` standing for `inputs`."""
    env: dict = dict(zip(inputs, values))
    for node in nodes:
        results = node.run([env[t] for t in node.inputs], training)
        env.update(zip(node.outputs, results))
    return [env[t] for t in outputs]
