"""The GLSL renderer (Vulkan backend): kernel IR bodies to compute shaders, one program text.

Each kernel is a whole compute shader after a common prelude (version, extensions, the
macros that make codegen/loops.py's C spellings GLSL, the work-item id, the half rounding
helper, and Philox and erf where a kernel needs them). The program is the prelude, then each
distinct kernel after a `//@kernel NAME` line; runtime/vulkan_program.py compiles the prelude
plus each kernel to SPIR-V.

IRBody kernels and the GLSL GEMM (GemmBody: matmuls and convolutions, codegen/glsl_gemm.py)
reach this renderer: ops whose OpenCL path is a hand-written template (softmax rows, layer
norm, cross-entropy rows, max-pool routing) are decomposed into primitive ops for Vulkan
(codegen/fallbacks.py, through the lowering registry), and horizontal merging is off (a GLSL
function cannot take buffers as arguments): the Capabilities say so.
"""
from __future__ import annotations

import numpy as np

from graphc.codegen.built import GemmBody, IRBody, KernelSource
from graphc.codegen.glsl_gemm import render_gemm
from graphc.codegen.glsl import kernel_text
from graphc.codegen.kernel import Apply, children
from graphc.errors import GraphcError

KERNEL_MARK = "//@kernel "
PRELUDE = """#version 450
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
{extensions}layout(local_size_x_id = 0) in;
#define GRAPHC_GID (int((gl_WorkGroupID.z * gl_NumWorkGroups.y + gl_WorkGroupID.y) * \\
    gl_NumWorkGroups.x + gl_WorkGroupID.x) * int(gl_WorkGroupSize.x) + \\
    int(gl_LocalInvocationID.x))
#define long int64_t
#define ulong uint64_t
#define fabs abs
#define INFINITY uintBitsToFloat(0x7f800000u)
#define NAN uintBitsToFloat(0x7fc00000u)
#define isfinite(x) (!isinf(x) && !isnan(x))
float graphc_half(float x) {{ return unpackHalf2x16(packHalf2x16(vec2(x, 0.0))).x; }}
/* x ** y as C's pow: a negative base takes integer exponents (the sign from their parity) */
float graphc_pow(float x, float y) {{
    if (y == 0.0) return 1.0;
    if (x >= 0.0 || isnan(x)) return x == 0.0 ? (y < 0.0 ? INFINITY : 0.0) : pow(x, y);
    if (y != trunc(y)) return NAN;
    float r = (-x == INFINITY) ? (y < 0.0 ? 0.0 : INFINITY) : pow(-x, y);
    return mod(y, 2.0) == 1.0 ? -r : r;
}}
"""
ERF = """float graphc_erf_float(float x) {
    float a = abs(x);
    float x2 = x * x;
    float series = x * (1.128379167e+00 + x2 * (-3.761263890e-01 + x2 * (1.128379167e-01
        + x2 * (-2.686617065e-02 + x2 * (5.223977625e-03 + x2 * (-8.548327023e-04
        + x2 * (1.205533298e-04)))))));
    float t = 1.0 / (1.0 + 0.5 * a);
    float p = -1.265538008e+00 + t * (1.000751055e+00 + t * (3.655017888e-01
        + t * (1.521340481e-01 + t * (-4.008021924e-01 + t * (7.997348159e-01
        + t * (-1.932325716e+00 + t * (2.234537713e+00 + t * (-1.211861636e+00
        + t * (2.579018026e-01)))))))));
    float tail = 1.0 - t * exp(p - a * a);
    return a < 0.5 ? series : (x < 0.0 ? -tail : tail);
}
"""


class VulkanRenderError(GraphcError):
    """A kernel the Vulkan backend cannot express."""


class GlslRenderer:
    """Renders kernel IR as GLSL 4.50 compute shaders (see the module doc)."""

    backend = "vulkan"

    def __init__(self, caps):
        self.caps = caps

    def render(self, body) -> KernelSource:
        if isinstance(body, GemmBody):
            text = render_gemm(body)
            epilogue = body.epilogue
            needs = _needs_of(epilogue.params, [v for _, _, v, _ in epilogue.stores])
            if body.spec.dtype == "double":
                needs |= {"fp64"}
            return KernelSource(lambda name: text, needs=needs)
        if not isinstance(body, IRBody):
            raise VulkanRenderError(f"the GLSL renderer has no template for a "
                                    f"{type(body).__name__} (its op should have been "
                                    f"decomposed for Vulkan: codegen/fallbacks.py)")
        kernel = body.kernel
        if kernel.wide:
            raise VulkanRenderError(
                f"kernel {kernel.name} ({', '.join(kernel.ops) or 'no ops'}) indexes past "
                f"2^31 - 1 elements; Vulkan shaders index with 32-bit ints (and no binding "
                f"holds that many elements): split the tensor")
        text = kernel_text(kernel, self.caps.max_push_bytes, body.per_item)
        roots = [s.value for s in kernel.stores] + \
            ([kernel.reduce.body] if kernel.reduce else [])
        return KernelSource(lambda name: text, needs=_needs(kernel, roots))

    def program(self, kernels, uses_random: bool) -> str:
        distinct = list({k.name: k for k in kernels}.values())
        needs = frozenset().union(*(k.needs for k in distinct))
        extensions = ""
        if "f16" in needs:
            extensions += "#extension GL_EXT_shader_16bit_storage : require\n"
        if "bool" in needs:
            extensions += "#extension GL_EXT_shader_8bit_storage : require\n"
        head = PRELUDE.format(extensions=extensions)
        if "fp64" in needs:
            head += "#define GRAPHC_FP64 1\n"
        if uses_random:
            head += _helpers("philox.glsl")
        if "erf" in needs:
            head += ERF
        return head + "".join(f"\n{KERNEL_MARK}{k.name}\n{k.source}" for k in distinct)


def _helpers(file: str) -> str:
    from importlib import resources
    return resources.files("graphc.kernels_cl").joinpath(file).read_text() + "\n"


def _needs(kernel, roots) -> frozenset:
    """"f16" / "bool" where a buffer stores them, "fp64" where anything is double, "erf"."""
    return _needs_of(kernel.params, roots)


def _needs_of(params, roots) -> frozenset:
    needs = set()
    for p in params:
        dtype = np.dtype(p.dtype)
        if dtype == np.float16:
            needs.add("f16")
        if dtype.kind == "b":
            needs.add("bool")
        if dtype == np.float64:
            needs.add("fp64")
    seen, stack = set(), list(roots)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.dtype == np.float64:
            needs.add("fp64")
        if isinstance(node, Apply) and node.op == "erf":
            needs.add("erf")
        stack.extend(children(node))
    return frozenset(needs)
