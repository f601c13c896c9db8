"""One entry of the disk cache of program binaries: a checked header, then the binary.

A driver given a damaged binary may crash the process (PoCL: SIGSEGV/SIGABRT), so nothing
read from the cache reaches the driver before it is verified. An entry is

    magic (8 bytes) | format version (u32) | identity length (u32) | payload length (u64)
    | sha256 of the payload (32 bytes) | identity (UTF-8 JSON) | payload (the binary)

The identity (a JSON object) names the cache key and the device, driver, platform and
pyopencl versions the binary was built for; it must equal the reader's. Every header field
is checked, and the checksum covers the payload, so a truncated, bit-flipped, foreign or
renamed entry is refused (CorruptEntry) and quarantined by the caller. Entries are written to a temporary file in the
same folder and renamed, so readers never see half an entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

MAGIC = b"graphcK\0"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIIQ32s")
MAX_IDENTITY = 1 << 16


class CorruptEntry(Exception):
    """A cache entry that must not be handed to the driver; the text says why."""


def pack(identity: bytes, payload: bytes) -> bytes:
    """The bytes of an entry holding `payload` for `identity`."""
    checksum = hashlib.sha256(payload).digest()
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(identity), len(payload), checksum)
    return header + identity + payload


def unpack(data: bytes, identity: bytes) -> bytes:
    """The payload of entry `data` if every field checks out for `identity`."""
    if len(data) < _HEADER.size:
        raise CorruptEntry(f"{len(data)} bytes, shorter than the {_HEADER.size}-byte header")
    magic, version, id_length, length, checksum = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptEntry(f"not a graphc cache entry (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise CorruptEntry(f"format version {version}, this graphc reads {FORMAT_VERSION}")
    if id_length > MAX_IDENTITY or _HEADER.size + id_length + length != len(data):
        raise CorruptEntry(f"{len(data)} bytes, the header declares "
                           f"{_HEADER.size} + {id_length} + {length}")
    stored_identity = data[_HEADER.size:_HEADER.size + id_length]
    if stored_identity != identity:
        raise CorruptEntry(identity_difference(stored_identity, identity))
    payload = data[_HEADER.size + id_length:]
    if hashlib.sha256(payload).digest() != checksum:
        raise CorruptEntry("the payload's sha256 differs from the header's")
    return payload


def identity_difference(stored: bytes, expected: bytes) -> str:
    """'built for <field> X, not Y' for the first field (of JSON objects) that differs."""
    try:
        theirs, ours = json.loads(stored), json.loads(expected)
    except ValueError:
        return f"built for an unreadable identity {stored[:80]!r}"
    if not isinstance(theirs, dict) or not isinstance(ours, dict):
        return f"built for {stored[:80]!r}, not {expected[:80]!r}"
    for field in ours:
        if theirs.get(field) != ours[field]:
            return f"built for {field} {theirs.get(field)!r}, not {ours[field]!r}"
    return f"built for {stored[:80]!r}, not {expected[:80]!r}"


def read(path: Path, identity: bytes) -> bytes | None:
    """The verified payload at `path`; None when there is no entry; CorruptEntry when there
    is one that cannot be used (unreadable, a folder, damaged, foreign)."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):     # no entry (or no folder) there
        return None
    except OSError as err:                      # a folder, no permission, an I/O error
        raise CorruptEntry(f"unreadable: {err.strerror or err}") from None
    return unpack(data, identity)


def write(path: Path, identity: bytes, payload: bytes) -> None:
    """Store an entry atomically: a temporary file in the same folder, then a rename.
    OSError (a read-only or full folder) is left to the caller."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.stem[:16] + ".",
                                        suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(pack(identity, payload))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def quarantine(path: Path) -> Path | None:
    """Move a bad entry aside to `<name>.bad` (replacing an older one), so the next build
    writes a good entry and the bad one can still be inspected; delete it where it cannot
    be moved. The new path, or None when it was deleted or nothing could be done."""
    bad = path.with_name(path.name + ".bad")
    _remove(bad)
    try:
        os.replace(path, bad)
        return bad
    except OSError:
        _remove(path)
        return None


def _remove(path: Path) -> None:
    """Delete a file or a folder tree; best effort."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass
