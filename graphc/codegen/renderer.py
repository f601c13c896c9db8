"""A backend's renderer: the last step of code generation, from kernel data to source text.

Everything before it is backend-neutral data (codegen/built.py): the kernel IR, the
parameters of hand-written templates, GEMM specs, launch geometry. A renderer declares what
its language and device can do (Capabilities) and turns each kernel body into source
(KernelSource), then every kernel of a function into one program. The OpenCL C renderer is
codegen/opencl_renderer.py; a second backend (GLSL for Vulkan) adds a Renderer beside it
and an entry in RENDERERS, with its own templates for the RawBody, RowsBody and GemmBody
kernels and its own elementwise expressions (OpDef.templates[backend]).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from graphc.codegen.built import KernelSource, RenderedKernel
from graphc.codegen.glsl_renderer import GlslRenderer
from graphc.codegen.opencl_renderer import OpenCLRenderer

# OpenCL promises every device 1,024 bytes of kernel parameters (CL_DEVICE_MAX_PARAMETER_SIZE;
# PoCL reports just that): a horizontal merge stops before its pointers and ints pass it. A
# merge also stops at MAX_MERGED_SOURCE bytes of source, so no launch saved costs a long build.
MAX_PARAMETER_BYTES = 1024
MAX_MERGED_SOURCE = 64 * 1024


@dataclass(frozen=True)
class Capabilities:
    """What a backend's language and device let code generation do."""

    backend: str                    # "opencl" | "vulkan"
    fp64: bool                      # double arithmetic
    fp16: bool                      # half arithmetic (OpenCL stores float16 as half and
    #                                 computes in float either way: codegen/ctext.py)
    vector_widths: tuple[int, ...]  # the language's vector types
    preferred_vector_width: int     # floats per vector the device prefers
    local_memory: int               # bytes of work-group (shared) memory
    max_work_group: int             # work items per work group
    max_buffers: int | None         # buffer arguments per kernel (None: only the bytes count)
    max_parameter_bytes: int        # bytes of kernel arguments (8 per buffer, 4 per int)
    max_merged_source: int          # bytes of source a merged launch may have
    max_push_bytes: int = 0         # Vulkan: bytes of push constants (more int arguments go
    #                                 in a uniform buffer)
    templates: bool = True          # has the hand-written templates (raw, rows, GEMM);
    #                                 without them, ops decompose (codegen/fallbacks.py)


class Renderer(Protocol):
    """Turns kernel bodies into source (see the module doc)."""

    caps: Capabilities

    def render(self, body) -> KernelSource:
        """The source of one kernel body, its name left open."""

    def program(self, kernels: Sequence[RenderedKernel], uses_random: bool) -> str:
        """One program holding each distinct kernel once, and the helpers they need."""


RENDERERS = {"opencl": OpenCLRenderer, "vulkan": GlslRenderer}


def capabilities(device) -> Capabilities:
    """The Capabilities of a device (graphc.runtime.Device, or a VulkanDevice)."""
    if getattr(device, "backend", "opencl") == "vulkan":
        return vulkan_capabilities(device)
    return Capabilities(
        backend=getattr(device, "backend", "opencl"), fp64=bool(device.fp64),
        fp16=bool(device.fp16), vector_widths=(2, 3, 4, 8, 16),
        preferred_vector_width=max(1, int(device.preferred_float_vector_width)),
        local_memory=int(device.local_mem_size), max_work_group=int(device.max_work_group_size),
        max_buffers=None, max_parameter_bytes=MAX_PARAMETER_BYTES,
        max_merged_source=MAX_MERGED_SOURCE)


def renderer_for(device) -> Renderer:
    """The renderer of `device`'s backend."""
    caps = capabilities(device)
    return RENDERERS[caps.backend](caps)


def vulkan_capabilities(device) -> Capabilities:
    """A Vulkan device's: no vector types, no hand-written templates, no merged launches
    (a GLSL function takes no buffers), its storage buffers per stage and push constants."""
    return Capabilities(
        backend="vulkan", fp64=bool(device.fp64), fp16=bool(device.fp16), vector_widths=(),
        preferred_vector_width=1, local_memory=int(device.local_mem_size),
        max_work_group=int(device.max_work_group_size),
        max_buffers=int(device.max_storage_buffers), max_parameter_bytes=0,
        max_merged_source=0, max_push_bytes=int(device.max_push_constant_bytes),
        templates=False)
