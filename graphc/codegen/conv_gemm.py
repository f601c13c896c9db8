"""Convolutions as implicit GEMMs: the GEMM templates read the image through index arithmetic.

With x (N, C, H, W), w (O, C/G, KH, KW), the output gradient g (N, O, OH, OW), G groups of
CG = C/G input and OG = O/G output channels, KK = KH*KW and P = OH*OW, one GEMM per (n, group)
(or per group for the weight gradient):

- conv2d:             y[n] (OG x P)       = w (OG x CG*KK)         @ windows of x (CG*KK x P)
- conv2d_grad_input:  dx[n] (CG x H*W)    = w viewed (CG x OG*KK)  @ windows of g (OG*KK x H*W)
- conv2d_grad_weight: dw (OG x CG*KK)     = g viewed (OG x N*P)    @ windows of x (N*P x CG*KK)

The outputs come out NCHW/OIHW, so the fused epilogue (bias, activation, the optimizer update)
stores them as the loop kernel would. For the input gradient of a strided convolution the
gather keeps only the positions that a window of the output gradient steps on.

With a column stride of 1 the windows' elements lie in runs along image rows, which the CPU
template copies as contiguous elements rather than one by one: the columns of the forward
GEMM (output rows), those of the input gradient (input rows, padded to RUN_ALIGN pixels so
that whole vectors of columns fit in one row) and the rows of the weight gradient.
"""
from __future__ import annotations

import numpy as np

from graphc.codegen import gemm as gemm_limits
from graphc.codegen.built import BuiltKernel, GemmBody, GemmPartials, node_ops
from graphc.codegen.gemm import GemmSpec, gemm_launch
from graphc.codegen.gemm_epilogue import C_TYPES, built_gemm
from graphc.codegen.gemm_gather import Gather
from graphc.codegen.index import floordiv, var
from graphc.codegen.kernel_groups import KernelGroup
from graphc.codegen.loop_kernels import combine_partials
from graphc.codegen.lowerings import loop_spec, lowering_of, operand_view
from graphc.ir import Tensor

RUN_ALIGN = 16              # columns per vector of the CPU GEMM (16 floats, 2 x 8 doubles)
FORWARD_RUN = 8             # output rows of a multiple of it load as vectors unpadded
SPLIT_MIN_DEPTH = 4096      # products each partial sum of a split weight gradient adds up


def build_conv_gemm(group: KernelGroup, buffer_of, nbytes, device_info, private: str):
    """The GEMM BuiltKernels of a convolution group (a weight gradient with too few blocks of
    output for the device is split over the images: partial sums, then their sum), or None
    where the loop kernel stays."""
    t = group.root
    node = t.producer
    sizes = [x.size for x in node.inputs] + [t.size]
    if lowering_of(node.op).fast != "conv_gemm" or t.dtype.name not in C_TYPES or min(sizes) < 1 \
            or max(sizes) > gemm_limits.INT_MAX // 2:   # headroom: padded rows, partial
        return None                     # sums (past it: the loop kernel, 64-bit indices)
    views = [operand_view(x, buffer_of.__contains__) for x in node.inputs]
    if any(view is None or view[1] for view in views):
        return None
    runs = {"runs": True} if node.op in ("conv2d", "conv2d_grad_input") \
        and device_info.type == "cpu" else {}
    spec, out = _PLANS[node.op](t, node, **node.attrs, **runs)
    operands = (views[1][0], views[0][0])    # B is always the windowed first input
    label = f"{lowering_of(node.op).prefix}_{'_'.join(map(str, t.shape + loop_spec(t).space))}"
    split = weight_split(spec, node, device_info) if node.op == "conv2d_grad_weight" else 1
    if split > 1:
        return _split_weight_gradient(group, buffer_of, nbytes, device_info, operands, label,
                                      split, private)
    columns = (spec.b_gather.run, t.shape[3]) if spec.b_gather.run > t.shape[3] else None
    gemm = built_gemm(group, buffer_of, nbytes, device_info, spec, operands, out, label, columns)
    return None if gemm is None else [gemm]


def weight_split(spec: GemmSpec, node, device_info) -> int:
    """Into how many runs of images to split a weight gradient whose blocks of output (work
    groups) would keep at most a quarter of the compute units busy: enough for one block
    per unit, each summing at least SPLIT_MIN_DEPTH products. (On a 2-core CPU a lone block
    measured no slower than two plus the kernel adding them up.)"""
    global_size, local_size = gemm_launch(spec, device_info)
    blocks = int(np.prod(global_size)) // int(np.prod(local_size or (1,)))
    images = node.inputs[0].shape[0]
    partials = node.outputs[0].size * images
    if 4 * blocks > device_info.compute_units or partials > gemm_limits.INT_MAX:
        return 1
    wanted = min(-(-device_info.compute_units // blocks), spec.k // SPLIT_MIN_DEPTH)
    return max((s for s in range(1, wanted + 1) if images % s == 0), default=1)


def _split_weight_gradient(group: KernelGroup, buffer_of, nbytes, device_info, operands,
                           label: str, split: int, private: str) -> list:
    """A GEMM batched over (group, run of images) storing partial sums to `private`, then
    the kernel summing them with the group's epilogue (loop_kernels.py's combine step)."""
    t = group.root
    spec, _ = _grad_weight(t, t.producer, **t.producer.attrs, split=split)
    global_size, local_size = gemm_launch(spec, device_info)
    args = tuple(buffer_of[x] for x in operands) + (private,)
    size = t.size * split * t.dtype.itemsize
    body = GemmBody(spec, device_info, GemmPartials(split))
    partials = BuiltKernel(f"P{label}_{split}", body, args, t.size * split,
                           node_ops([t.producer]), spec.flops,
                           sum(nbytes.get(a, 0) for a in args[:2]), size, global_size,
                           local_size, private=((private, size),))
    return [partials, combine_partials(group, loop_spec(t), split, private, buffer_of, nbytes)]


def _geometry(stride, padding, dilation):
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = stride, padding, dilation
    return sh, sw, pt, pl, dh, dw


def _forward(t: Tensor, node, stride, padding, dilation, groups, runs=False):
    """With `runs`, a column stride of 1 and rows of other than a multiple of FORWARD_RUN
    pixels (which load as vectors already), the columns walk each output row padded to
    RUN_ALIGN pixels where that wastes at most a quarter of them (as the input gradient's
    do): vectors of columns then load contiguous elements of an image row."""
    x, w = node.inputs
    (n, c, h, wd), (o, cg, kh, kw), (oh, ow) = x.shape, w.shape, t.shape[2:]
    sh, sw, pt, pl, dh, dw = _geometry(stride, padding, dilation)
    og, k = o // groups, cg * kh * kw
    pitch = _run_pitch(ow) if runs and sw == 1 and ow % FORWARD_RUN else ow
    weights = None if groups == 1 else Gather(f"{_mod('batch_', groups)} * {og * k}",
                                              (f"r * {k}", "0", "0"), ("c", "0", "0"))
    base = f"{_div('batch_', groups)} * {c * h * wd} + {_mod('batch_', groups)} * {cg * h * wd}"
    i, j = _div("r", kw) + f" % {kh}", _mod("r", kw)
    row_h, row_w = f"{i} * {dh} - {pt}", f"{j} * {dw} - {pl}"
    col_h, col_w = f"{_div('c', pitch)} * {sh}", f"{_mod('c', pitch)} * {sw}"
    windows = Gather(base, (f"{_div('r', kh * kw)} * {h * wd} + ({row_h}) * {wd} + {row_w}",
                            row_h, row_w),
                     (f"{col_h} * {wd} + {col_w}", col_h, col_w),
                     _bound(-pt, (oh - 1) * sh + (kh - 1) * dh - pt, h),
                     _bound(-pl, (pitch - 1) * sw + (kw - 1) * dw - pl, wd),
                     run=pitch if sw == 1 else 0)
    spec = GemmSpec(n * groups, og, oh * pitch, k, C_TYPES[t.dtype.name], False, False, 0, 0,
                    weights, windows)
    gb, gi, gj = var("gb", n * groups), var("gi", og), var("gj", oh * pitch)
    return spec, [floordiv(gb, groups), (gb % groups) * og + gi, floordiv(gj, pitch),
                  gj % pitch]


def _grad_input(t: Tensor, node, stride, padding, dilation, groups, input_shape, runs=False):
    """With `runs` and stride 1, the columns walk each row of the input padded to RUN_ALIGN
    pixels (RUN_ALIGN - 1 at most wasted per row, never stored): vectors of columns then
    lie along one row of the output gradient, read as contiguous elements."""
    g, w = node.inputs
    (n, c, h, wd), (o, cg, kh, kw), (oh, ow) = input_shape, w.shape, g.shape[2:]
    sh, sw, pt, pl, dh, dw = _geometry(stride, padding, dilation)
    og, kk = o // groups, kh * kw
    aligned = runs and (sh, sw) == (1, 1)
    pitch = _run_pitch(wd) if aligned else wd
    weights = Gather(f"{_mod('batch_', groups)} * {og * cg * kk}", (f"r * {kk}", "0", "0"),
                     (f"{_div('c', kk)} * {cg * kk} + {_mod('c', kk)}", "0", "0"))
    base = f"{_div('batch_', groups)} * {o * oh * ow} + {_mod('batch_', groups)} * {og * oh * ow}"
    i, j = _div("r", kw) + f" % {kh}", _mod("r", kw)
    row_h, row_w = f"{pt} - {i} * {dh}", f"{pl} - {j} * {dw}"
    col_h, col_w = _div("c", pitch), _mod("c", pitch)
    windows = Gather(base, (f"{_div('r', kk)} * {oh * ow}", row_h, row_w), ("0", col_h, col_w),
                     _bound(pt - (kh - 1) * dh, h - 1 + pt, oh * sh, sh),
                     _bound(pl - (kw - 1) * dw, pitch - 1 + pl, ow * sw, sw), (sh, sw), (ow, 1),
                     run=_run(pitch, wd) if aligned else 0)
    spec = GemmSpec(n * groups, cg, h * pitch, og * kk, C_TYPES[t.dtype.name], False, False,
                    0, 0, weights, windows)
    gb, gi, gj = var("gb", n * groups), var("gi", cg), var("gj", h * pitch)
    return spec, [floordiv(gb, groups), (gb % groups) * cg + gi, floordiv(gj, pitch), gj % pitch]


def _run(pitch: int, width: int) -> int:
    """The Gather's run: the row pitch of the columns where vectors of them fit in a row."""
    return pitch if pitch != width or width % RUN_ALIGN == 0 else 0


def _run_pitch(width: int) -> int:
    """Row pitch of the columns of a GEMM along image rows: `width` rounded up to RUN_ALIGN
    where that wastes at most a quarter of the columns, else `width`."""
    padded = -(-width // RUN_ALIGN) * RUN_ALIGN
    return padded if 4 * (padded - width) <= padded else width


def _grad_weight(t: Tensor, node, stride, padding, dilation, groups, weight_shape, split=1):
    """Batched over (group, run of images) when split over the images (the sum of the
    batches is the gradient), else over the groups."""
    x, g = node.inputs
    (n, c, h, wd), (o, cg, kh, kw), (oh, ow) = x.shape, weight_shape, g.shape[2:]
    sh, sw, pt, pl, dh, dw = _geometry(stride, padding, dilation)
    og, kk, p, run = o // groups, kh * kw, oh * ow, n // split
    group, part = _div("batch_", split), _mod("batch_", split)
    grads = Gather(f"{group} * {og * p} + {part} * {run * o * p}", (f"r * {p}", "0", "0"),
                   (f"{_div('c', p)} * {o * p} + {_mod('c', p)}", "0", "0"))
    row_h, row_w = f"{_div('r', ow)} % {oh} * {sh}", f"{_mod('r', ow)} * {sw}"
    i, j = _div("c", kw) + f" % {kh}", _mod("c", kw)
    col_h, col_w = f"{i} * {dh} - {pt}", f"{j} * {dw} - {pl}"
    windows = Gather(f"{group} * {cg * h * wd} + {part} * {run * c * h * wd}",
                     (f"{_div('r', p)} * {c * h * wd} + {row_h} * {wd} + {row_w}",
                      row_h, row_w),
                     (f"{_div('c', kk)} * {h * wd} + ({col_h}) * {wd} + {col_w}", col_h, col_w),
                     _bound(-pt, (oh - 1) * sh + (kh - 1) * dh - pt, h),
                     _bound(-pl, (ow - 1) * sw + (kw - 1) * dw - pl, wd),
                     krun=ow if sw == 1 else 0)
    spec = GemmSpec(groups * split, og, cg * kk, run * p, C_TYPES[t.dtype.name], False, False,
                    0, 0, grads, windows)
    gb, gi, gj = var("gb", groups), var("gi", og), var("gj", cg * kk)
    return spec, [gb * og + gi, floordiv(gj, kk), floordiv(gj, kw) % kh, gj % kw]


def _bound(lowest: int, highest: int, extent: int, step: int = 1) -> int | None:
    """`extent` / `step` when a window position from `lowest` to `highest` can fall outside
    [0, extent) or off the step."""
    return extent // step if lowest < 0 or highest >= extent or step > 1 else None


def _div(expr: str, divisor: int) -> str:
    return expr if divisor == 1 else f"{expr} / {divisor}"


def _mod(expr: str, divisor: int) -> str:
    return "0" if divisor == 1 else f"{expr} % {divisor}"


_PLANS = {"conv2d": _forward, "conv2d_grad_input": _grad_input,
          "conv2d_grad_weight": _grad_weight}
