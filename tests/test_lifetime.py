"""Compiled programs live as long as the functions that use them: the per-device program
cache holds them weakly, so deleting functions releases their programs (clReleaseProgram),
while two live functions of one source still share one program (a memory-cache hit)."""
from __future__ import annotations

import gc as python_gc
import uuid

import numpy as np
import pytest

import graphc as gc

pytestmark = pytest.mark.opencl


def cached_programs(device) -> int:
    python_gc.collect()
    return len(device._programs)


def distinct_function(device, k: int):
    """A function whose program source differs from every other test's (the constant)."""
    x = gc.placeholder((8,), gc.float32, name="x")
    return gc.function([x], [x * float(k) + 0.5], device=device)


def test_deleted_functions_release_their_programs(cl_device):
    salt = uuid.uuid4().int % 100_000 + 1000.25    # sources no other test compiled
    baseline = cached_programs(cl_device)
    functions = [distinct_function(cl_device, salt + k) for k in range(12)]
    for k, fn in enumerate(functions):
        np.testing.assert_allclose(fn(np.ones(8, np.float32))[0],
                                   np.full(8, (salt + k) + 0.5, np.float32))
    assert cached_programs(cl_device) == baseline + 12
    del fn, functions
    assert cached_programs(cl_device) == baseline


def test_two_live_functions_of_one_source_share_one_program(cl_device):
    salt = uuid.uuid4().int % 100_000 + 2000.25
    first = distinct_function(cl_device, salt)
    second = distinct_function(cl_device, salt)
    assert cl_device.build_stats[-1].cache == "memory"
    assert second.executable.program is first.executable.program
    del first
    python_gc.collect()
    np.testing.assert_allclose(second(np.ones(8, np.float32))[0], np.full(8, salt + 0.5))
    third = distinct_function(cl_device, salt)
    assert cl_device.build_stats[-1].cache == "memory"     # `second` still holds it
    assert third.executable.program is second.executable.program
