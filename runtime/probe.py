"""`python -m graphc.runtime.probe`: is there a real OpenCL device, not only a simulator?

`make venv` asks this after installing graphc, to decide whether PoCL's pip wheel is needed.
A simulator does not count: the `dev` extra installs Oclgrind (a checker that runs kernels
hundreds of times slower than a CPU driver), and pyopencl finds its ICD in its own folder even
on a machine with no system driver, so "any device at all" would always be true there and
the demo would train on Oclgrind.

Exit status 0 when at least one real device exists, 1 when none does (no pyopencl, no
platform, or simulators only); one line per device found says which counted.
"""
from __future__ import annotations

import sys
from typing import Callable, Iterable

# Lower-case substrings of platform names that are simulators or checkers, never a device to
# train on.
SIMULATORS = ("oclgrind",)

Platform = tuple[str, list[str]]          # (platform name, names of its devices)


def is_simulator(platform_name: str) -> bool:
    """True for a platform that simulates a device (Oclgrind) rather than running on one."""
    name = platform_name.lower()
    return any(simulator in name for simulator in SIMULATORS)


def real_devices(platforms: Iterable[Platform]) -> list[str]:
    """'DEVICE (PLATFORM)' of each device on a platform that is not a simulator."""
    return [f"{device} ({platform})" for platform, names in platforms
            if not is_simulator(platform) for device in names]


def opencl_platforms() -> list[Platform]:
    """Every OpenCL platform pyopencl finds, with its device names; [] without any."""
    try:
        import pyopencl as cl
    except ImportError:
        return []
    try:
        found = cl.get_platforms()
    except (cl.Error, RuntimeError):        # PLATFORM_NOT_FOUND_KHR: no ICD at all
        return []
    return [(p.name.strip(), _device_names(cl, p)) for p in found]


def _device_names(cl, platform) -> list[str]:
    try:
        return [d.name.strip() for d in platform.get_devices()]
    except (cl.Error, RuntimeError):        # DEVICE_NOT_FOUND: a platform with no device
        return []


def report(platforms: list[Platform]) -> list[str]:
    """One line per device: counted as real, or left out as a simulator."""
    lines = []
    for platform, names in platforms:
        kind = "simulator, not counted" if is_simulator(platform) else "real device"
        lines += [f"  {device} ({platform}): {kind}" for device in names]
    return lines


def main(platforms: Callable[[], list[Platform]] = opencl_platforms) -> int:
    """Print what was found; 0 when a real device exists, else 1."""
    found = platforms()
    lines = report(found)
    count = len(real_devices(found))
    summary = (f"{count} real OpenCL device(s)" if count
               else "no real OpenCL device (simulators are not counted)")
    print("\n".join([f"graphc probe: {summary}"] + lines))
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main())
