"""The OpenCL C renderer: every kind of kernel body to source, and one program of them.

The kernel IR renders through codegen/opencl.py (its spellings: ctext.py, loops.py), the
hand-written templates through codegen/raw.py, opencl_rows.py and the GEMM templates of
kernels_cl/ (codegen/gemm.py), whose epilogue is the kernel IR rendered here. What a kernel
needs from the program (the fp64 pragma, the half rounding helper) follows from its data.
"""
from __future__ import annotations

from functools import partial
from importlib import resources

import numpy as np

from graphc.codegen.built import (GemmBody, GemmPartials, IRBody, KernelSource, MergedBody,
                                  RawBody, RowsBody)
from graphc.codegen.ctext import ROUND_HALF_SOURCE, c_type, rounded, store_text
from graphc.codegen.gemm import Epilogue, gemm_kernel
from graphc.codegen.index import render as render_index
from graphc.codegen.kernel import Apply, IndexValue, children
from graphc.codegen.opencl import Emitter, kernel_parts, member_function, param_decls
from graphc.codegen.opencl_rows import render_rows
from graphc.codegen.raw import TEMPLATES as RAW_TEMPLATES
from graphc.codegen.raw import render_raw
from graphc.codegen.width import beyond_int, index_type

F16, F64 = np.dtype(np.float16), np.dtype(np.float64)
MERGED = "HKERNEL"      # a merged kernel's name while its digest is taken
FP64_PRAGMA = "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n"


class OpenCLRenderer:
    """Renders kernel bodies as OpenCL C 1.2 (see the module doc)."""

    backend = "opencl"
    # the hand-written templates it renders, and the float16 form of the GEMM template
    raw_templates = frozenset(RAW_TEMPLATES) | {"gemm_half"}

    def __init__(self, caps):
        self.caps = caps

    def render(self, body) -> KernelSource:
        """The source of one kernel body, its name left open."""
        if isinstance(body, IRBody):
            head, tail = kernel_parts(body.kernel, body.per_item)
            kernel = body.kernel
            roots = [s.value for s in kernel.stores] + ([kernel.reduce.body] if kernel.reduce
                                                        else [])
            dtypes = [p.dtype for p in kernel.params] + \
                ([kernel.reduce.acc_dtype] if kernel.reduce else [])
            return KernelSource(lambda name: head + name + tail, needs=_needs(roots, dtypes))
        if isinstance(body, RawBody):
            return KernelSource(partial(_raw_text, body), needs=_needs([], [body.out.dtype],
                                                                       rounds=body.out.dtype))
        if isinstance(body, RowsBody):
            roots = [e for e in (body.x_i, body.t_i, body.label, body.picked, body.g)
                     if e is not None]
            outputs = [o[1] for o in (body.loss, body.grad) if o is not None]
            return KernelSource(partial(_rows_text, body), needs=_needs(
                roots, [body.x_dtype] + [p.dtype for p in body.params] + outputs,
                rounds=F16 if F16 in outputs else None))
        if isinstance(body, GemmBody):
            return KernelSource(partial(_gemm_text, body, gemm_epilogue(body)),
                                needs=_gemm_needs(body))
        if isinstance(body, MergedBody):
            needs = frozenset().union(*(m.needs for m in body.members))
            return KernelSource(partial(render_merged, body), MERGED, needs)
        raise TypeError(f"the OpenCL renderer cannot render a {type(body).__name__}")

    def program(self, kernels, uses_random: bool) -> str:
        """One program: each distinct kernel once, after the fp64 pragma only where a
        kernel uses double, the half rounding helper where one computes float16, the Philox
        helpers when one draws random numbers and erf's (kernels_cl/erf.cl) or tanh's
        (kernels_cl/tanh.cl) when one calls it. (float16 is stored as half and computed in float: no kernel needs cl_khr_fp16,
        see ctext.py.)"""
        distinct = list({k.name: k for k in kernels}.values())
        needs = frozenset().union(*(k.needs for k in distinct))
        header = FP64_PRAGMA if "fp64" in needs else ""
        if "round_half" in needs:
            header += ROUND_HALF_SOURCE
        if uses_random:
            header += _helpers("philox.cl")
        if "erf" in needs:
            header += ("#define GRAPHC_ERF_DOUBLE\n" if "erf_double" in needs else "") + \
                _helpers("erf.cl")
        if "tanh" in needs:
            header += ("#define GRAPHC_TANH_DOUBLE\n" if "tanh_double" in needs else "") + \
                _helpers("tanh.cl")
        return header + "\n".join(k.source for k in distinct)


def _helpers(file: str) -> str:
    """A file of helper functions from kernels_cl/."""
    return resources.files("graphc.kernels_cl").joinpath(file).read_text() + "\n"


def _raw_text(body: RawBody, name: str) -> str:
    return render_raw(body, name)


def _rows_text(body: RowsBody, name: str) -> str:
    return render_rows(body, name)


def _gemm_text(body: GemmBody, epilogue: Epilogue, name: str) -> str:
    return gemm_kernel(name, body.spec, epilogue, body.device).source


def _needs(roots, dtypes, rounds=None) -> frozenset:
    """What a kernel computing the expressions `roots` over values of `dtypes` needs: "fp64"
    where anything is double, "round_half" where a float16 result is rounded (an op or an
    index computed in float16, or `rounds` float16: a template rounding what it stores),
    "erf" where it calls erf (and "erf_double" in double), "tanh" likewise."""
    needs = {"fp64"} if any(np.dtype(d) == F64 for d in dtypes) else set()
    if rounds is not None and np.dtype(rounds) == F16:
        needs.add("round_half")
    seen, stack = set(), list(roots)        # one pass over the roots' shared DAG
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.dtype == F64:
            needs.add("fp64")
        if isinstance(node, (Apply, IndexValue)) and node.dtype == F16:
            needs.add("round_half")
        if isinstance(node, Apply) and node.op in ("erf", "tanh"):
            needs.update((node.op, f"{node.op}_double") if node.dtype == F64 else (node.op,))
        stack.extend(children(node))
    return frozenset(needs)


def _gemm_needs(body: GemmBody) -> frozenset:
    epilogue = body.epilogue
    dtypes = [F64 if body.spec.dtype == "double" else np.dtype(np.float32)]
    if isinstance(epilogue, GemmPartials):
        return _needs([], dtypes)
    stored = [d for _, _, _, d in epilogue.stores]
    return _needs([value for _, _, value, _ in epilogue.stores],
                  dtypes + stored + [p.dtype for p in epilogue.params],
                  rounds=F16 if F16 in stored or body.spec.dtype == "half" else None)


def gemm_epilogue(body: GemmBody) -> Epilogue:
    """The GEMM template's store statement and extra parameters for the body's epilogue."""
    spec, stores = body.spec, body.epilogue
    if isinstance(stores, GemmPartials):
        split = stores.split
        epilogue = Epilogue(("__global {T}* restrict partials",),
                            f"partials[(({{b}} / {split}) * {spec.m} * {{n}} + {{i}} * {{n}} + "
                            f"{{j}}) * {split} + {{b}} % {split}] = {{acc}};")
    else:
        emitter = Emitter("", comments=False)
        lines = []
        for param, target, value, dtype in stores.stores:
            stored = rounded(emitter.value(value), dtype)
            lines.append(store_text(param, render_index(target), stored, dtype))
        # a float16 product is accumulated in float and rounded to half once, as its value
        acc = "graphc_half({acc})" if spec.dtype == "half" else "{acc}"
        head = [f"const int gb = {{b}}; const int gi = {{i}}; const int gj = {{j}}; "
                f"const {'float' if spec.dtype == 'half' else spec.dtype} acc = {acc};"]
        if stores.uses_step:
            head.append("const ulong graphc_step = graphc_step_buffer[0];")
        params = [f"__global {'' if p.output else 'const '}{c_type(p.dtype, storage=True)}* "
                  f"restrict {p.name}" for p in stores.params]
        if stores.uses_step:
            params.append("__global const ulong* restrict graphc_step_buffer")
        epilogue = Epilogue(tuple(params), "{ " + " ".join(head + emitter.lines + lines) + " }")
    if body.columns is not None:
        pitch, width = body.columns
        epilogue = Epilogue(epilogue.params, f"if ({{j}} % {pitch} < {width}) " + epilogue.store)
    return epilogue


def render_merged(body: MergedBody, name: str) -> str:
    """One kernel for independent kernels: their ranges concatenated, each padded to the
    work-group size so every work group runs one member's body (no divergence inside a
    group). Each member becomes a function of its own parameters and its work item id (one
    function per distinct member); the kernel takes every member's arguments in turn
    (buffers, then the int offsets) and calls the member whose range holds its id, with that
    range's start subtracted. The id is a long where the ranges together pass 2^31 - 1."""
    functions: dict[str, tuple[str, object]] = {}   # member source -> (function, its IR)
    buffer_params, scalar_params, calls, end = [], [], [], 0
    for index, (member, (start, span)) in enumerate(zip(body.members, body.spans())):
        kernel, names = member.body.kernel, []
        for n, (kind, _, is_buffer) in enumerate(param_decls(kernel)):
            names.append(f"m{index}_{n}")
            (buffer_params if is_buffer else scalar_params).append(f"{kind} {names[-1]}")
        function, _ = functions.setdefault(member.source, (f"{name}_m{len(functions)}", kernel))
        calls.append(f"  if (gid < {start + span}) {{ "
                     f"{function}({', '.join(names)}, gid - {start}); return; }}")
        end = start + span
    members = "\n".join(member_function(kernel, fn) for fn, kernel in functions.values())
    return members + f"\n__kernel void {name}({', '.join(buffer_params + scalar_params)}) {{\n" \
        f"  const {index_type(beyond_int(end))} gid = get_global_id(0);\n" + \
        "\n".join(calls) + "\n}\n"
