"""VulkanExecutable: a Plan on a Vulkan device, recorded once into one command buffer.

The plan's buffers are fixed when it is made, so the whole call is recorded once: per
launch its pipeline, descriptor set, push constants (or, past the device's push-constant
bytes, a uniform buffer of the int arguments) and dispatch, with a memory barrier before a
dispatch that touches a buffer an earlier dispatch since the last barrier touched (read
after write, write after read or write), timestamps around the dispatches where the queue
has them, and a barrier to the host at the end. A call writes the feeds into their mapped
buffers, submits that one command buffer, waits on one fence and reads the outputs back.

Grids: a launch of more work groups than the device's first dimension allows is folded
into two (or three) dimensions; the shaders compute their flat id from all three
(codegen/glsl_renderer.py), and their guards skip the ids past the end.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import launch_error
from .executable import (Executable, PendingRun, StepTiming, check_variables,
                         plan_buffers)
from .host import host_function
from .launch import BufferArg, IOBinding, KernelLaunch, Plan, ScalarArg, plan_problems
from .limits import check_plan_fits
from .resident import ResidentArray
from .vulkan_api import require_vk
from .vulkan_program import pipeline


class VulkanExecutable(Executable):
    """Runs one Plan on one Vulkan device (see the module doc)."""

    # False only in the test that plants a missing barrier for the validation layer to find
    insert_barriers = True

    def __init__(self, device, plan: Plan,
                 variables: Mapping[str, ResidentArray] | None = None) -> None:
        problems = plan_problems(plan)
        if problems:
            raise ValueError("invalid plan:\n  " + "\n  ".join(problems))
        for call in plan.host_calls:
            host_function(call.function)        # registered? (KeyError naming it)
        self.device = device
        self.plan = plan
        self.variables = check_variables(device, plan, variables or {})
        check_plan_fits(device, plan)
        self.program = device.build(plan.source) if plan.launches else None
        self.last_profile: list[tuple[str, float]] = []
        self.last_timing: StepTiming | None = None
        self.last_host_seconds = 0.0
        self._residents = list(self.variables.values())
        self._keep: list[Any] = []          # cffi objects the recorded commands point into
        with device.lock:
            self.buffers = self._allocate_buffers()
            self._pipelines = [self._pipeline(launch) for launch in plan.launches]
            self._sets = self._descriptor_sets()
            self._queries = self._query_pool()
            self._command = self._record(range(len(plan.launches)), timestamps=True)
            self._segments = self._host_segments()
        self._single: dict[int, Any] = {}

    # ---- construction ----

    def _allocate_buffers(self) -> dict[str, Any]:
        """One VulkanBuffer per plan buffer; a view is (parent buffer, offset, bytes)."""
        return plan_buffers(self.plan, self.variables, self.device.allocate, _View)

    def _pipeline(self, launch: KernelLaunch):
        if launch.name not in self.program.shaders:
            raise _failure(launch, "the program has no such kernel")
        n_buffers = sum(isinstance(a, BufferArg) for a in launch.args)
        n_scalars = sum(isinstance(a, ScalarArg) for a in launch.args)
        if n_buffers > self.device.max_storage_buffers:
            raise _failure(launch, f"it binds {n_buffers} storage buffers, the device allows "
                                   f"{self.device.max_storage_buffers} per shader stage")
        uniform = 4 * n_scalars > self.device.max_push_constant_bytes
        return pipeline(self.device, launch.name, self.program.shaders[launch.name][1],
                        n_buffers, n_scalars, uniform, _local(launch))

    def _descriptor_sets(self) -> list[Any]:
        v = require_vk()
        logical = self.device.logical.handle
        launches = self.plan.launches
        if not launches:
            return []
        storage = max(1, sum(p.bindings for p in self._pipelines))
        sizes = [v.VkDescriptorPoolSize(type=v.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                        descriptorCount=storage),
                 v.VkDescriptorPoolSize(type=v.VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER,
                                        descriptorCount=len(launches))]
        self._pool = v.vkCreateDescriptorPool(logical, v.VkDescriptorPoolCreateInfo(
            maxSets=len(launches), poolSizeCount=2, pPoolSizes=sizes), None)
        sets = v.vkAllocateDescriptorSets(logical, v.VkDescriptorSetAllocateInfo(
            descriptorPool=self._pool, descriptorSetCount=len(launches),
            pSetLayouts=[p.set_layout for p in self._pipelines]))
        writes = []
        self._uniforms = []
        for launch, pipe, handle in zip(launches, self._pipelines, sets):
            buffers = [self.buffers[a.buffer] for a in launch.args if isinstance(a, BufferArg)]
            for binding, buffer in enumerate(buffers):
                writes.append(v.VkWriteDescriptorSet(
                    dstSet=handle, dstBinding=binding, descriptorCount=1,
                    descriptorType=v.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                    pBufferInfo=[_buffer_info(v, buffer)]))
            if pipe.push_bytes == 0 and len(buffers) < pipe.bindings:
                uniform = self._uniform_scalars(launch)
                writes.append(v.VkWriteDescriptorSet(
                    dstSet=handle, dstBinding=len(buffers), descriptorCount=1,
                    descriptorType=v.VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER,
                    pBufferInfo=[_buffer_info(v, uniform)]))
        if writes:
            v.vkUpdateDescriptorSets(logical, len(writes), writes, 0, None)
        return list(sets)

    def _uniform_scalars(self, launch: KernelLaunch):
        """The int arguments of a launch in a uniform buffer (std140: one ivec4 per 4)."""
        values = [int(a.value) for a in launch.args if isinstance(a, ScalarArg)]
        packed = np.zeros(-(-len(values) // 4) * 4, np.int32)
        packed[:len(values)] = values
        buffer = self.device.allocate(packed.nbytes, f"{launch.name}:scalars")
        buffer.write(packed)
        self._uniforms.append(buffer)
        return buffer

    def _query_pool(self) -> Any:
        if not self.device.timestamps or not self.plan.launches:
            return None
        v = require_vk()
        return v.vkCreateQueryPool(self.device.logical.handle, v.VkQueryPoolCreateInfo(
            queryType=v.VK_QUERY_TYPE_TIMESTAMP, queryCount=len(self.plan.launches) + 1), None)

    def _record(self, indices, timestamps: bool) -> Any:
        """A command buffer running the launches `indices` in order (see the module doc)."""
        v = require_vk()
        logical = self.device.logical
        command = v.vkAllocateCommandBuffers(logical.handle, v.VkCommandBufferAllocateInfo(
            commandPool=logical.pool, level=v.VK_COMMAND_BUFFER_LEVEL_PRIMARY,
            commandBufferCount=1))[0]
        v.vkBeginCommandBuffer(command, v.VkCommandBufferBeginInfo())
        stamps = timestamps and self._queries is not None
        if stamps:
            v.vkCmdResetQueryPool(command, self._queries, 0, len(self.plan.launches) + 1)
            v.vkCmdWriteTimestamp(command, v.VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT,
                                  self._queries, 0)
        touched: set[int] = set()
        for i in indices:
            launch, pipe = self.plan.launches[i], self._pipelines[i]
            uses = {self.buffers[a.buffer].root for a in launch.args
                    if isinstance(a, BufferArg)}
            if uses & touched and self.insert_barriers:
                _barrier(v, command, v.VK_ACCESS_SHADER_READ_BIT | v.VK_ACCESS_SHADER_WRITE_BIT,
                         v.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT)
                touched = set()
            touched |= uses
            groups = _groups(launch, self.device.max_group_count)
            if 0 not in groups:
                v.vkCmdBindPipeline(command, v.VK_PIPELINE_BIND_POINT_COMPUTE, pipe.handle)
                v.vkCmdBindDescriptorSets(command, v.VK_PIPELINE_BIND_POINT_COMPUTE,
                                          pipe.layout, 0, 1, [self._sets[i]], 0, None)
                if pipe.push_bytes:
                    values = v.ffi.new("int32_t[]", [int(a.value) for a in launch.args
                                                     if isinstance(a, ScalarArg)])
                    self._keep.append(values)
                    v.vkCmdPushConstants(command, pipe.layout, v.VK_SHADER_STAGE_COMPUTE_BIT,
                                         0, pipe.push_bytes, values)
                v.vkCmdDispatch(command, *groups)
            if stamps:
                v.vkCmdWriteTimestamp(command, v.VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT,
                                      self._queries, i + 1)
        _barrier(v, command, v.VK_ACCESS_HOST_READ_BIT, v.VK_PIPELINE_STAGE_HOST_BIT)
        v.vkEndCommandBuffer(command)
        return command

    def _host_segments(self) -> list[tuple[int, Any]]:
        """With host calls: (launch index, command buffer of the launches before it since
        the previous index) per index where a host call starts, then one for the rest."""
        if not self.plan.host_calls:
            return []
        segments, first = [], 0
        for start in sorted({c.start for c in self.plan.host_calls}) + [len(self.plan.launches)]:
            command = self._record(range(first, start), False) if start > first else None
            segments.append((start, command))
            first = start
        return segments

    def _run_with_host_calls(self, after_launch) -> None:
        """The launches in segments, each host call run at its start (its inputs are final
        there, and its outputs are in place before any later launch: it waits at or after
        its start), on the arrays of the mapped buffers."""
        spent = 0.0
        calls = list(self.plan.host_calls)
        for start, command in self._segments:
            if command is not None:
                if after_launch is None:
                    self.device.logical.submit_and_wait(command)
                else:
                    done = max((s for s, _ in self._segments if s < start), default=0)
                    self._run_singly(range(done, start), after_launch)
            for call in [c for c in calls if c.start == start]:
                inputs = [self._host_array(b) for b in call.inputs]
                outputs = [np.empty(b.shape, np.dtype(b.dtype)) for b in call.outputs]
                began = time.perf_counter()
                host_function(call.function)(inputs, outputs, dict(call.attrs))
                spent += time.perf_counter() - began
                for binding, array in zip(call.outputs, outputs):
                    if array.nbytes:
                        self.buffers[binding.buffer].write(np.ascontiguousarray(array))
        self.last_host_seconds = spent

    def _host_array(self, binding: IOBinding) -> np.ndarray:
        array = np.empty(binding.shape, np.dtype(binding.dtype))
        if array.nbytes:
            self.read_buffer(binding.buffer, array)
        return array

    def _run_singly(self, indices, after_launch) -> None:
        for i in indices:
            if i not in self._single:
                self._single[i] = self._record([i], timestamps=False)
            self.device.logical.submit_and_wait(self._single[i])
            after_launch(i)

    # ---- running ----

    def run_async(self, feeds: Sequence[np.ndarray]) -> PendingRun:
        """The run, done at once (a submitted command buffer is waited for under the lock:
        the mapped buffers are read right after); `.result()` gives its outputs."""
        self._check_count(feeds)
        with self.device.lock:
            return PendingRun(self, self._run(feeds, False, None), [], None)

    @property
    def in_place_feeds(self) -> dict[str, int]:
        """No feed is read in place: each is copied into its mapped buffer."""
        return {binding.name: 0 for binding in self.plan.inputs}

    def _run(self, feeds: Sequence[np.ndarray], profile: bool,
             after_launch: Callable[[int], None] | None) -> list[np.ndarray]:
        started = time.perf_counter()
        for binding, feed in zip(self.plan.inputs, feeds):
            self._write_input(binding, feed)
        for resident in self.variables.values():
            resident.buffer     # uploads a value written on the host since the last run
        if self.plan.host_calls:
            self._run_with_host_calls(after_launch)
        elif after_launch is None:
            if self.plan.launches:
                self.device.logical.submit_and_wait(self._command)
        else:
            self._run_singly(range(len(self.plan.launches)), after_launch)
        outputs = []
        for binding in self.plan.outputs:
            array = np.empty(binding.shape, dtype=binding.dtype)
            if array.nbytes:
                self.read_buffer(binding.buffer, array)
            outputs.append(array)
        for resident in self.variables.values():
            resident.mark_device_dirty()
        if profile:
            self.last_profile = self._times(after_launch is None)
            self.last_timing = StepTiming(started, time.perf_counter(),
                                          sum(t for _, t in self.last_profile))
        return outputs

    def _write_input(self, binding: IOBinding, feed: np.ndarray) -> None:
        array = np.asarray(feed, dtype=binding.dtype)
        if array.shape != tuple(binding.shape):
            raise ValueError(f"input {binding.name!r} expects shape {tuple(binding.shape)}, "
                             f"got {array.shape}")
        if array.nbytes:
            target = self.buffers[binding.buffer]
            target.write(np.ascontiguousarray(array))

    def read_buffer(self, name: str, host: np.ndarray) -> None:
        """Copy plan buffer `name`'s first bytes into `host` (the device is idle)."""
        self.buffers[name].read(host)

    def _times(self, recorded: bool) -> list[tuple[str, float]]:
        launches = self.plan.launches
        if not recorded or self._queries is None or not launches or self.plan.host_calls:
            return [(launch.name, 0.0) for launch in launches]
        v = require_vk()
        count = len(launches) + 1
        data = v.ffi.new("uint64_t[]", count)
        v.vkGetQueryPoolResults(self.device.logical.handle, self._queries, 0, count, 8 * count,
                                data, 8, v.VK_QUERY_RESULT_64_BIT | v.VK_QUERY_RESULT_WAIT_BIT)
        period = self.device.timestamp_period * 1e-9
        return [(launch.name, max(0, int(data[i + 1]) - int(data[i])) * period)
                for i, launch in enumerate(launches)]

    def __del__(self) -> None:
        v = _vk_or_none()
        logical = getattr(getattr(self, "device", None), "_logical", None)
        if v is None or logical is None:
            return
        try:
            commands = [self._command] if getattr(self, "_command", None) else []
            commands += list(getattr(self, "_single", {}).values())
            if commands:
                v.vkFreeCommandBuffers(logical.handle, logical.pool, len(commands), commands)
            if getattr(self, "_pool", None) is not None:
                v.vkDestroyDescriptorPool(logical.handle, self._pool, None)
            if getattr(self, "_queries", None) is not None:
                v.vkDestroyQueryPool(logical.handle, self._queries, None)
        except Exception:       # interpreter shutdown
            pass


class _View:
    """Bytes [offset, offset + nbytes) of a VulkanBuffer (a plan's view buffer)."""

    def __init__(self, parent, offset: int, nbytes: int) -> None:
        self.parent, self.offset, self.nbytes = parent, offset, nbytes

    @property
    def root(self) -> int:
        return id(self.parent)

    @property
    def handle(self) -> Any:
        return self.parent.handle

    def write(self, host: np.ndarray) -> None:
        self.parent.write(host, self.offset)

    def read(self, host: np.ndarray) -> None:
        self.parent.read(host, self.offset)


def _buffer_info(v, buffer) -> Any:
    offset = getattr(buffer, "offset", 0)
    parent = getattr(buffer, "parent", buffer)
    size = min(max(buffer.nbytes, 4), parent.nbytes - offset)
    return v.VkDescriptorBufferInfo(buffer=buffer.handle, offset=offset, range=size)


def _barrier(v, command, dst_access: int, dst_stage: int) -> None:
    barrier = v.VkMemoryBarrier(srcAccessMask=v.VK_ACCESS_SHADER_WRITE_BIT |
                                v.VK_ACCESS_SHADER_READ_BIT, dstAccessMask=dst_access)
    v.vkCmdPipelineBarrier(command, v.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, dst_stage, 0,
                           1, [barrier], 0, None, 0, None)


def _local(launch: KernelLaunch) -> int:
    return int(launch.local_size[0]) if launch.local_size else 1


def _groups(launch: KernelLaunch, limits: tuple[int, ...]) -> tuple[int, int, int]:
    """Work groups per dimension for a 1-D launch, folded into 2-D/3-D past the limits."""
    if len(launch.global_size) != 1:
        raise _failure(launch, "Vulkan kernels launch over one dimension")
    count = -(-int(launch.global_size[0]) // _local(launch))
    x = min(count, limits[0])
    rest = -(-count // x) if x else 0
    y = min(rest, limits[1])
    z = -(-rest // y) if y else 0
    if z > limits[2]:
        raise _failure(launch, f"{count} work groups pass the device's "
                               f"{limits[0]} x {limits[1]} x {limits[2]}")
    return x, (y if count else 0), (z if count else 0)


def _failure(launch: KernelLaunch, reason: str) -> Exception:
    return launch_error(launch.name, launch.global_size, launch.local_size, launch.args, reason)


def _vk_or_none():
    try:
        from .vulkan_api import vk
    except ImportError:     # interpreter shutdown: nothing to release any more
        return None
    return vk

