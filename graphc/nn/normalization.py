"""BatchNormalization over the channel axis (axis 1 of NCHW images or of (batch, features)),
and LayerNormalization over the features of each example."""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.nn import initializers
from graphc.nn.base import Layer, register_layer


@register_layer
class BatchNormalization(Layer):
    """Keras's BatchNormalization with `axis=1` by default (channels first).

    Training: normalize by the batch mean and the biased batch variance (mean of squared
    deviations) over every axis but `axis`, and register the running-statistics updates
    moving = moving * momentum + batch * (1 - momentum); the running variance is fed the
    same biased batch variance (as Keras 3 does). Inference: normalize by the running
    statistics. Output: gamma * (x - mean) / sqrt(var + epsilon) + beta.
    """

    def __init__(self, axis: int = 1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", dtype="float32", name: str | None = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.axis, self.momentum, self.epsilon = int(axis), float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.dtype = np.dtype(dtype)

    def _feature_axis(self, ndim: int) -> int:
        """The normalized axis of a batch of `ndim` dimensions (0 is the batch axis)."""
        axis = self.axis + ndim if self.axis < 0 else self.axis
        if not 1 <= axis < ndim:
            raise ValueError(f"BatchNormalization {self.name}: axis {self.axis} is not a"
                             f" feature axis of a {ndim}-d input")
        return axis

    def build(self, input_shape: tuple[int, ...]) -> None:
        """gamma, beta (trainable) and moving_mean, moving_variance, one per feature."""
        size = (input_shape[self._feature_axis(len(input_shape) + 1) - 1],)
        self.gamma = self._weight("gamma", size, self.gamma_initializer, self.scale)
        self.beta = self._weight("beta", size, self.beta_initializer, self.center)
        self.moving_mean = self._weight("moving_mean", size, self.moving_mean_initializer,
                                        True, trainable=False)
        self.moving_variance = self._weight("moving_variance", size,
                                            self.moving_variance_initializer, True,
                                            trainable=False)

    def _weight(self, name: str, size, initializer, wanted: bool, trainable: bool = True):
        if not wanted:
            return None
        return self.add_weight(name, size, initializer, trainable, self.dtype)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        axis = self._feature_axis(x.ndim)
        shape = tuple(-1 if a == axis else 1 for a in range(x.ndim))
        if training:
            mean, variance = self._batch_moments(x, axis)
            self._update_moving(mean, variance)
            mean, variance = gc.reshape(mean, shape), gc.reshape(variance, shape)
        else:
            mean = gc.reshape(self.moving_mean, shape)
            variance = gc.reshape(self.moving_variance, shape)
        return self._normalize(x, mean, variance, shape)

    def _batch_moments(self, x: gc.Tensor, axis: int) -> tuple[gc.Tensor, gc.Tensor]:
        """Mean and biased variance over every axis but `axis`, each of shape (features,)."""
        axes = tuple(a for a in range(x.ndim) if a != axis)
        mean = gc.mean(x, axis=axes, keepdims=True)
        variance = gc.mean(gc.square(x - mean), axis=axes)
        return gc.reshape(mean, (-1,)), variance

    def _update_moving(self, mean: gc.Tensor, variance: gc.Tensor) -> None:
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            batch = gc.cast(batch, moving.dtype)
            self.add_update(moving, moving * self.momentum + batch * (1.0 - self.momentum))

    def _normalize(self, x, mean, variance, shape) -> gc.Tensor:
        inv = 1.0 / gc.sqrt(variance + self.epsilon)
        if self.gamma is not None:
            inv = inv * gc.reshape(self.gamma, shape)
        out = (x - mean) * inv
        return out if self.beta is None else out + gc.reshape(self.beta, shape)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer":
                    initializers.serialize(self.moving_variance_initializer),
                "dtype": self.dtype.name}


@register_layer
class LayerNormalization(Layer):
    """Keras's LayerNormalization: each example normalized over `axis` (default the last).

    out = gamma * (x - mean) / sqrt(var + epsilon) + beta, mean and the biased variance
    taken over `axis` of each example; gamma and beta have the shape of those axes. With
    rms_scaling: out = gamma * x / sqrt(mean(x^2) + epsilon), and no beta. Over the last
    axis it is gc.layer_norm (one row kernel forward, one back); over other axes it is
    composed of graphc's reductions.
    """

    def __init__(self, axis=-1, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, rms_scaling: bool = False, beta_initializer="zeros",
                 gamma_initializer="ones", dtype="float32", name: str | None = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.axis = [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis)
        self.epsilon = float(epsilon)
        self.center, self.scale, self.rms_scaling = bool(center), bool(scale), bool(rms_scaling)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.dtype = np.dtype(dtype)

    def _axes(self, ndim: int) -> tuple[int, ...]:
        """The normalized axes of a batch of `ndim` axes (never the batch axis)."""
        wanted = self.axis if isinstance(self.axis, list) else [self.axis]
        axes = sorted({a + ndim if a < 0 else a for a in wanted})
        if not axes or axes[0] < 1 or axes[-1] >= ndim:
            raise gc.ShapeError(f"LayerNormalization {self.name}: axis {self.axis} is not a "
                                f"feature axis of a {ndim}-d input")
        return tuple(axes)

    def build(self, input_shape: tuple[int, ...]) -> None:
        """gamma and beta over the normalized axes."""
        ndim = len(input_shape) + 1
        size = tuple(input_shape[a - 1] for a in self._axes(ndim))
        self.gamma = self.add_weight("gamma", size, self.gamma_initializer, True, self.dtype) \
            if self.scale else None
        self.beta = self.add_weight("beta", size, self.beta_initializer, True, self.dtype) \
            if self.center and not self.rms_scaling else None

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        axes = self._axes(x.ndim)
        if axes == (x.ndim - 1,) and not self.rms_scaling:      # one row kernel each way
            return gc.layer_norm(x, self.gamma, self.beta, self.epsilon)
        if self.rms_scaling:
            out = x * (1.0 / gc.sqrt(gc.mean(gc.square(x), axis=axes, keepdims=True)
                                     + self.epsilon))
        else:
            centered = x - gc.mean(x, axis=axes, keepdims=True)
            variance = gc.mean(gc.square(centered), axis=axes, keepdims=True)
            out = centered * (1.0 / gc.sqrt(variance + self.epsilon))
        shape = tuple(x.shape[a] if a in axes else 1 for a in range(x.ndim))
        if self.gamma is not None:
            out = out * gc.reshape(self.gamma, shape)
        return out if self.beta is None else out + gc.reshape(self.beta, shape)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "rms_scaling": self.rms_scaling,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "dtype": self.dtype.name}
