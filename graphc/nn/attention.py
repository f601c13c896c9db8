"""MultiHeadAttention (Keras 3's layer, arguments and weight shapes).

    mha = gc.nn.MultiHeadAttention(num_heads=4, key_dim=16)
    out = mha(x, x)                              # self-attention, (batch, steps, features)
    out, scores = mha(q, v, return_attention_scores=True)

Keras's equations: q = query @ Wq + bq, k = key @ Wk + bk, v = value @ Wv + bv per head
(kernels (features, heads, key_dim), biases (heads, key_dim)), scores = softmax(q k^T /
sqrt(key_dim)) over the key steps (masked positions get -1e9 first; dropout on the scores
while training), out = (scores v) @ Wo + bo, Wo (heads, value_dim, output features).

The projections are matrix products of (batch * steps, features) rows with the kernels
seen as (features, heads * key_dim) (the same bytes), so each is one GEMM with its bias in
the store. The heads then move next to the batch, (batch * heads, steps, key_dim), so the
scores and the value product are each one batched GEMM (k^T is a layout flag, not a copy),
and the softmax one row kernel.

Functional API: a KerasTensor call records [query, value, key] (and the attention mask when
given) as the layer's inputs; `use_causal_mask` and `return_attention_scores` given to such a
call become the layer's settings (saved with it), as its calls replay them.
"""
from __future__ import annotations

import math

import numpy as np

import graphc as gc
from graphc.nn import initializers
from graphc.nn.base import Layer, register_layer
from graphc.nn.functional import is_symbolic
from graphc.ops.random import derived_seed as _derived_seed

MASKED = -1e9           # added to masked scores (Keras's large negative) before the softmax


@register_layer
class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention over (batch, steps, features) sequences."""

    def __init__(self, num_heads: int, key_dim: int, value_dim: int | None = None,
                 dropout: float = 0.0, use_bias: bool = True, output_shape=None,
                 attention_axes=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", seed: int | None = None,
                 use_causal_mask: bool = False, return_attention_scores: bool = False,
                 dtype="float32", name: str | None = None):
        super().__init__(name)
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.value_dim = self.key_dim if value_dim is None else int(value_dim)
        if min(self.num_heads, self.key_dim, self.value_dim) <= 0:
            raise ValueError(f"MultiHeadAttention: num_heads, key_dim and value_dim must be "
                             f"positive, got {num_heads}, {key_dim}, {value_dim}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"MultiHeadAttention: dropout must be in [0, 1), got {dropout}")
        if attention_axes not in (None, -2, 1, (1,), [1], (-2,), [-2]):
            raise ValueError("MultiHeadAttention: graphc attends over the steps axis of "
                             "(batch, steps, features) only: attention_axes must be None")
        self.dropout, self.use_bias = float(dropout), bool(use_bias)
        self.output_shape = None if output_shape is None else int(
            output_shape if np.ndim(output_shape) == 0 else _single(output_shape))
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.seed = int(seed) if seed is not None else _derived_seed(None) % 2 ** 31
        self.use_causal_mask = bool(use_causal_mask)
        self.return_attention_scores = bool(return_attention_scores)
        self.dtype = np.dtype(dtype)

    # ---- calling ----

    def __call__(self, query, value=None, key=None, attention_mask=None,
                 return_attention_scores=None, training: bool = False,
                 use_causal_mask=None):
        if isinstance(query, (list, tuple)) and value is None:     # a replayed list call
            return super().__call__(list(query), training=training)
        if value is None:
            raise TypeError(f"{self.name}: MultiHeadAttention takes (query, value[, key])")
        inputs = [query, value, value if key is None else key]
        if attention_mask is not None:
            inputs.append(attention_mask)
        options = {"return_attention_scores": return_attention_scores,
                   "use_causal_mask": use_causal_mask}
        if is_symbolic(inputs):             # recorded: the options become settings
            for option, given in options.items():
                if given is not None:
                    setattr(self, option, bool(given))
            return super().__call__(inputs, training=training)
        saved = {option: getattr(self, option) for option in options}
        try:
            for option, given in options.items():
                if given is not None:
                    setattr(self, option, bool(given))
            return super().__call__(inputs, training=training)
        finally:
            for option, value_ in saved.items():
                setattr(self, option, value_)

    # ---- weights ----

    def build(self, input_shape) -> None:
        """query/key/value kernels (features, heads, dim) and biases (heads, dim); the
        output kernel (heads, value_dim, features) and bias (features,)."""
        shapes = [tuple(s) for s in input_shape]
        if len(shapes) < 3 or any(len(s) != 2 for s in shapes[:3]):
            raise gc.ShapeError(f"MultiHeadAttention {self.name}: query, value and key must be"
                                f" (batch, steps, features), got per-example shapes {shapes}")
        (_, q_dim), (_, v_dim), (_, k_dim) = shapes[:3]
        heads = self.num_heads
        out_dim = self.output_shape or q_dim
        self.query_kernel, self.query_bias = self._dense("query", q_dim, (heads, self.key_dim))
        self.key_kernel, self.key_bias = self._dense("key", k_dim, (heads, self.key_dim))
        self.value_kernel, self.value_bias = self._dense("value", v_dim,
                                                         (heads, self.value_dim))
        self.output_kernel, self.output_bias = self._dense(
            "attention_output", heads * self.value_dim, (out_dim,),
            kernel_shape=(heads, self.value_dim, out_dim))

    def _dense(self, part: str, inputs: int, outputs: tuple, kernel_shape=None):
        """A projection's kernel (Keras's shape, so Keras's fans) and bias."""
        kernel = self.add_weight(f"{part}/kernel", kernel_shape or (inputs,) + outputs,
                                 self.kernel_initializer, dtype=self.dtype)
        bias = self.add_weight(f"{part}/bias", outputs, self.bias_initializer,
                               dtype=self.dtype) if self.use_bias else None
        return kernel, bias

    # ---- the computation ----

    def call(self, inputs, training: bool = False):
        query, value, key = inputs[:3]
        mask = inputs[3] if len(inputs) > 3 else None
        batch, steps = query.shape[:2]
        q = self._heads(query, self.query_kernel, self.query_bias, 1.0 / math.sqrt(self.key_dim))
        k = self._heads(key, self.key_kernel, self.key_bias)
        v = self._heads(value, self.value_kernel, self.value_bias)
        logits = gc.matmul(q, gc.transpose(k, (0, 2, 1)))          # (b*h, t, s)
        mask = self._mask(mask, batch, steps, key.shape[1])
        if mask is not None:
            logits = gc.where(mask, logits, gc.constant(MASKED, logits.dtype))
        scores = gc.softmax(logits, axis=-1)
        weights = scores
        if training and self.dropout > 0.0:
            weights = gc.random.dropout(scores, self.dropout, seed=self.seed)
        mixed = gc.matmul(weights, v)                                # (b*h, t, value_dim)
        out = self._merge_heads(mixed, batch, steps)
        if not self.return_attention_scores:
            return out
        return out, gc.reshape(scores, (batch, self.num_heads, steps, key.shape[1]))

    def _heads(self, x: gc.Tensor, kernel, bias, scale: float = 1.0) -> gc.Tensor:
        """(batch, steps, f) -> (batch * heads, steps, dim) projected per head."""
        batch, steps, features = x.shape
        heads, dim = kernel.shape[1:]
        flat = gc.matmul(gc.reshape(x, (batch * steps, features)),
                         gc.reshape(kernel, (features, heads * dim)))
        if bias is not None:
            flat = flat + gc.reshape(bias, (heads * dim,))
        if scale != 1.0:
            flat = flat * scale
        split = gc.transpose(gc.reshape(flat, (batch, steps, heads, dim)), (0, 2, 1, 3))
        return gc.reshape(split, (batch * heads, steps, dim))

    def _merge_heads(self, mixed: gc.Tensor, batch: int, steps: int) -> gc.Tensor:
        """(batch * heads, steps, value_dim) -> (batch, steps, output features)."""
        heads, dim, out_dim = self.output_kernel.shape
        joined = gc.transpose(gc.reshape(mixed, (batch, heads, steps, dim)), (0, 2, 1, 3))
        flat = gc.matmul(gc.reshape(joined, (batch * steps, heads * dim)),
                         gc.reshape(self.output_kernel, (heads * dim, out_dim)))
        if self.output_bias is not None:
            flat = flat + self.output_bias
        return gc.reshape(flat, (batch, steps, out_dim))

    def _mask(self, mask, batch: int, steps: int, key_steps: int):
        """The boolean (batch * heads, t, s) mask of positions that may attend, or None."""
        keep = None
        if mask is not None:
            if tuple(mask.shape) not in ((batch, steps, key_steps), (batch, 1, key_steps)):
                raise gc.ShapeError(f"MultiHeadAttention {self.name}: attention_mask must be "
                                    f"(batch, {steps}, {key_steps}), got {mask.shape}")
            keep = mask if mask.dtype == np.bool_ else gc.not_equal(mask, 0)
            keep = gc.broadcast_to(gc.reshape(keep, (batch, 1) + keep.shape[1:]),
                                   (batch, self.num_heads, steps, key_steps))
            keep = gc.reshape(keep, (batch * self.num_heads, steps, key_steps))
        if self.use_causal_mask:
            causal = gc.constant(np.tril(np.ones((steps, key_steps), bool)))
            keep = causal if keep is None else gc.logical_and(keep, causal)
        return keep

    def get_config(self) -> dict:
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "value_dim": self.value_dim, "dropout": self.dropout,
                "use_bias": self.use_bias, "output_shape": self.output_shape,
                "attention_axes": None,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "seed": self.seed, "use_causal_mask": self.use_causal_mask,
                "return_attention_scores": self.return_attention_scores,
                "dtype": self.dtype.name}


def _single(shape) -> int:
    shape = tuple(shape)
    if len(shape) != 1:
        raise ValueError(f"MultiHeadAttention: graphc takes output_shape as one int (the "
                         f"output features), got {shape}")
    return int(shape[0])
