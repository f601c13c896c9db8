"""ONNX's losses (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss) and Attention.

The losses pick each target's score with a one-hot product (a target equal to
ignore_index weighs 0, as does one outside [0, C)), so they differentiate like the rest.
Attention follows ONNX's reference: Q K^T scaled, softcap, the mask (bool: keep where
true; float: added) and the causal frontier (aligned to the end of a past cache) as one
additive bias, grouped-query heads repeated, and rows with every key masked giving 0.
"""
from __future__ import annotations

import math

import numpy as np

import graphc as gc
from graphc import dtypes
from graphc.builder import cast, constant
from graphc.ir import Tensor
from graphc.onnx.registry import NodeView, converter


# ---- losses ----

def _nll(node: NodeView, log_prob: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    classes = log_prob.shape[1]
    target = cast(target, dtypes.int64)
    hot = gc.one_hot(target, classes, log_prob.dtype, axis=1)
    ignore = node.attr("ignore_index")
    keep = gc.ones_like(target, log_prob.dtype)
    if ignore is not None:
        keep = cast(gc.not_equal(target, ignore), log_prob.dtype)
    if weight is not None:
        view = (1, classes) + (1,) * (log_prob.ndim - 2)
        keep = keep * gc.sum(hot * gc.reshape(weight, view), axis=1)
    loss = -gc.sum(log_prob * hot, axis=1) * keep
    reduction = node.attr("reduction", "mean")
    if reduction == "none":
        return loss
    if reduction == "sum":
        return gc.sum(loss)
    if reduction == "mean":
        return gc.sum(loss) / gc.sum(keep)
    raise node.unsupported(f"reduction={reduction!r}")


@converter("NegativeLogLikelihoodLoss", attrs=("ignore_index", "reduction"))
def _nll_loss(node: NodeView) -> Tensor:
    return _nll(node, node.input(0), node.input(1), node.input(2))


@converter("SoftmaxCrossEntropyLoss", attrs=("ignore_index", "reduction"), max_outputs=2)
def _softmax_cross_entropy(node: NodeView) -> list[Tensor]:
    log_prob = gc.log_softmax(node.input(0), axis=1)
    return [_nll(node, log_prob, node.input(1), node.input(2)), log_prob]


# ---- attention ----

def _heads(x: Tensor, heads: int) -> Tensor:
    """(B, S, H*d) -> (B, H, S, d); 4-d inputs are already split."""
    if x.ndim == 4:
        return x
    b, s, hidden = x.shape
    return gc.transpose(gc.reshape(x, (b, s, heads, hidden // heads)), (0, 2, 1, 3))


def _repeat_heads(x: Tensor, times: int) -> Tensor:
    if times == 1:
        return x
    b, h, s, d = x.shape
    wide = gc.broadcast_to(gc.reshape(x, (b, h, 1, s, d)), (b, h, times, s, d))
    return gc.reshape(wide, (b, h * times, s, d))


def _frontier(node: NodeView, q_len: int, kv_len: int, offset) -> np.ndarray | None:
    """Where query i may attend key j: the causal frontier and the sliding window, aligned
    to `offset` (the past length, or per batch nonpad_kv_seqlen - q_len); None for all."""
    offsets = np.reshape(offset, (-1, 1, 1))
    p = np.arange(q_len)[None, :, None] + offsets           # (batch or 1, q, 1)
    j = np.arange(kv_len)[None, None, :]
    allowed = np.ones(np.broadcast_shapes(p.shape, j.shape), bool)
    constrained = False
    if node.attr("is_causal", 0):
        allowed &= j <= p
        constrained = True
    left, right = node.attr("left_window_size", -1), node.attr("right_window_size", -1)
    if left >= 0:
        allowed &= p - j <= left
        constrained = True
    if right >= 0:
        allowed &= j - p <= right
        constrained = True
    if not constrained:
        return None
    return allowed[:, None] if np.ndim(offset) else allowed[0]


def _bias(node: NodeView, q_len: int, kv_len: int, past: int, dtype) -> Tensor | None:
    """The additive bias: the mask (padded to kv_len), the causal frontier and sliding
    window, and the padding of nonpad_kv_seqlen."""
    mask = node.input(3)
    bias = None
    if mask is not None:
        short = kv_len - mask.shape[-1]
        if short > 0:
            fill = False if mask.dtype == dtypes.bool_ else -np.inf
            mask = gc.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, short)], constant_values=fill)
        bias = gc.where(mask, 0.0, -np.inf) if mask.dtype == dtypes.bool_ else mask
        bias = cast(bias, dtype)
    lengths = node.static(6, "nonpad_kv_seqlen")
    offset = past if lengths is None else np.asarray(lengths).reshape(-1) - q_len
    allowed = _frontier(node, q_len, kv_len, offset)
    if lengths is not None:
        valid = np.arange(kv_len)[None, :] < np.asarray(lengths).reshape(-1, 1)
        valid = valid[:, None, None, :]
        allowed = valid if allowed is None else allowed & valid
    if allowed is not None:
        frontier = constant(np.where(allowed, 0.0, -np.inf).astype(dtype))
        bias = frontier if bias is None else bias + frontier
    return bias


@converter("Attention", attrs=("is_causal", "kv_num_heads", "q_num_heads",
                               "qk_matmul_output_mode", "scale", "softcap",
                               "softmax_precision", "left_window_size", "right_window_size"),
           max_outputs=4)
def _attention(node: NodeView) -> list[Tensor]:
    q_in = node.input(0)
    q = _heads(q_in, node.attr("q_num_heads", 0))
    k = _heads(node.input(1), node.attr("kv_num_heads", 0))
    v = _heads(node.input(2), node.attr("kv_num_heads", 0))
    past = 0
    if node.has(4):
        past = node.input(4).shape[2]
        k = gc.concatenate([node.input(4), k], 2)
        v = gc.concatenate([node.input(5), v], 2)
    present_k, present_v = k, v
    scale = node.attr("scale", 1.0 / math.sqrt(q.shape[3]))
    k = _repeat_heads(k, q.shape[1] // k.shape[1])
    v = _repeat_heads(v, q.shape[1] // v.shape[1])
    root = math.sqrt(scale)
    qk = gc.matmul(q * root, gc.transpose(k * root, (0, 1, 3, 2)))
    softcap = node.attr("softcap", 0.0)
    if softcap > 0:
        qk = softcap * gc.tanh(qk / softcap)
    bias = _bias(node, q.shape[2], k.shape[2], past, q.dtype)
    scores = qk if bias is None else qk + bias
    probs = gc.softmax(cast(scores, dtypes.float32) if q.dtype == dtypes.float16 else scores, -1)
    if bias is not None:
        masked = gc.equal(gc.max(bias, -1, keepdims=True), -np.inf)
        probs = gc.where(masked, 0.0, probs)
    probs = cast(probs, q.dtype)
    y = gc.matmul(probs, v)
    if q_in.ndim == 3:
        b, h, s, d = y.shape
        y = gc.reshape(gc.transpose(y, (0, 2, 1, 3)), (b, s, h * d))
    mode = node.attr("qk_matmul_output_mode", 0)
    qk_out = {0: qk, 1: qk, 2: scores, 3: probs}.get(mode)
    if qk_out is None:
        raise node.unsupported(f"qk_matmul_output_mode={mode}")
    return [y, present_k, present_v, qk_out]


# ---- rotary position embedding ----

@converter("RotaryEmbedding", attrs=("interleaved", "num_heads", "rotary_embedding_dim"))
def _rotary(node: NodeView) -> Tensor:
    """Pairs of features rotated by the cached angles of their positions (the halves of
    the rotated part, or consecutive pairs when interleaved); the rest passes through."""
    x_in, cos, sin, positions = (node.input(i) for i in range(4))
    x = gc.transpose(x_in, (0, 2, 1, 3)) if x_in.ndim == 4 else \
        gc.reshape(x_in, x_in.shape[:2] + (node.attr("num_heads"), -1))
    head = x.shape[3]
    dim = node.attr("rotary_embedding_dim", 0) or head
    if positions is not None:
        cos, sin = gc.take(cos, positions, 0), gc.take(sin, positions, 0)
    cos, sin = gc.expand_dims(cos, 2), gc.expand_dims(sin, 2)
    rotated = x[:, :, :, :dim]
    if node.attr("interleaved", 0):
        x1, x2 = rotated[:, :, :, 0::2], rotated[:, :, :, 1::2]
    else:
        x1, x2 = rotated[:, :, :, :dim // 2], rotated[:, :, :, dim // 2:]
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if node.attr("interleaved", 0):
        turned = gc.reshape(gc.stack([real, imag], -1), rotated.shape)
    else:
        turned = gc.concatenate([real, imag], -1)
    out = turned if dim == head else gc.concatenate([turned, x[:, :, :, dim:]], -1)
    return gc.transpose(out, (0, 2, 1, 3)) if x_in.ndim == 4 else gc.reshape(out, x_in.shape)
