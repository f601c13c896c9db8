"""A plan's buffers against a device's memory limits, checked before anything is built.

OpenCL reports two limits: the largest single allocation (CL_DEVICE_MAX_MEM_ALLOC_SIZE) and
the device's memory (CL_DEVICE_GLOBAL_MEM_SIZE). A buffer over the first fails when it is
allocated; a plan whose buffers together exceed the second may abort inside the driver on
its first run (PoCL: `Assertion 'p->mem_ptr != NULL'`). Both are refused here, with a text
that names the buffers and, where the caller knows it, what computes them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import DeviceError

if TYPE_CHECKING:
    from .device import Device
    from .launch import Plan

BIGGEST_LISTED = 5      # buffers named when the total is over the device's memory


def format_bytes(nbytes: int) -> str:
    """Human-readable size: '512.0 MiB', '15.6 GiB'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


@dataclass(frozen=True)
class BufferNeed:
    """One device allocation a plan needs: its buffer name, size and what it holds."""

    name: str
    nbytes: int
    what: str = ""      # e.g. "output 0: mul (f32[8]), created at model.py:12"


def plan_needs(plan: Plan, what: Mapping[str, str] | None = None) -> list[BufferNeed]:
    """The allocations a plan makes (views share their parent's), variables included."""
    what = what or {}
    return [BufferNeed(spec.name, spec.nbytes, what.get(spec.name, spec.role))
            for spec in plan.buffers if not spec.parent]


def check_fits(device: Device, needs: Iterable[BufferNeed]) -> None:
    """Raise DeviceError when a buffer is above the device's max allocation, or when all of
    them together are above its global memory."""
    needs = list(needs)
    too_big = sorted((n for n in needs if n.nbytes > device.max_mem_alloc_size),
                     key=lambda n: -n.nbytes)
    if too_big:
        raise DeviceError(_allocation_text(device, too_big))
    total = sum(n.nbytes for n in needs)
    if device.global_mem_size and total > device.global_mem_size:
        raise DeviceError(_peak_text(device, needs, total))


def check_plan_fits(device: Device, plan: Plan, what: Mapping[str, str] | None = None) -> None:
    """check_fits for every allocation of `plan`."""
    check_fits(device, plan_needs(plan, what))


def too_large_text(device: Device, name: str, nbytes: int) -> str:
    """'buffer NAME needs N bytes (..), above the device's max allocation of M bytes (..)'."""

    limit = device.max_mem_alloc_size
    return (f"buffer {name!r} needs {nbytes} bytes ({format_bytes(nbytes)}), above the "
            f"device's max allocation of {limit} bytes ({format_bytes(limit)}) on "
            f"{device.describe()}")


def _allocation_text(device: Device, too_big: Sequence[BufferNeed]) -> str:
    first = too_big[0]
    lines = [too_large_text(device, first.name, first.nbytes) + _holds(first)]
    for other in too_big[1:]:
        lines.append(f"also above the limit: buffer {other.name!r}, {other.nbytes} bytes"
                     f"{_holds(other)}")
    lines.append("nothing was built; use smaller shapes (a smaller batch) or a device with "
                 "a larger max allocation")
    return "\n".join(lines)


def _peak_text(device: Device, needs: Sequence[BufferNeed], total: int) -> str:

    memory = device.global_mem_size
    biggest = sorted(needs, key=lambda n: -n.nbytes)[:BIGGEST_LISTED]
    lines = [f"the planned peak of {total} bytes ({format_bytes(total)} in {len(needs)} "
             f"buffers, variables and constants included) is above the device's memory of "
             f"{memory} bytes ({format_bytes(memory)}) on {device.describe()}; the biggest "
             f"buffers:"]
    lines += [f"  {n.name!r}: {format_bytes(n.nbytes)}" + (f", {n.what}" if n.what else "")
              for n in biggest]
    lines.append("nothing was built; use smaller shapes (a smaller batch) or a device with "
                 "more memory")
    return "\n".join(lines)


def _holds(need: BufferNeed) -> str:
    return f"\n  holds {need.what}" if need.what else ""
