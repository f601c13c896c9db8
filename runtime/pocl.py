"""What graphc must know about PoCL (the CPU OpenCL driver) to use its binaries safely.

PoCL compiles in a folder of its cache (POCL_CACHE_DIR, default ~/.cache/pocl/kcache, or
.../uncached with POCL_KERNEL_CACHE=0): a build needs to write there, and an unwritable folder
fails every build with an empty log.

With its kernel cache off, PoCL names a program's folder `_UNCACHED_XXXXXX` (a fresh mkdtemp),
stores that name in the program's binary, unpacks a binary loaded later into the folder the
binary names, compiles each kernel's work-group function there at its first launch, and
deletes the folder when the program is released. So processes (or programs) loading one
binary at once share one folder, and the first to finish deletes it under the others: 21 of
60 concurrent loads aborted ("Final linking of kernel ... failed"). Each load therefore gets a
folder name of its own, written over the one in the binary (same length; PoCL's binary header
has no checksum).
"""
from __future__ import annotations

import os
import re
import secrets
import string
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .device import Device

KERNEL_CACHE_ENV = "POCL_KERNEL_CACHE"
CACHE_DIR_ENV = "POCL_CACHE_DIR"
BINARY_MAGIC = b"poclbin\0"
_HEADER_BYTES = 256         # the program's folder name is in the binary's header
_UNCACHED_NAME = re.compile(rb"_UNCACHED_[A-Za-z0-9]{6}")
_NAME_CHARS = string.ascii_letters + string.digits


def is_pocl(device: Device) -> bool:
    """True for a device of the Portable Computing Language platform."""
    return "portable computing" in device.platform_name.lower()


def kernel_cache_on() -> bool:
    """PoCL's own kernel cache: on unless POCL_KERNEL_CACHE is 0/no/false/off."""
    setting = os.environ.get(KERNEL_CACHE_ENV, "").strip().lower()
    return setting not in ("0", "no", "false", "off")


def cache_folder() -> Path:
    """The folder PoCL builds in: $POCL_CACHE_DIR, else $XDG_CACHE_HOME (or ~/.cache)
    /pocl/kcache, or /pocl/uncached with its kernel cache off."""
    configured = os.environ.get(CACHE_DIR_ENV, "")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME", "") or str(Path.home() / ".cache")
    return Path(base) / "pocl" / ("kcache" if kernel_cache_on() else "uncached")


def unwritable_folder_problem() -> str:
    """Why PoCL cannot create or write its cache folder, or '' when it can (probed with a
    temporary file)."""
    folder = cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)       # as PoCL does when it starts
        with tempfile.TemporaryFile(dir=folder, prefix="graphc-probe"):
            return ""
    except OSError as err:
        return (f"PoCL cannot write its cache folder {str(folder)!r} ({err.strerror or err}); "
                f"every PoCL build needs it: make it writable, or point ${CACHE_DIR_ENV} at "
                f"a writable folder")


def private_binary(binary: bytes) -> bytes:
    """`binary` with its `_UNCACHED_` folder renamed to a fresh one (see the module's text);
    other binaries (PoCL's kernel cache on, other drivers) unchanged."""
    if not binary.startswith(BINARY_MAGIC):
        return binary
    header = binary[:_HEADER_BYTES]
    found = list(_UNCACHED_NAME.finditer(header))
    if len(found) != 1:
        return binary
    start, end = found[0].span()
    return binary[:start] + _fresh_name() + binary[end:]


def _fresh_name() -> bytes:
    """`_UNCACHED_` and 6 random letters/digits, not the name of a folder PoCL holds now."""
    folder = cache_folder()
    while True:
        name = "_UNCACHED_" + "".join(secrets.choice(_NAME_CHARS) for _ in range(6))
        if not (folder / name).exists():
            return name.encode()
