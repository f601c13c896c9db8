"""Export directories on disk: written atomically, read back without trust.

Writing: every file goes into a temporary folder beside the target (`.NAME.tmp-PID-XXXX`),
each file and the folder are fsynced, then the folder is renamed to the target name (an
existing export there is first renamed aside, then deleted). A process killed at any point
leaves either no export or a complete one under the target name; its temporary folder is
removed by the next export to the same target.

Reading: a file is opened only when it is a regular file inside the export (no links), its
size is checked before it is read, its sha256 against the manifest's, and an .npy file's
header (magic, version, dtype, order, shape, length) before numpy loads it, never with pickle.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import ExportError
from .export_format import FORMAT, MANIFEST

MAX_JSON_BYTES = 64 << 20
MAX_NPY_HEADER = 1 << 16
_CHUNK = 1 << 20


# ---- reading ----

def regular_file(root: Path, relative: str) -> Path:
    """root/relative when it is a regular file (not a link, not a folder) inside root."""
    path = root / relative
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise ExportError(f"{root}: file {relative!r} is missing (the manifest lists it)") \
            from None
    except OSError as err:
        raise ExportError(f"{root}: cannot read {relative!r}: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ExportError(f"{root}: {relative!r} is not a regular file (links and folders "
                          f"are refused)")
    for parent in Path(relative).parents:
        if parent != Path(".") and os.path.islink(root / parent):
            raise ExportError(f"{root}: {str(parent)!r} is a link (refused)")
    return path


def sha256_of(path: Path) -> str:
    """The file's sha256, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksums(root: Path, files: dict[str, str]) -> None:
    """Every file the manifest lists exists and has the manifest's sha256."""
    for relative, expected in sorted(files.items()):
        if sha256_of(regular_file(root, relative)) != expected:
            raise ExportError(f"{root / relative}: its sha256 differs from the one in "
                              f"{MANIFEST} (the file was changed or damaged after export)")


def read_json(path: Path) -> object:
    """A JSON file of at most MAX_JSON_BYTES, parsed."""
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ExportError(f"{path}: {size} bytes, more than the {MAX_JSON_BYTES} a graphc "
                          f"export's JSON file may have")
    return parse_json(path, path.read_bytes())


def parse_json(path: Path, data: bytes) -> object:
    """JSON from bytes read from `path` (NaN and Infinity refused)."""
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise ExportError(f"{path}: not valid JSON ({err})") from None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def read_checked(root: Path, relative: str, sha256: str,
                 limit: int = 1 << 40) -> bytes:
    """The bytes of root/relative, a regular file of at most `limit` bytes whose sha256 is
    `sha256` (read once, so what is checked is what is used)."""
    path = regular_file(root, relative)
    size = path.stat().st_size
    if size > limit:
        raise ExportError(f"{path}: {size} bytes, more than the {limit} allowed")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ExportError(f"{path}: its sha256 differs from the one in {MANIFEST} (the file "
                          f"was changed or damaged after export)")
    return data


def parse_npy(path: Path, data: bytes, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The array in .npy bytes `data` (read from `path`), which must hold exactly `dtype` and
    `shape` in C order; the header and the length are checked before the data is read."""
    expected = np.dtype(dtype)
    handle = io.BytesIO(data)
    found_shape, fortran, found = _npy_header(path, handle)
    if found not in (expected, expected.newbyteorder()):
        raise ExportError(f"{path}: holds dtype {found.str!r}, the manifest says {dtype}")
    if fortran or tuple(found_shape) != tuple(shape):
        raise ExportError(f"{path}: holds shape {tuple(found_shape)}"
                          f"{' in Fortran order' if fortran else ''}, the manifest says "
                          f"{tuple(shape)} in C order")
    offset = handle.tell()
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) != offset + count * found.itemsize:
        raise ExportError(f"{path}: {len(data)} bytes, but its header declares "
                          f"{offset} + {count * found.itemsize} (truncated or padded)")
    array = np.frombuffer(data, dtype=found, count=count, offset=offset).reshape(shape)
    return np.array(array, dtype=expected, order="C")


def _npy_header(path: Path, handle) -> tuple:
    """(shape, fortran_order, dtype) of an .npy header, refusing object dtypes."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(handle, max_header_size=MAX_NPY_HEADER)
        elif version in ((2, 0), (3, 0)):
            header = np.lib.format.read_array_header_2_0(handle, max_header_size=MAX_NPY_HEADER)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, OSError, SyntaxError) as err:
        raise ExportError(f"{path}: not a readable .npy file ({err})") from None
    if header[2].hasobject or header[2].names is not None or header[2].subdtype is not None:
        raise ExportError(f"{path}: holds dtype {header[2]!r}; only plain numbers are allowed")
    return header


# ---- writing ----

def write_export(target: Path, files: Iterable[tuple[str, bytes | np.ndarray]],
                 manifest: dict) -> None:
    """Write an export to `target` atomically. `files` are (relative path, bytes or array)
    pairs; the manifest gets their sha256 under "files" and is written last."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _refuse_foreign(target)
    remove_stale_temporaries(target)
    temporary = _new_folder(target, "tmp")
    try:
        checksums = {}
        for relative, content in files:
            checksums[relative] = write_file(temporary / relative, content)
        document = dict(manifest, files=checksums)
        write_file(temporary / MANIFEST, (json.dumps(document, indent=1) + "\n").encode())
        _fsync_folder(temporary)
        _swap_into_place(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def write_file(path: Path, content: bytes | np.ndarray) -> str:
    """Write one file (an array as .npy, no pickle) and fsync it; its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        if isinstance(content, np.ndarray):
            np.save(handle, np.asarray(content, order="C"), allow_pickle=False)  # 0-d stays
        else:
            handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    return sha256_of(path)


def _fsync_folder(path: Path) -> None:
    """Make a folder's entries durable (its new files and renames)."""
    for folder in [path] + [p for p in path.rglob("*") if p.is_dir()]:
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _swap_into_place(temporary: Path, target: Path) -> None:
    """Rename the finished folder to the target; an older export there is moved aside first
    and deleted after."""
    old = None
    if target.exists() or target.is_symlink():
        old = _new_folder(target, "old")
        os.rename(target, old / "export")
    os.rename(temporary, target)
    handle = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _new_folder(target: Path, kind: str) -> Path:
    """A new folder `.NAME.KIND-PID-RANDOM` beside the target (permissions from the umask)."""
    while True:
        folder = target.parent / f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def _refuse_foreign(target: Path) -> None:
    """Replace only an earlier export or an empty folder, never anything else."""
    if target.is_symlink() or target.is_file():
        raise ExportError(f"{target} exists and is not a folder: not replaced by the export")
    if target.is_dir() and any(target.iterdir()):
        manifest = target / MANIFEST
        try:
            ours = manifest.is_file() and f'"{FORMAT}"' in manifest.read_text()[:4096]
        except (OSError, UnicodeDecodeError):
            ours = False
        if not ours:
            raise ExportError(f"{target} exists and is not a graphc export: not replaced "
                              f"(export to a new or empty folder)")


def remove_stale_temporaries(target: Path) -> None:
    """Delete the temporary folders that killed exports to `target` left behind (those of
    processes that no longer run)."""
    for prefix in (f".{target.name}.tmp-", f".{target.name}.old-"):
        for leftover in target.parent.glob(prefix + "*"):
            pid = leftover.name[len(prefix):].split("-")[0]
            if pid.isdigit() and not _running(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
