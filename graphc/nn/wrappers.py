"""Layer wrappers: Bidirectional and TimeDistributed (Keras 3's names and arguments).

A wrapper owns the layers it wraps: their weights are its weights (in the order Keras
lists them), their state updates and added losses are its own, and its config holds theirs,
so a model saves and loads them as any layer.
"""
from __future__ import annotations

import graphc as gc
from graphc.nn.base import Layer, deserialize_layer, register_layer, serialize_layer

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class _Wrapper(Layer):
    """Shared machinery: inner layers, their weights, updates and losses."""

    def inner_layers(self) -> list[Layer]:
        raise NotImplementedError

    def _adopt_weights(self) -> None:
        """The inner layers' weights as this layer's (after the call that built them)."""
        self._weights = [entry for layer in self.inner_layers() for entry in layer._weights]

    def __call__(self, x, training: bool = False):
        out = super().__call__(x, training=training)
        self._adopt_weights()
        return out

    def pop_updates(self):
        return [u for layer in self.inner_layers() for u in layer.pop_updates()] \
            + super().pop_updates()

    def pop_losses(self):
        return [v for layer in self.inner_layers() for v in layer.pop_losses()] \
            + super().pop_losses()


@register_layer
class Bidirectional(_Wrapper):
    """A recurrent layer run forwards and, as a copy with go_backwards flipped, backwards;
    the two outputs merged by `merge_mode` ('concat', 'sum', 'mul', 'ave', or None for the
    pair). With return_sequences the backward outputs are put back in time order first.
    The forward layer is the one given (its name kept), the backward one is named
    'backward_' + its name unless `backward_layer` is given."""

    def __init__(self, layer: Layer, merge_mode: str | None = "concat",
                 backward_layer: Layer | None = None, name: str | None = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        layer, backward_layer = _layer(layer), _layer(backward_layer)
        if not hasattr(layer, "go_backwards") or not hasattr(layer, "return_sequences"):
            raise ValueError(f"Bidirectional: wraps a recurrent layer (SimpleRNN, LSTM, GRU),"
                             f" got {type(layer).__name__}")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"Bidirectional: merge_mode must be one of {MERGE_MODES}, got "
                             f"{merge_mode!r}")
        self.merge_mode = merge_mode
        self.forward_layer = layer
        if backward_layer is None:
            config = {**layer.get_config(), "name": f"backward_{layer.name}",
                      "go_backwards": not layer.go_backwards}
            backward_layer = type(layer).from_config(config)
            self._backward_given = False
        else:
            if backward_layer.go_backwards == layer.go_backwards or \
                    backward_layer.return_sequences != layer.return_sequences:
                raise ValueError("Bidirectional: backward_layer must have go_backwards opposite"
                                 " to the layer's and the same return_sequences")
            self._backward_given = True
        self.backward_layer = backward_layer
        self.return_sequences = layer.return_sequences

    def inner_layers(self) -> list[Layer]:
        return [self.forward_layer, self.backward_layer]

    def call(self, x: gc.Tensor, training: bool = False):
        forward = self.forward_layer(x, training=training)
        backward = self.backward_layer(x, training=training)
        if self.return_sequences:
            backward = backward[:, ::-1]
        if self.merge_mode is None:
            return [forward, backward]
        if self.merge_mode == "concat":
            return gc.concatenate([forward, backward], axis=-1)
        if self.merge_mode == "sum":
            return forward + backward
        if self.merge_mode == "mul":
            return forward * backward
        return (forward + backward) * 0.5

    def get_config(self) -> dict:
        config = {**super().get_config(), "layer": serialize_layer(self.forward_layer),
                  "merge_mode": self.merge_mode}
        if self._backward_given:
            config["backward_layer"] = serialize_layer(self.backward_layer)
        return config


@register_layer
class TimeDistributed(_Wrapper):
    """Apply `layer` to every step of (batch, steps, ...): the steps are folded into the
    batch, (batch * steps, ...), for one call of the layer, and unfolded after."""

    def __init__(self, layer: Layer, name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        self.layer = _layer(layer)

    def inner_layers(self) -> list[Layer]:
        return [self.layer]

    def build(self, input_shape) -> None:
        if len(input_shape) < 2:
            raise gc.ShapeError(f"TimeDistributed {self.name}: expects (batch, steps, ...) "
                                f"input, got per-example shape {tuple(input_shape)}")

    def call(self, x: gc.Tensor, training: bool = False):
        batch, steps = x.shape[:2]
        out = self.layer(gc.reshape(x, (batch * steps,) + x.shape[2:]), training=training)
        return gc.reshape(out, (batch, steps) + out.shape[1:])

    def get_config(self) -> dict:
        return {**super().get_config(), "layer": serialize_layer(self.layer)}


def _layer(value):
    """A layer, or one from its {'class_name', 'config'} (a saved config)."""
    if value is None or isinstance(value, Layer):
        return value
    if isinstance(value, dict):
        return deserialize_layer(value)
    raise TypeError(f"expected a gc.nn layer, got {value!r}")
