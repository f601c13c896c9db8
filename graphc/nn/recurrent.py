"""Recurrent layers (SimpleRNN, LSTM, GRU) unrolled over a static sequence length.

Inputs are (batch, time, features). The input projection of every timestep is one matmul,
(time * batch, features) @ kernel (+ bias), time-major so that each step's rows are one
contiguous block (their gradients stack into one buffer without copies); each step then adds h @ recurrent_kernel and
applies its gates elementwise, so the compiler fuses a step's gates into one kernel, and
the steps' kernels, identical in content, are compiled once. The initial state is zero,
so the first step skips its recurrent matmul. Keras's equations and gate orders apply:
LSTM (i, f, c, o), GRU (z, r, h).
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.nn import activations, initializers
from graphc.nn.base import Layer, check_unroll, register_layer

State = tuple[gc.Tensor, gc.Tensor | None] | None


class _Recurrent(Layer):
    """Shared weights, input projection and unrolling; subclasses define `_step`."""

    GATES = 1

    def __init__(self, units: int, activation="tanh", use_bias: bool = True,
                 return_sequences: bool = False, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 go_backwards: bool = False, dtype="float32", name: str | None = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.units, self.use_bias = int(units), bool(use_bias)
        self.return_sequences = bool(return_sequences)
        self.go_backwards = bool(go_backwards)
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.dtype = np.dtype(dtype)

    def build(self, input_shape: tuple[int, ...]) -> None:
        """kernel (features, gates*units), recurrent_kernel (units, gates*units), bias."""
        if len(input_shape) != 2:
            raise ValueError(f"{type(self).__name__} {self.name}: expects (batch, time,"
                             f" features) input, got per-example shape {input_shape}")
        width = self.GATES * self.units
        self.kernel = self.add_weight("kernel", (input_shape[1], width),
                                      self.kernel_initializer, dtype=self.dtype)
        self.recurrent_kernel = self.add_weight(
            "recurrent_kernel", (self.units, width),
            self.recurrent_initializer, dtype=self.dtype)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight("bias", self._bias_shape(), self._bias_init(),
                                        dtype=self.dtype)

    def _bias_shape(self) -> tuple[int, ...]:
        return (self.GATES * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def _input_bias(self) -> gc.Tensor | None:
        return self.bias

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        if x.ndim == 3:
            check_unroll(self.name, x.shape[1])
            if self.go_backwards:           # Keras: the last step first; outputs in that order
                x = x[:, ::-1]
        projected = self._project(x)
        batch = x.shape[0]
        state: State = None
        outputs = []
        for t in range(x.shape[1]):
            state = self._step(projected[t * batch:(t + 1) * batch], state)
            outputs.append(state[0])
        if not self.return_sequences:
            return outputs[-1]
        return gc.transpose(gc.stack(outputs, axis=0), (1, 0, 2))

    def _project(self, x: gc.Tensor) -> gc.Tensor:
        """x @ kernel (+ input bias) for every timestep at once, time-major: (time * batch,
        gates*units), so step t's rows (and their gradients, stacked) are one contiguous block."""
        if x.ndim != 3:
            raise ValueError(f"{type(self).__name__} {self.name}: expects (batch, time,"
                             f" features) input, got shape {x.shape}")
        batch, time, features = x.shape
        time_major = gc.reshape(gc.transpose(x, (1, 0, 2)), (time * batch, features))
        flat = time_major @ self.kernel
        bias = self._input_bias()
        return flat if bias is None else flat + bias

    def _recurrent(self, h: gc.Tensor) -> gc.Tensor:
        return h @ self.recurrent_kernel

    def _gate(self, z: gc.Tensor | None, index: int) -> gc.Tensor | None:
        """Columns of gate `index` of a (batch, gates*units) pre-activation (None stays)."""
        return None if z is None else z[:, index * self.units:(index + 1) * self.units]

    def _step(self, x_t: gc.Tensor, state: State) -> tuple[gc.Tensor, gc.Tensor | None]:
        raise NotImplementedError

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.return_sequences:
            return (input_shape[0], self.units)
        return (self.units,)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "return_sequences": self.return_sequences, "go_backwards": self.go_backwards,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "dtype": self.dtype.name}


@register_layer
class SimpleRNN(_Recurrent):
    """h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)."""

    def _step(self, x_t, state):
        z = x_t if state is None else x_t + self._recurrent(state[0])
        return self.activation(z), None


class _Gated(_Recurrent):
    """A recurrent layer with a separate recurrent (gate) activation."""

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 **kwargs):
        super().__init__(units, activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)

    def get_config(self) -> dict:
        return {**super().get_config(),
                "recurrent_activation": activations.serialize(self.recurrent_activation)}


@register_layer
class LSTM(_Gated):
    """Keras's LSTM: gates i, f, c, o; c_t = f*c + i*tanh(.); h_t = o * tanh(c_t)."""

    GATES = 4

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, activation, recurrent_activation, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_init(self):
        """With unit_forget_bias the forget gate's bias starts at one (Keras)."""
        base = self.bias_initializer
        if not self.unit_forget_bias:
            return base
        units = self.units
        return lambda shape: np.concatenate([np.asarray(base((units,))), np.ones(units),
                                             np.asarray(base((2 * units,)))])

    def _step(self, x_t, state):
        z = x_t if state is None else x_t + self._recurrent(state[0])
        gate = self.recurrent_activation
        i, o = gate(self._gate(z, 0)), gate(self._gate(z, 3))
        candidate = i * self.activation(self._gate(z, 2))
        c = candidate if state is None else gate(self._gate(z, 1)) * state[1] + candidate
        return o * self.activation(c), c

    def get_config(self) -> dict:
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


@register_layer
class GRU(_Gated):
    """Keras's GRU: gates z, r, h; h_t = z * h_{t-1} + (1 - z) * candidate.

    reset_after=True (Keras's default): candidate = tanh(x_h + r * (h @ U_h + b_rh)), bias
    (2, 3*units) holding the input bias and the recurrent bias. reset_after=False:
    candidate = tanh(x_h + (r * h) @ U_h), bias (3*units,).
    """

    GATES = 3

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 reset_after: bool = True, **kwargs):
        super().__init__(units, activation, recurrent_activation, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self) -> tuple[int, ...]:
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _input_bias(self) -> gc.Tensor | None:
        if self.bias is None or not self.reset_after:
            return self.bias
        return self.bias[0]

    def _step(self, x_t, state):
        h = None if state is None else state[0]
        inner, gate = self._inner(h), self.recurrent_activation
        z = gate(self._sum(self._gate(x_t, 0), self._gate(inner, 0)))
        r = gate(self._sum(self._gate(x_t, 1), self._gate(inner, 1)))
        candidate = self.activation(self._sum(self._gate(x_t, 2), self._reset(r, h, inner)))
        out = (1.0 - z) * candidate
        return (out if h is None else z * h + out), None

    def _inner(self, h: gc.Tensor | None) -> gc.Tensor | None:
        """h @ U (+ recurrent bias) for the gates that use it; None when it is zero."""
        recurrent_bias = self.bias[1:2] if self.bias is not None and self.reset_after else None
        if h is None:
            return recurrent_bias
        if not self.reset_after:
            return h @ self.recurrent_kernel[:, :2 * self.units]
        return self._sum(h @ self.recurrent_kernel, recurrent_bias)

    def _reset(self, r: gc.Tensor, h, inner) -> gc.Tensor | None:
        """The reset gate's part of the candidate: r * (h @ U_h + b) or (r * h) @ U_h."""
        if self.reset_after:
            return None if inner is None else r * self._gate(inner, 2)
        return None if h is None else (r * h) @ self.recurrent_kernel[:, 2 * self.units:]

    @staticmethod
    def _sum(a: gc.Tensor, b: gc.Tensor | None) -> gc.Tensor:
        return a if b is None else a + b

    def get_config(self) -> dict:
        return {**super().get_config(), "reset_after": self.reset_after}
