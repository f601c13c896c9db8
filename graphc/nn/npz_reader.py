"""Reading an .npz archive without trusting it (model files come from elsewhere).

np.load would decompress whatever an entry's stream holds, allocate what a .npy header
declares and, asked for objects, unpickle. Here the zip directory and each entry's .npy
header are checked before anything is decompressed or allocated: an entry is read only when
asked for, only as a plain numeric array, never past the size the directory declares, and
that size must agree with the header's shape and dtype and fit a budget set by the file's
own size. Every problem is one error (the caller's type, e.g. CheckpointError) naming the
file and the entry; entries nobody asks for are never read.
"""
from __future__ import annotations

import ast
import math
import os
import re
import struct
import zipfile
import zlib

import numpy as np

MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 1 << 16
MAX_DIMS = 32
EXPANSION = 16                      # decompressed bytes per byte of file, at most
SLACK_BYTES = 1 << 20               # ... plus this much, for tiny files
CHUNK = 1 << 20
_DESCR = re.compile(r"^[<>|=]?[biuf][1248]$")
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
                NotImplementedError, RuntimeError, ValueError, OverflowError)


class EntryHeader:
    """What an entry's .npy header declares: shape, dtype, order, data offset and size."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, fortran: bool, offset: int):
        self.shape, self.dtype, self.fortran, self.offset = shape, dtype, fortran, offset
        self.size = math.prod(shape)
        self.nbytes = self.size * dtype.itemsize


class SafeNpz:
    """The entries of one .npz file, each checked before it is read. `error(text)` makes
    the exception to raise; texts start with the file's name."""

    def __init__(self, path, error):
        self.path = os.fspath(path)
        self.make_error = error
        self.file_size = os.path.getsize(self.path)
        self.budget = EXPANSION * self.file_size + SLACK_BYTES
        try:
            self.zip = zipfile.ZipFile(self.path)
        except _READ_ERRORS as exc:
            raise self._not_npz(exc) from None
        self.infos: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            if info.filename.endswith(".npy"):
                key = info.filename[:-4]
                if key in self.infos:
                    raise self.error(f"entry {key!r} appears twice in the archive")
                self.infos[key] = info
        self.headers: dict[str, EntryHeader] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.zip.close()

    def error(self, problem: str, key: str | None = None) -> Exception:
        where = f" entry {key!r}" if key is not None else ":"
        return self.make_error(f"{self.path!r}:{where} {problem}")

    def _not_npz(self, exc) -> Exception:
        with open(self.path, "rb") as file:
            start = file.read(len(MAGIC))
        if start == MAGIC:
            return self.error("a single .npy array, not a graphc .npz archive")
        return self.error(f"the file is truncated, corrupt or not an .npz archive "
                          f"({type(exc).__name__}: {exc})")

    def __contains__(self, key: str) -> bool:
        return key in self.infos

    # ---- one entry ----

    def _info(self, key: str) -> zipfile.ZipInfo:
        info = self.infos.get(key)
        if info is None:
            raise self.error("is missing", key)
        if info.flag_bits & 0x1:
            raise self.error("is encrypted", key)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self.error(f"uses compression method {info.compress_type}; graphc reads "
                             f"stored or deflated entries", key)
        ratio_cap = info.compress_size * EXPANSION + SLACK_BYTES
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise self.error(f"declares {info.file_size} bytes but stores "
                             f"{info.compress_size}", key)
        if info.file_size > ratio_cap or info.file_size > self.budget:
            raise self.error(f"declares {info.file_size:,} bytes from {info.compress_size:,} "
                             f"compressed, more than a {self.file_size:,}-byte file may hold "
                             f"(at most {EXPANSION}x plus {SLACK_BYTES:,} bytes)", key)
        return info

    def header(self, key: str) -> EntryHeader:
        """The entry's .npy header, checked against the entry's declared size."""
        if key not in self.headers:
            info = self._info(key)
            try:
                with self.zip.open(info) as stream:
                    header = self._parse_header(stream, key)
            except _READ_ERRORS as exc:
                raise self.error(f"is corrupt ({type(exc).__name__}: {exc})", key) \
                    from None
            if header.offset + header.nbytes != info.file_size:
                raise self.error(
                    f"has a header declaring shape {header.shape} of {header.dtype.name} "
                    f"({header.nbytes:,} bytes of data), but the entry holds "
                    f"{info.file_size - header.offset:,}", key)
            self.headers[key] = header
        return self.headers[key]

    def _parse_header(self, stream, key: str) -> EntryHeader:
        lead = _read_exactly(stream, len(MAGIC) + 2)
        if len(lead) < len(MAGIC) + 2 or lead[:len(MAGIC)] != MAGIC:
            raise self.error("is not a .npy array", key)
        major = lead[len(MAGIC)]
        if major not in (1, 2, 3):
            raise self.error(f"has .npy format version {major}, not 1, 2 or 3", key)
        width = 2 if major == 1 else 4
        (length,) = struct.unpack("<H" if width == 2 else "<I", _read_exactly(stream, width))
        if length > MAX_HEADER_BYTES:
            raise self.error(f"has a {length:,}-byte .npy header (at most "
                             f"{MAX_HEADER_BYTES:,})", key)
        raw = _read_exactly(stream, length)
        if len(raw) < length:
            raise self.error("is truncated inside its .npy header", key)
        text = raw.decode("utf-8" if major == 3 else "latin-1", errors="replace")
        return self._header_fields(text, len(lead) + width + length, key)

    def _header_fields(self, text: str, offset: int, key: str) -> EntryHeader:
        try:
            fields = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            fields = None
        if not isinstance(fields, dict) or set(fields) != {"descr", "fortran_order", "shape"}:
            raise self.error("has a malformed .npy header", key)
        descr, shape, fortran = fields["descr"], fields["shape"], fields["fortran_order"]
        if not isinstance(descr, str) or not _DESCR.match(descr):
            raise self.error(f"holds dtype {descr!r}; graphc files hold plain bool, integer or"
                             f" float arrays (no objects, strings, complex or dates)", key)
        if not (isinstance(shape, tuple) and len(shape) <= MAX_DIMS and all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise self.error(f"has shape {shape!r}, not a tuple of non-negative ints", key)
        if not isinstance(fortran, bool):
            raise self.error(f"has fortran_order {fortran!r}", key)
        return EntryHeader(shape, np.dtype(descr), fortran, offset)

    def array(self, key: str) -> np.ndarray:
        """The entry's array (native byte order, C order), read within its declared size."""
        header = self.header(key)
        info = self.infos[key]
        self._spend(info.file_size, key)
        try:
            with self.zip.open(info) as stream:
                _read_exactly(stream, header.offset)
                data = _read_exactly(stream, header.nbytes)
                stream.read(1)              # at the end: zipfile checks the CRC
        except _READ_ERRORS as exc:
            raise self.error(f"is corrupt ({type(exc).__name__}: {exc})", key) from None
        if len(data) < header.nbytes:
            raise self.error(f"is truncated: {len(data):,} of {header.nbytes:,} bytes", key)
        array = np.frombuffer(data, header.dtype)
        if header.fortran:
            array = array.reshape(header.shape[::-1]).T
        else:
            array = array.reshape(header.shape)
        return np.array(array, dtype=header.dtype.newbyteorder("="), order="C")

    def _spend(self, nbytes: int, key: str) -> None:
        if nbytes > self.budget:
            raise self.error(f"would take the bytes read from the file past {EXPANSION}x its "
                             f"{self.file_size:,} bytes", key)
        self.budget -= nbytes


def _read_exactly(stream, count: int) -> bytes:
    """Up to `count` bytes (fewer only at the end of the stream), in bounded chunks."""
    parts, left = [], count
    while left > 0:
        part = stream.read(min(left, CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)
