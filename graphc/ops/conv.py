"""numpy references of conv2d and its two gradients, and the output-size rule.

Attributes are normalized by graphc.ops.linalg.conv2d: stride and dilation are (h, w) pairs,
padding is ((top, bottom), (left, right)), groups an int. The forward pass gathers windows
(im2col through sliding_window_view); the gradients walk the kH*kW kernel offsets instead,
an independent derivation, so the forward and backward references check each other.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from graphc.errors import ShapeError

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]


def conv_output_hw(in_hw, kernel_hw, stride: Pair, padding: Padding,
                   dilation: Pair) -> tuple[int, int]:
    """(H_out, W_out), or ShapeError when the kernel does not fit the padded input."""
    out = []
    for name, size, k, s, (p0, p1), d in zip(("height", "width"), in_hw, kernel_hw, stride,
                                              padding, dilation):
        if k < 1:
            raise ShapeError(f"kernel {name} is {k}; it must be at least 1")
        extent, padded = d * (k - 1) + 1, size + p0 + p1
        if extent > padded:
            raise ShapeError(f"kernel {name} {k} (extent {extent} with dilation {d}) is larger"
                             f" than the padded input {name} {padded}")
        out.append((padded - extent) // s + 1)
    return out[0], out[1]


def _pad(x: np.ndarray, padding: Padding) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0)) + tuple(tuple(p) for p in padding))


def _offset_slices(i: int, j: int, out_hw, stride: Pair, dilation: Pair) -> tuple:
    """The padded-input rows and columns kernel tap (i, j) meets, one per output pixel."""
    (ho, wo), (sh, sw), (dh, dw) = out_hw, stride, dilation
    rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
    cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
    return (slice(None), slice(None), rows, cols)


def conv2d_ref(x: np.ndarray, w: np.ndarray, stride: Pair, padding: Padding, dilation: Pair,
               groups: int) -> np.ndarray:
    """Cross-correlation y[n,o,h,w] = sum x_pad[n, c, h*s + i*d, w*s + j*d] * w[o, c, i, j]."""
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    extent = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    windows = sliding_window_view(_pad(x, padding), extent, axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]
    n, _, ho, wo = windows.shape[:4]
    windows = windows.reshape(n, groups, cg, ho, wo, kh, kw)
    weights = w.reshape(groups, o // groups, cg, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", windows, weights, optimize=True)
    return out.reshape(n, o, ho, wo)


def grad_input_ref(g: np.ndarray, w: np.ndarray, stride: Pair, padding: Padding,
                   dilation: Pair, groups: int, input_shape) -> np.ndarray:
    """Transposed convolution: each kernel tap scatter-adds g * w[:, :, i, j] into the input."""
    n, c, h, wd = input_shape
    (pt, pb), (pl, pr) = padding
    o, cg, kh, kw = w.shape
    grads = g.reshape(n, groups, o // groups, *g.shape[2:])
    weights = w.reshape(groups, o // groups, cg, kh, kw)
    padded = np.zeros((n, c, h + pt + pb, wd + pl + pr), np.result_type(g, w))
    for i in range(kh):
        for j in range(kw):
            tap = np.einsum("ngohw,goc->ngchw", grads, weights[..., i, j])
            where = _offset_slices(i, j, g.shape[2:], stride, dilation)
            padded[where] += tap.reshape(n, c, *g.shape[2:])
    return padded[:, :, pt:pt + h, pl:pl + wd]


def grad_weight_ref(x: np.ndarray, g: np.ndarray, stride: Pair, padding: Padding,
                    dilation: Pair, groups: int, weight_shape) -> np.ndarray:
    """dw[o, c, i, j] = sum over n and output pixels of g * the input pixels tap (i, j) met."""
    o, cg, kh, kw = weight_shape
    n = x.shape[0]
    padded = _pad(x, padding)
    grads = g.reshape(n, groups, o // groups, *g.shape[2:])
    out = np.zeros((groups, o // groups, cg, kh, kw), np.result_type(x, g))
    for i in range(kh):
        for j in range(kw):
            patch = padded[_offset_slices(i, j, g.shape[2:], stride, dilation)]
            patch = patch.reshape(n, groups, cg, *g.shape[2:])
            out[..., i, j] = np.einsum("ngchw,ngohw->goc", patch, grads)
    return out.reshape(weight_shape)
