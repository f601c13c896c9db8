"""Matmuls through the GEMM generator (gemm.py), with the fused epilogue as its store.

A matmul qualifies when each operand is a buffer, or a transpose of a buffer's last two
axes (a layout flag, not a copy), or another strided view of a buffer (read through index
arithmetic), and its batch dims are either all present or absent.
The epilogue (bias, activation, the optimizer update writing a variable in place...) is
the same kernel IR as elsewhere, rendered into the GEMM's store statement.
"""
from __future__ import annotations

import numpy as np

from graphc.codegen.ctext import rounded, store_text
from graphc.codegen.gather_views import strided_gather
from graphc.codegen.gemm import Epilogue, GemmSpec, fits_32bit, gemm_kernel
from graphc.codegen.index import Lin, flatten, unflatten, var
from graphc.codegen.kernel import Acc
from graphc.codegen.lower import Lowering
from graphc.codegen.opencl import Emitter, c_type
from graphc.codegen.stores import store_targets
from graphc.codegen.width import exprs_fit, fits
from graphc.ir import Tensor

C_TYPES = {"float32": "float", "float64": "double"}


def operand_view(t: Tensor, is_buffer) -> tuple[Tensor, bool] | None:
    """(tensor whose buffer holds `t`'s data, transposed?) when the GEMM can read `t`
    straight from memory: a buffer, a reshape of one (same bytes), or a transpose of the
    last two axes of either (a layout flag). None when `t` needs a kernel of its own."""
    if is_buffer(t):
        return t, False
    node = t.producer
    if node is None or node.op not in ("reshape", "transpose"):
        return None
    inner = operand_view(node.inputs[0], is_buffer)
    if inner is None or inner[1]:
        return None
    if node.op == "reshape":
        return inner
    perm = tuple(node.attrs["perm"])
    swap = tuple(range(len(perm) - 2)) + (len(perm) - 1, len(perm) - 2)
    return (inner[0], True) if perm == swap else None


def gemm_operands(t: Tensor, buffer_of) -> tuple | None:
    """((a_buffer, a_trans, a_stride, a_gather), (b_...)) when the GEMM fits: each operand
    a buffer, a reshape of one or a transpose of its last two axes (layout flags), or any
    other strided view of one, read through index arithmetic (codegen/gather_views.py)."""
    a, b = t.producer.inputs
    if t.dtype.name not in C_TYPES or t.size == 0 or min(a.shape[-2:] + b.shape[-1:]) < 1:
        return None
    found = []
    for operand, role in ((a, "a"), (b, "b")):
        if operand.shape[:-2] not in ((), t.shape[:-2]):
            return None
        resolved = operand_view(operand, buffer_of.__contains__)
        if resolved is None:
            gathered = strided_gather(operand, buffer_of.__contains__, role)
            if gathered is None:
                return None
            found.append((gathered[0], False, 0, gathered[1]))
            continue
        rows, cols = operand.shape[-2:]
        stride = rows * cols if operand.shape[:-2] else 0
        found.append((resolved[0], resolved[1], stride, None))
    batch = int(np.prod(t.shape[:-2], dtype=np.int64))
    if not fits_32bit(batch, a.shape[-2], b.shape[-1], a.shape[-1], found[0][2], found[1][2],
                      found[0][3] is not None, found[1][3] is not None):
        return None         # the loop kernel, with 64-bit indices
    return tuple(found)


def build_gemm(group, buffer_of, nbytes, device_info, operands, tune=None):
    """A BuiltKernel for a matmul group through the GEMM generator (None where its epilogue
    would index past 32 bits)."""
    t = group.root
    (a, a_trans, a_stride, a_gather), (b, b_trans, b_stride, b_gather) = operands
    m, k = t.producer.inputs[0].shape[-2:]
    n = t.shape[-1]
    batch = int(np.prod(t.shape[:-2], dtype=np.int64))
    spec = GemmSpec(batch, m, n, k, C_TYPES[t.dtype.name], a_trans, b_trans, a_stride, b_stride,
                    a_gather, b_gather)
    if tune is not None:
        device_info = tune(spec, device_info)       # tuned tiles, when known
    out = unflatten(var("gb", batch), t.shape[:-2]) + [var("gi", m), var("gj", n)]
    return built_gemm(group, buffer_of, nbytes, device_info, spec, (a, b), out,
                      f"MM_{batch}_{m}_{n}_{k}")


def built_gemm(group, buffer_of, nbytes, device_info, spec: GemmSpec, operands, out,
               label: str, columns: tuple[int, int] | None = None):
    """The BuiltKernel of `spec` on the buffers of `operands` (A, B), storing the group's
    values at the root's index `out` (linear forms of gb, gi, gj), named `label`_digest.
    With `columns` (pitch, width), only columns j with j % pitch < width are stored. None
    where the epilogue would index past 32 bits (the loop kernel then indexes in 64)."""
    from graphc.codegen.build import BuiltKernel, _digest, _ops_of, _traffic
    t = group.root
    low = Lowering(buffer_of)
    low.computing = set(group.stores) - {t}
    epilogue = _epilogue(group, low, buffer_of, t, out)
    if epilogue is None:
        return None
    if columns is not None:
        epilogue = Epilogue(epilogue.params, f"if ({{j}} % {columns[0]} < {columns[1]}) "
                            + epilogue.store)
    probe = gemm_kernel("K", spec, epilogue, device_info)
    name = f"{label}_{_digest(probe.source)}"
    source = gemm_kernel(name, spec, epilogue, device_info).source   # helpers carry the name
    args = tuple(buffer_of[x] for x in operands) + tuple(low.locals) + \
        (("graphc_step",) if low.uses_step else ())
    ops = tuple(f"{node.op} # {node.site}" for node in _ops_of(group, low))
    return BuiltKernel(name, source, args, t.size, ops, spec.flops,
                       *_traffic(args, group, nbytes), probe.global_size, probe.local_size)


def _epilogue(group, low: Lowering, buffer_of, t: Tensor, out: list) -> Epilogue | None:
    low.accumulated = (t, tuple(out), Acc(t.dtype))
    emitter = Emitter("  ")
    stores, computed = [], []
    for value in group.stores:
        name = low.local(buffer_of[value], value.dtype)
        for part, at, index in store_targets(value, out, t.shape):
            computed.append(low.at(part, at))
            target = flatten(index, value.shape)
            if not fits(target):
                return None
            stored = rounded(emitter.value(computed[-1]), value.dtype)
            stores.append("  " + store_text(name, _index(target), stored, value.dtype))
    if not exprs_fit(computed):
        return None
    T = c_type(t.dtype)
    head = [f"const int gb = {{b}}; const int gi = {{i}}; const int gj = {{j}}; "
            f"const {T} acc = {{acc}};"]
    if low.uses_step:
        head.append("const ulong graphc_step = graphc_step_buffer[0];")
    body = [line.split("  //")[0].strip() for line in emitter.lines + stores]
    store = "{ " + " ".join(head + body) + " }"
    return Epilogue(_params(low, group, buffer_of), store)


def _params(low: Lowering, group, buffer_of) -> tuple[str, ...]:
    written = {buffer_of[v] for v in group.stores}
    params = []
    for buffer, name in low.locals.items():
        const = "" if buffer in written else "const "
        params.append(f"__global {const}{c_type(low.dtypes[buffer], storage=True)}* restrict "
                      f"{name}")
    if low.uses_step:
        params.append("__global const ulong* restrict graphc_step_buffer")
    return tuple(params)


def _index(form: Lin) -> str:
    from graphc.codegen.index import render
    return render(form)
