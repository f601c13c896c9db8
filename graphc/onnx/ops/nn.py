"""ONNX products and convolutions (Gemm, MatMul, Conv, ConvTranspose) and the window
geometry pools share (ops/pool.py). Convolutions are 2-D in graphc; 1-D ones run as 2-D
with a height of 1; ConvTranspose is conv2d's input gradient op.
"""
from __future__ import annotations

import graphc as gc
from graphc.builder import apply
from graphc.ir import Tensor
from graphc.onnx.registry import NodeView, converter, like

CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


# ---- products ----

@converter("MatMul")
def _matmul(node: NodeView) -> Tensor:
    return gc.matmul(node.input(0), node.input(1))


@converter("Gemm", attrs=("alpha", "beta", "transA", "transB"))
def _gemm(node: NodeView) -> Tensor:
    a, b, c = node.input(0), node.input(1), node.input(2)
    a = gc.transpose(a) if node.attr("transA", 0) else a
    b = gc.transpose(b) if node.attr("transB", 0) else b
    y = gc.matmul(a, b)
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    if alpha != 1.0:
        y = y * like(alpha, y)
    if c is not None and beta != 0.0:
        y = y + (c if beta == 1.0 else c * like(beta, c))
    return y


# ---- geometry shared by convolutions and pools ----

def window_attributes(node: NodeView, x: Tensor, kernel: list[int], ceil: bool = False):
    """(strides, dilations, [(before, after)] pads) of an N-d window op after auto_pad."""
    n = len(kernel)
    strides = list(node.attr("strides") or [1] * n)
    dilations = list(node.attr("dilations") or [1] * n)
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            pads.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
    elif auto == "VALID":
        pads = [(0, 0)] * n
    elif auto == "NOTSET":
        flat = list(node.attr("pads") or [0] * (2 * n))
        pads = list(zip(flat[:n], flat[n:]))
    else:
        raise node.unsupported(f"auto_pad={auto!r}")
    return strides, dilations, pads


def _as_2d(x: Tensor) -> Tensor:
    return x if x.ndim == 4 else gc.reshape(x, x.shape[:2] + (1,) + x.shape[2:])


def _check_rank(node: NodeView, x: Tensor) -> None:
    if x.ndim not in (3, 4):
        raise node.unsupported(f"a {x.ndim - 2}-d {node.op_type} (graphc has 1-d and 2-d)")


def _pairs(values, one_d: bool, fill):
    return ((fill,) + tuple(values)) if one_d else tuple(values)


# ---- convolutions ----

@converter("Conv", attrs=CONV_ATTRS)
def _conv(node: NodeView) -> Tensor:
    x, w, bias = node.input(0), node.input(1), node.input(2)
    _check_rank(node, x)
    one_d = x.ndim == 3
    strides, dilations, pads = window_attributes(node, x, list(w.shape[2:]))
    y = gc.conv2d(_as_2d(x), _as_2d(w), stride=_pairs(strides, one_d, 1),
                  padding=_pairs(pads, one_d, (0, 0)), dilation=_pairs(dilations, one_d, 1),
                  groups=node.attr("group", 1))
    if bias is not None:
        y = y + gc.reshape(bias, (1, -1, 1, 1))
    return gc.reshape(y, y.shape[:2] + y.shape[3:]) if one_d else y


@converter("ConvTranspose", attrs=CONV_ATTRS + ("output_padding", "output_shape"))
def _conv_transpose(node: NodeView) -> Tensor:
    x, w, bias = node.input(0), node.input(1), node.input(2)
    _check_rank(node, x)
    one_d, groups = x.ndim == 3, node.attr("group", 1)
    kernel = list(w.shape[2:])
    n = len(kernel)
    strides = list(node.attr("strides") or [1] * n)
    dilations = list(node.attr("dilations") or [1] * n)
    extra = list(node.attr("output_padding") or [0] * n)
    full = [s * (i - 1) + e + (k - 1) * d + 1
            for i, s, e, k, d in zip(x.shape[2:], strides, extra, kernel, dilations)]
    pads = _transpose_pads(node, full, n)
    out_hw = [f - b - a for f, (b, a) in zip(full, pads)]
    if any(e >= s and e > 0 for e, s in zip(extra, strides)):
        raise node.unsupported(f"output_padding={extra} not below strides={strides}")
    shape = (x.shape[0], w.shape[1] * groups) + tuple(out_hw)
    cropped = [(max(b, 0), max(a, 0)) for b, a in pads]     # negative pads: zero rows added
    inner = (x.shape[0], w.shape[1] * groups) + tuple(
        f - b - a for f, (b, a) in zip(full, cropped))
    y = apply("conv2d_grad_input", [_as_2d(x), _as_2d(w)],
              stride=_pairs(strides, one_d, 1), padding=_pairs(cropped, one_d, (0, 0)),
              dilation=_pairs(dilations, one_d, 1), groups=groups,
              input_shape=_as_2d_shape(inner))
    grow = [(max(-b, 0), max(-a, 0)) for b, a in pads]
    if any(map(any, grow)):
        y = gc.pad(y, [(0, 0), (0, 0)] + ([(0, 0)] if one_d else []) + grow)
    if bias is not None:
        y = y + gc.reshape(bias, (1, -1, 1, 1))
    return gc.reshape(y, shape) if one_d else y


def _as_2d_shape(shape):
    return shape if len(shape) == 4 else shape[:2] + (1,) + shape[2:]


def _transpose_pads(node: NodeView, full: list[int], n: int):
    """ConvTranspose's (before, after) pads: from output_shape, auto_pad, or pads."""
    target = node.attr("output_shape")
    auto = node.attr("auto_pad", "NOTSET")
    if target is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        target = [i * s for i, s in zip(node.input(0).shape[2:],
                                        node.attr("strides") or [1] * n)]
    if target is not None:
        pads = []
        for f, t in zip(full, list(target)[-n:]):
            total = f - t
            if auto == "SAME_UPPER":
                pads.append((total // 2, total - total // 2))
            elif auto == "SAME_LOWER":
                pads.append((total - total // 2, total // 2))
            else:                               # the output starts at the first row
                pads.append((0, total))
        return pads
    flat = list(node.attr("pads") or [0] * (2 * n))
    return list(zip(flat[:n], flat[n:]))
