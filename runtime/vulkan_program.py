"""Vulkan programs: GLSL kernels to SPIR-V (glslangValidator, cached on disk) and pipelines.

A Vulkan plan's source is one text: a common part (extensions, helpers) and each kernel
after a `//@kernel NAME` line (codegen/glsl_renderer.py). A kernel's shader is the common
part plus its own text; glslangValidator compiles it to SPIR-V in a subprocess (every kernel
of a program at once). SPIR-V is cached on disk as the OpenCL binaries are
(runtime/cache_entry.py: a checked header naming the key, the device, the driver and the
compiler; a damaged or foreign entry is quarantined and recompiled), and the driver's
pipelines go through one VkPipelineCache per device, saved to the same folder.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cache_entry
from .errors import CompileError, DeviceError, number_source_lines
from .program_cache import BuildRecord, cache_dir, set_aside, store_entry
from .vulkan_api import require_vk

KERNEL_MARK = "//@kernel "
GLSLANG = "glslangValidator"
TARGET_ENV = "vulkan1.2"


@dataclass
class VulkanProgram:
    """A program's kernels: name -> (shader source, SPIR-V words)."""

    device: Any
    shaders: dict[str, tuple[str, bytes]]


def split_program(source: str) -> tuple[str, dict[str, str]]:
    """(common part, {kernel name: its text}) of a Vulkan program source."""
    parts = source.split("\n" + KERNEL_MARK)
    kernels = {}
    for part in parts[1:]:
        name, _, text = part.partition("\n")
        kernels[name.strip()] = text
    return parts[0] + "\n", kernels


def shader_text(common: str, text: str) -> str:
    return common + text


def build_program(device, source: str) -> VulkanProgram:
    """SPIR-V of every kernel of `source`, from the disk cache or glslang."""
    start = time.perf_counter()
    common, kernels = split_program(source)
    shaders, missing, origin = {}, {}, "disk"
    for name, text in kernels.items():
        shader = shader_text(common, text)
        key = _key(device, shader)
        cached = _read_cached(device, key)
        if cached is None:
            missing[name] = (shader, key)
        else:
            shaders[name] = (shader, cached)
    if missing:
        origin = "miss"
        compiled = compile_glsl({n: s for n, (s, _) in missing.items()}, device)
        for name, (shader, key) in missing.items():
            store_entry(_path(key), _identity(device, key), compiled[name])
            shaders[name] = (shader, compiled[name])
    device.build_stats.append(BuildRecord(_key(device, source)[:16], origin,
                                          time.perf_counter() - start))
    return VulkanProgram(device, shaders)


def _key(device, shader: str) -> str:
    fields = [shader, device.name, device.driver_version, TARGET_ENV, glslang_version()]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def _path(key: str) -> Path:
    return cache_dir() / f"{key}.spv"


def _identity(device, key: str) -> bytes:
    return json.dumps({"key": key, "device": device.name, "driver": device.driver_version,
                       "backend": "vulkan", "glslang": glslang_version()}).encode()


def _read_cached(device, key: str) -> bytes | None:
    path = _path(key)
    try:
        words = cache_entry.read(path, _identity(device, key))
    except cache_entry.CorruptEntry as err:
        set_aside(path, f"refused: {err}")
        return None
    if words is not None and (len(words) % 4 or words[:4] != b"\x03\x02\x23\x07"):
        set_aside(path, "its payload is no SPIR-V module")
        return None
    return words


_VERSION: list[str] = []


def glslang_version() -> str:
    """glslangValidator's version line (part of every cache key)."""
    if not _VERSION:
        tool = _glslang()
        out = subprocess.run([tool, "--version"], capture_output=True, text=True)
        _VERSION.append(out.stdout.splitlines()[0] if out.stdout else "unknown")
    return _VERSION[0]


def _glslang() -> str:
    found = shutil.which(GLSLANG)
    if found is None:
        raise DeviceError("the Vulkan backend compiles GLSL with glslangValidator, which is "
                          "not on PATH: `apt-get install glslang-tools`")
    return found


def compile_glsl(shaders: dict[str, str], device=None) -> dict[str, bytes]:
    """SPIR-V of each named GLSL compute shader (glslang processes in parallel)."""
    tool = _glslang()
    with tempfile.TemporaryDirectory(prefix="graphc-glsl-") as folder:
        running = {}
        for i, (name, text) in enumerate(shaders.items()):
            src, out = os.path.join(folder, f"k{i}.comp"), os.path.join(folder, f"k{i}.spv")
            Path(src).write_text(text)
            running[name] = (subprocess.Popen(
                [tool, "--target-env", TARGET_ENV, "-V", src, "-o", out],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out)
        results = {}
        for name, (process, out) in running.items():
            log, _ = process.communicate()
            if process.returncode != 0:
                for other, _ in running.values():
                    other.wait()
                where = device.describe() if device is not None else "Vulkan"
                raise CompileError(
                    f"GLSL compilation failed for kernel {name!r} on {where}\n"
                    f"--- glslang log ---\n{log.strip()}\n"
                    f"--- kernel source ---\n{number_source_lines(shaders[name])}")
            results[name] = Path(out).read_bytes()
    return results


class PipelineCache:
    """A device's VkPipelineCache, loaded from and saved to the cache folder."""

    def __init__(self, device) -> None:
        v = require_vk()
        self.device = device
        self.logical = device.logical.handle
        props = v.vkGetPhysicalDeviceProperties(device.physical)
        uuid = bytes(props.pipelineCacheUUID).hex()
        self.key = hashlib.sha256(json.dumps([device.name, device.driver_version, uuid])
                                  .encode()).hexdigest()
        self.path = cache_dir() / f"{self.key}.vkpipelines"
        self.identity = json.dumps({"key": self.key, "device": device.name,
                                    "driver": device.driver_version,
                                    "pipeline cache": uuid}).encode()
        data = self._load()
        info = v.VkPipelineCacheCreateInfo(initialDataSize=len(data),
                                           pInitialData=v.ffi.from_buffer(data)
                                           if data else v.ffi.NULL)
        self.handle = v.vkCreatePipelineCache(self.logical, info, None)
        self.dirty = False
        atexit.register(self.save)

    def _load(self) -> bytes:
        try:
            return cache_entry.read(self.path, self.identity) or b""
        except cache_entry.CorruptEntry as err:
            set_aside(self.path, f"refused: {err}")
            return b""

    def save(self) -> None:
        """Write the driver's cache data (after new pipelines were made)."""
        if not self.dirty:
            return
        v = require_vk()
        try:
            data = v.vkGetPipelineCacheData(self.logical, self.handle)
        except Exception:       # interpreter shutdown, a lost device: skip the save
            return
        store_entry(self.path, self.identity, bytes(v.ffi.buffer(data))
                     if not isinstance(data, (bytes, bytearray)) else bytes(data))
        self.dirty = False


@dataclass
class Pipeline:
    """One kernel's compute pipeline and its layouts."""

    handle: Any
    layout: Any
    set_layout: Any
    bindings: int
    push_bytes: int


def pipeline(device, name: str, spirv: bytes, buffers: int, scalars: int,
             uniform_scalars: bool, local: int = 1) -> Pipeline:
    """The pipeline of a kernel with `buffers` storage buffers and `scalars` int arguments
    (push constants, or a uniform buffer bound after the storage buffers), run in work
    groups of `local` (specialization constant 0), made once per device and kept."""
    key = (hashlib.sha1(spirv).hexdigest(), buffers, scalars, uniform_scalars, local)
    made = device.__dict__.setdefault("_pipelines", {})
    if key in made:
        return made[key]
    v = require_vk()
    logical = device.logical.handle
    cache = device.__dict__.get("_pipeline_cache")
    if cache is None:
        cache = device.__dict__["_pipeline_cache"] = PipelineCache(device)
    bindings = [v.VkDescriptorSetLayoutBinding(
        binding=i, descriptorType=v.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=1,
        stageFlags=v.VK_SHADER_STAGE_COMPUTE_BIT) for i in range(buffers)]
    if uniform_scalars:
        bindings.append(v.VkDescriptorSetLayoutBinding(
            binding=buffers, descriptorType=v.VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER,
            descriptorCount=1, stageFlags=v.VK_SHADER_STAGE_COMPUTE_BIT))
    set_layout = v.vkCreateDescriptorSetLayout(logical, v.VkDescriptorSetLayoutCreateInfo(
        bindingCount=len(bindings), pBindings=bindings or None), None)
    push = 0 if uniform_scalars else 4 * scalars
    ranges = [v.VkPushConstantRange(stageFlags=v.VK_SHADER_STAGE_COMPUTE_BIT, offset=0,
                                    size=push)] if push else []
    layout = v.vkCreatePipelineLayout(logical, v.VkPipelineLayoutCreateInfo(
        setLayoutCount=1, pSetLayouts=[set_layout], pushConstantRangeCount=len(ranges),
        pPushConstantRanges=ranges or None), None)
    module = v.vkCreateShaderModule(logical, v.VkShaderModuleCreateInfo(
        codeSize=len(spirv), pCode=spirv), None)
    local_data = v.ffi.new("uint32_t[]", [local])
    special = v.VkSpecializationInfo(
        mapEntryCount=1, pMapEntries=[v.VkSpecializationMapEntry(constantID=0, offset=0,
                                                                 size=4)],
        dataSize=4, pData=local_data)
    stage = v.VkPipelineShaderStageCreateInfo(stage=v.VK_SHADER_STAGE_COMPUTE_BIT,
                                              module=module, pName="main",
                                              pSpecializationInfo=special)
    handles = v.vkCreateComputePipelines(logical, cache.handle, 1, [
        v.VkComputePipelineCreateInfo(stage=stage, layout=layout)], None)
    v.vkDestroyShaderModule(logical, module, None)
    cache.dirty = True
    made[key] = Pipeline(handles[0], layout,
                         set_layout, len(bindings), push)
    return made[key]
