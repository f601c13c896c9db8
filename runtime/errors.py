"""The graphc error hierarchy's root and the runtime's own errors.

`GraphcError` lives here, in the runtime, because the runtime never imports the compiler;
`graphc.errors` re-exports it and derives the compiler's errors from it.
"""
from __future__ import annotations

from collections.abc import Sequence


class GraphcError(Exception):
    """Base class of every error graphc raises."""


class DeviceError(GraphcError):
    """No OpenCL device, an unknown device, or a failed or oversized allocation."""


class CompileError(GraphcError):
    """An OpenCL program failed to build; the text carries the build log and the source."""


class LaunchError(GraphcError):
    """A kernel could not be bound or enqueued."""


class FeedError(GraphcError, ValueError):
    """A placeholder was not fed, or fed a value of the wrong shape or dtype."""


class ExportError(GraphcError, ValueError):
    """An export directory that cannot be written or loaded (missing, corrupt, truncated,
    foreign, of a newer format, or inconsistent); the message names the file and the field."""


def number_source_lines(source: str, first: int = 1) -> str:
    """Return `source` with a right-aligned line number before each line (`  12 | code`)."""
    lines = source.splitlines()
    width = max(4, len(str(first + len(lines) - 1)))
    return "\n".join(f"{first + i:>{width}} | {line}" for i, line in enumerate(lines))


def compile_error(device_name: str, options: str, log: str, source: str,
                  reason: str) -> CompileError:
    """Build a CompileError whose text holds the device, options, build log and source."""
    text = (
        f"OpenCL build failed on device {device_name!r}: {reason}\n"
        f"build options: {options or '(none)'}\n"
        f"--- build log ---\n{log.strip() or '(empty build log)'}\n"
        f"--- kernel source ---\n{number_source_lines(source)}"
    )
    return CompileError(text)


def launch_error(kernel: str, global_size: Sequence[int], local_size: Sequence[int] | None,
                 args: Sequence[object], reason: str) -> LaunchError:
    """Build a LaunchError naming the kernel, its sizes and its arguments."""
    arg_lines = "\n".join(f"  arg {i}: {arg!r}" for i, arg in enumerate(args)) or "  (none)"
    text = (
        f"kernel {kernel!r} failed: {reason}\n"
        f"global size: {tuple(global_size)}, local size: "
        f"{tuple(local_size) if local_size is not None else None}\n"
        f"arguments:\n{arg_lines}"
    )
    return LaunchError(text)
