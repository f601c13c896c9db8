"""Convolutions as implicit GEMMs: the GEMM templates read the image through index arithmetic.

With x (N, C, H, W), w (O, C/G, KH, KW), the output gradient g (N, O, OH, OW), G groups of
CG = C/G input and OG = O/G output channels, KK = KH*KW and P = OH*OW, one GEMM per (n, group)
(or per group for the weight gradient):

- conv2d:             y[n] (OG x P)       = w (OG x CG*KK)         @ windows of x (CG*KK x P)
- conv2d_grad_input:  dx[n] (CG x H*W)    = w viewed (CG x OG*KK)  @ windows of g (OG*KK x H*W)
- conv2d_grad_weight: dw (OG x CG*KK)     = g viewed (OG x N*P)    @ windows of x (N*P x CG*KK)

The outputs come out NCHW/OIHW, so the fused epilogue (bias, activation, the optimizer update)
stores them as the loop kernel would. The input gradient of a strided convolution (a window
that must divide exactly) keeps the loop kernel.
"""
from __future__ import annotations

from graphc.codegen.gemm import GemmSpec
from graphc.codegen.gemm_epilogue import C_TYPES, built_gemm, operand_view
from graphc.codegen.gemm_gather import Gather
from graphc.codegen.index import floordiv, var
from graphc.codegen.reductions import loop_spec
from graphc.ir import Tensor

PREFIX = {"conv2d": "CONV", "conv2d_grad_input": "CONVDX", "conv2d_grad_weight": "CONVDW"}


def build_conv_gemm(group, buffer_of, nbytes, device_info):
    """The GEMM BuiltKernel of a convolution group, or None where the loop kernel stays."""
    t = group.root
    node = t.producer
    if node.op not in PREFIX or t.dtype.name not in C_TYPES:
        return None
    views = [operand_view(x, buffer_of.__contains__) for x in node.inputs]
    if any(view is None or view[1] for view in views):
        return None
    plan = _PLANS[node.op](t, node, **node.attrs)
    if plan is None:
        return None
    spec, out = plan
    operands = (views[1][0], views[0][0])    # B is always the windowed first input
    dims = "_".join(map(str, t.shape + loop_spec(t).space))
    return built_gemm(group, buffer_of, nbytes, device_info, spec, operands, out,
                      f"{PREFIX[node.op]}_{dims}")


def _geometry(stride, padding, dilation):
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = stride, padding, dilation
    return sh, sw, pt, pl, dh, dw


def _forward(t: Tensor, node, stride, padding, dilation, groups):
    x, w = node.inputs
    (n, c, h, wd), (o, cg, kh, kw), (oh, ow) = x.shape, w.shape, t.shape[2:]
    sh, sw, pt, pl, dh, dw = _geometry(stride, padding, dilation)
    og, k = o // groups, cg * kh * kw
    weights = None if groups == 1 else Gather(f"{_mod('batch_', groups)} * {og * k}",
                                              (f"r * {k}", "0", "0"), ("c", "0", "0"))
    base = f"{_div('batch_', groups)} * {c * h * wd} + {_mod('batch_', groups)} * {cg * h * wd}"
    i, j = _div("r", kw) + f" % {kh}", _mod("r", kw)
    row_h, row_w = f"{i} * {dh} - {pt}", f"{j} * {dw} - {pl}"
    col_h, col_w = f"{_div('c', ow)} * {sh}", f"{_mod('c', ow)} * {sw}"
    windows = Gather(base, (f"{_div('r', kh * kw)} * {h * wd} + ({row_h}) * {wd} + {row_w}",
                            row_h, row_w),
                     (f"{col_h} * {wd} + {col_w}", col_h, col_w),
                     _bound(-pt, (oh - 1) * sh + (kh - 1) * dh - pt, h),
                     _bound(-pl, (ow - 1) * sw + (kw - 1) * dw - pl, wd))
    spec = GemmSpec(n * groups, og, oh * ow, k, C_TYPES[t.dtype.name], False, False, 0, 0,
                    weights, windows)
    gb, gi, gj = var("gb", n * groups), var("gi", og), var("gj", oh * ow)
    return spec, [floordiv(gb, groups), (gb % groups) * og + gi, floordiv(gj, ow), gj % ow]


def _grad_input(t: Tensor, node, stride, padding, dilation, groups, input_shape):
    g, w = node.inputs
    (n, c, h, wd), (o, cg, kh, kw), (oh, ow) = input_shape, w.shape, g.shape[2:]
    sh, sw, pt, pl, dh, dw = _geometry(stride, padding, dilation)
    if (sh, sw) != (1, 1):
        return None
    og, kk = o // groups, kh * kw
    weights = Gather(f"{_mod('batch_', groups)} * {og * cg * kk}", (f"r * {kk}", "0", "0"),
                     (f"{_div('c', kk)} * {cg * kk} + {_mod('c', kk)}", "0", "0"))
    base = f"{_div('batch_', groups)} * {o * oh * ow} + {_mod('batch_', groups)} * {og * oh * ow}"
    i, j = _div("r", kw) + f" % {kh}", _mod("r", kw)
    row_h, row_w = f"{pt} - {i} * {dh}", f"{pl} - {j} * {dw}"
    col_h, col_w = _div("c", wd), _mod("c", wd)
    windows = Gather(base, (f"{_div('r', kk)} * {oh * ow} + ({row_h}) * {ow} + {row_w}",
                            row_h, row_w),
                     (f"{col_h} * {ow} + {col_w}", col_h, col_w),
                     _bound(pt - (kh - 1) * dh, h - 1 + pt, oh),
                     _bound(pl - (kw - 1) * dw, wd - 1 + pl, ow))
    spec = GemmSpec(n * groups, cg, h * wd, og * kk, C_TYPES[t.dtype.name], False, False, 0, 0,
                    weights, windows)
    gb, gi, gj = var("gb", n * groups), var("gi", cg), var("gj", h * wd)
    return spec, [floordiv(gb, groups), (gb % groups) * cg + gi, floordiv(gj, wd), gj % wd]


def _grad_weight(t: Tensor, node, stride, padding, dilation, groups, weight_shape):
    x, g = node.inputs
    (n, c, h, wd), (o, cg, kh, kw), (oh, ow) = x.shape, weight_shape, g.shape[2:]
    sh, sw, pt, pl, dh, dw = _geometry(stride, padding, dilation)
    og, kk, p = o // groups, kh * kw, oh * ow
    grads = Gather(f"batch_ * {og * p}", (f"r * {p}", "0", "0"),
                   (f"{_div('c', p)} * {o * p} + {_mod('c', p)}", "0", "0"))
    row_h, row_w = f"{_div('r', ow)} % {oh} * {sh}", f"{_mod('r', ow)} * {sw}"
    i, j = _div("c", kw) + f" % {kh}", _mod("c", kw)
    col_h, col_w = f"{i} * {dh} - {pt}", f"{j} * {dw} - {pl}"
    windows = Gather(f"batch_ * {cg * h * wd}",
                     (f"{_div('r', p)} * {c * h * wd} + {row_h} * {wd} + {row_w}",
                      row_h, row_w),
                     (f"{_div('c', kk)} * {h * wd} + ({col_h}) * {wd} + {col_w}", col_h, col_w),
                     _bound(-pt, (oh - 1) * sh + (kh - 1) * dh - pt, h),
                     _bound(-pl, (ow - 1) * sw + (kw - 1) * dw - pl, wd))
    spec = GemmSpec(groups, og, cg * kk, n * p, C_TYPES[t.dtype.name], False, False, 0, 0,
                    grads, windows)
    gb, gi, gj = var("gb", groups), var("gi", og), var("gj", cg * kk)
    return spec, [gb * og + gi, floordiv(gj, kk), floordiv(gj, kw) % kh, gj % kw]


def _bound(lowest: int, highest: int, extent: int) -> int | None:
    """`extent` when a window position from `lowest` to `highest` can fall outside it."""
    return extent if lowest < 0 or highest >= extent else None


def _div(expr: str, divisor: int) -> str:
    return expr if divisor == 1 else f"{expr} / {divisor}"


def _mod(expr: str, divisor: int) -> str:
    return "0" if divisor == 1 else f"{expr} % {divisor}"


_PLANS = {"conv2d": _forward, "conv2d_grad_input": _grad_input,
          "conv2d_grad_weight": _grad_weight}
