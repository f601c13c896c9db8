"""model.save / gc.nn.load_model: one .npz file, written atomically, read without trust.

The file holds the architecture (layer classes, their configs, the functional DAG), the
compile settings and optimizer config as JSON (stored as a uint8 array under
`__graphc_model__`), and every weight and optimizer variable as an array. It is written to a
temporary sibling (`.NAME.PID-HOST.XXXX.tmp`), flushed and fsync'ed, then renamed over the
target with os.replace: an interrupted save leaves the previous file whole, and the next
save of the same target removes the temporaries that dead writers left.

A model file may come from elsewhere, so loading trusts nothing in it (graphc.nn.npz_reader,
graphc.nn.checkpoint_meta): the JSON's fields are checked before anything is built, sizes
before anything is decompressed or allocated, the layers may create no more weight values
than the file stores, settings are read back to catch coerced values, weights must be
finite in their variable's dtype, and unknown entries are never read. Every problem is one
CheckpointError naming the file and the entry or field.
"""
from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
import warnings

import numpy as np

from graphc import optim
from graphc.errors import CheckpointError, GraphcError
from graphc.nn import checkpoint_meta
from graphc.nn import losses as nn_losses
from graphc.nn import metrics as nn_metrics
from graphc.nn.base import REGISTRY, Layer, LoadLimits, load_limits, register_layer
from graphc.nn.npz_reader import SafeNpz

__all__ = ["CheckpointError", "save_model", "load_model", "save_weights", "load_weights",
           "atomic_savez", "read_npz"]

META_KEY = "__graphc_model__"
MODEL_FORMAT = "graphc.nn.model"
WEIGHTS_FORMAT = "graphc.nn.weights"
VERSION = 1
STALE_SECONDS = 600                 # a temporary of another host is stale after this long
_BUILD_ERRORS = (KeyError, TypeError, ValueError, IndexError, ArithmeticError, GraphcError)


# ---- writing ----

def _write_npz(file, arrays: dict[str, np.ndarray]) -> None:
    """The archive bytes (a seam for tests that interrupt a save)."""
    np.savez(file, **arrays)


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:                     # platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _temporary_pattern(base: str) -> re.Pattern:
    """Our temporaries of target `base`: `.BASE.PID-HOST.XXXX.tmp`, or the older
    `.BASE.XXXXXXXX.tmp` of mkstemp without a pid."""
    return re.compile(rf"^\.{re.escape(base)}\.(?:(\d+)-([A-Za-z0-9]*)\.)?[A-Za-z0-9_]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True                     # exists, another user's (or not a pid: keep it)
    return True


def remove_stale_temporaries(path) -> list[str]:
    """Delete the temporaries earlier saves of `path` left behind (killed mid-write): ours
    only (same target), written by a dead process of this host, or, from another host or
    without a pid, untouched for STALE_SECONDS. The names removed."""
    path = os.path.abspath(os.fspath(path))
    folder, pattern = os.path.dirname(path), _temporary_pattern(os.path.basename(path))
    removed, host = [], _host_tag()
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match is None:
            continue
        full = os.path.join(folder, name)
        pid, owner = match.group(1), match.group(2)
        try:
            if pid is not None and owner == host:
                stale = int(pid) != os.getpid() and not _pid_alive(int(pid))
            else:
                stale = time.time() - os.stat(full).st_mtime > STALE_SECONDS
            if stale:
                os.unlink(full)
                removed.append(name)
        except OSError:                 # gone meanwhile, or not ours to remove
            continue
    return removed


def atomic_savez(path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez into a temporary sibling, fsync, then os.replace onto `path`."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    remove_stale_temporaries(path)
    fd, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.{os.getpid()}-{_host_tag()}.", suffix=".tmp",
        dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            _write_npz(file, arrays)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_array(meta: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(meta, allow_nan=False).encode("utf-8"), np.uint8)


def _weight_arrays(model) -> tuple[dict[str, np.ndarray], list[dict]]:
    arrays, described = {}, []
    for i, variable in enumerate(model.weights):
        arrays[f"weights/{i}"] = variable.get_value()
        described.append({"name": variable.name, "shape": list(variable.shape)})
    return arrays, described


def save_weights(model, path) -> None:
    """The model's weights alone, in one atomically written .npz file."""
    arrays, described = _weight_arrays(model)
    arrays[META_KEY] = _json_array({"format": WEIGHTS_FORMAT, "version": VERSION,
                                    "weights": described})
    atomic_savez(path, arrays)


def save_model(model, path) -> None:
    """Architecture, compile settings, weights and optimizer state in one .npz file."""
    if not model.built:
        raise GraphcError(f"model {model.name} is not built: nothing to save yet")
    meta = {"format": MODEL_FORMAT, "version": VERSION, "class_name": type(model).__name__,
            "config": model.get_config(), "compile": model.compile_config}
    arrays, meta["weights"] = _weight_arrays(model)
    if model.optimizer is not None:
        state = model.optimizer.state_arrays(model.trainable_weights)
        arrays.update({f"optimizer/{key}": value for key, value in state.items()})
        meta["optimizer_state"] = sorted(state)
    arrays[META_KEY] = _json_array(meta)
    atomic_savez(path, arrays)


# ---- reading ----

def _open(path) -> SafeNpz:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    return SafeNpz(path, CheckpointError)


def read_npz(path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, each checked as load_model checks them."""
    with _open(path) as npz:
        return {key: npz.array(key) for key in npz.infos}


def _field_error(npz: SafeNpz):
    def fail(field, problem: str) -> CheckpointError:
        where = f"field {field}" if field else f"entry {META_KEY!r}"
        return CheckpointError(f"{npz.path!r}: {where}: {problem}")
    return fail


def _metadata(npz: SafeNpz, expected_format: str | None) -> dict:
    if META_KEY not in npz:
        raise npz.error(f"is an .npz file but not a graphc model: it has no {META_KEY!r} "
                        f"entry")
    header = npz.header(META_KEY)
    if header.dtype != np.uint8 or len(header.shape) != 1:
        raise npz.error(f"holds {header.dtype.name}{list(header.shape)}, not uint8 JSON "
                        f"text", META_KEY)
    fail = _field_error(npz)
    meta = checkpoint_meta.parse(npz.array(META_KEY).tobytes(), fail)
    checkpoint_meta.check_top(meta, fail, expected_format, VERSION, REGISTRY)
    return meta


def _fit_dtype(npz: SafeNpz, key: str, value: np.ndarray, dtype: np.dtype, what: str):
    """`value` as `dtype`, refused where the cast would change it (inf from 1e300, a wrapped
    integer, a fraction dropped) or it is not finite."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and value.dtype.kind in "iuf":
        with np.errstate(over="ignore", invalid="ignore"):
            cast = value.astype(dtype)
        bad = ~np.isfinite(cast)
    elif dtype.kind in "iu" and value.dtype.kind in "iu":
        info = np.iinfo(dtype)
        bad = (value < info.min) | (value > info.max)
        cast = value.astype(dtype)
    elif dtype.kind == value.dtype.kind == "b":
        return value
    else:
        raise npz.error(f"holds {value.dtype.name} values; {what} is {dtype.name}", key)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        problem = f"not a finite {dtype.name}" if dtype.kind == "f" else \
            f"outside {dtype.name}"
        raise npz.error(f"holds {value[where].item()!r} at index {where}: {problem}, which "
                        f"{what} is", key)
    return cast


def _read_weights(npz: SafeNpz, model, described: list[dict]) -> list[np.ndarray]:
    """Every weight, its shape checked against the model's before it is read."""
    variables = model.weights
    if len(described) != len(variables):
        raise CheckpointError(f"{npz.path!r} holds {len(described)} weights, the model "
                              f"{model.name} has {len(variables)}")
    values = []
    for i, (variable, saved) in enumerate(zip(variables, described)):
        key = f"weights/{i}"
        shape = npz.header(key).shape
        if tuple(shape) != tuple(variable.shape):
            raise CheckpointError(
                f"{npz.path!r}: weight {i} ({saved['name']}) has shape {tuple(shape)} in the "
                f"file, but the model's {variable.name} has shape {tuple(variable.shape)}")
        values.append(_fit_dtype(npz, key, npz.array(key), variable.dtype,
                                 f"weight {variable.name}"))
    return values


def _stored_values(npz: SafeNpz, described: list[dict]) -> int:
    """How many weight values the file stores (from the headers: nothing read)."""
    return sum(npz.header(f"weights/{i}").size for i in range(len(described)))


def load_weights(model, path) -> None:
    """Weights from save_weights or save, checked against the model's shapes."""
    with _open(path) as npz:
        meta = _metadata(npz, None)
        values = _read_weights(npz, model, meta["weights"])
    for variable, value in zip(model.weights, values):
        variable.set_value(value)


def _architecture(npz: SafeNpz, meta: dict):
    """The model the config describes, built within what the file's weights hold."""
    name = meta["class_name"]
    budget = _stored_values(npz, meta["weights"])
    limits = LoadLimits(budget, lambda text: CheckpointError(f"{npz.path!r}: field config: "
                                                             f"{text}"))
    try:
        with load_limits(limits):
            model = REGISTRY[name].from_config(meta["config"])
    except CheckpointError:
        raise
    except _BUILD_ERRORS as exc:
        raise CheckpointError(f"{npz.path!r}: field config: cannot rebuild the architecture "
                              f"({type(exc).__name__}: {exc})") from None
    _read_back(npz, "config", meta["config"], model.get_config())
    return model


def _read_back(npz: SafeNpz, field: str, given, rebuilt) -> None:
    """CheckpointError at the first setting the built object does not hold as given."""
    difference = checkpoint_meta.first_difference(given, rebuilt, field)
    if difference is not None:
        path, value, read = difference
        raise CheckpointError(f"{npz.path!r}: field {path}: {value!r} is not a valid setting"
                              f" (read as {read!r})")


def _compile(npz: SafeNpz, model, settings: dict, custom_objects: dict | None) -> bool:
    """Compile as saved; False (with a warning) for a Python loss not in custom_objects."""
    loss_config = settings["loss"]
    if "function" in loss_config:
        try:
            loss = nn_losses.deserialize(loss_config, custom_objects)
        except ValueError as exc:
            warnings.warn(f"{npz.path!r}: loaded without compiling: {exc}", stacklevel=3)
            return False
    else:
        loss = _built(npz, "compile.loss", lambda: nn_losses.deserialize(loss_config))
        _read_back(npz, "compile.loss", loss_config, nn_losses.serialize(loss))
    optimizer = _built(npz, "compile.optimizer",
                       lambda: optim.deserialize(settings["optimizer"]))
    _read_back(npz, "compile.optimizer", settings["optimizer"], optim.serialize(optimizer))
    metrics = []
    for i, spec in enumerate(settings.get("metrics") or []):
        metric = _built(npz, f"compile.metrics[{i}]", lambda: nn_metrics.get(spec))
        _read_back(npz, f"compile.metrics[{i}]", spec, nn_metrics.serialize(metric))
        metrics.append(metric)
    model.compile(optimizer, loss, metrics)
    return True


def _built(npz: SafeNpz, field: str, make):
    try:
        return make()
    except _BUILD_ERRORS as exc:
        raise CheckpointError(f"{npz.path!r}: field {field}: cannot be read "
                              f"({type(exc).__name__}: {exc})") from None


def _optimizer_state(npz: SafeNpz, model, keys: list[str]) -> dict[str, np.ndarray]:
    """The saved optimizer arrays, each checked against the variable it restores."""
    params = model.trainable_weights
    optimizer = model.optimizer
    state = {}
    for key in keys:
        target = optimizer.state_target(params, key)
        if target is None:
            raise npz.error(f"is no state of {type(optimizer).__name__} for this model",
                            f"optimizer/{key}")
        shape, dtype = target
        entry = f"optimizer/{key}"
        if tuple(npz.header(entry).shape) != shape:
            raise npz.error(f"has shape {tuple(npz.header(entry).shape)}, the optimizer's "
                            f"{key} has shape {shape}", entry)
        state[key] = _fit_dtype(npz, entry, npz.array(entry), dtype, f"optimizer {key}")
    return state


def load_model(path, custom_objects: dict | None = None, compile: bool = True):
    """The model `save` wrote: same architecture, weights and (compiled) optimizer state.

    `custom_objects` maps names to loss functions, layer classes and Lambda layers'
    functions the file refers to.
    """
    from graphc.nn.reshaping import register_function
    for obj in (custom_objects or {}).values():
        if isinstance(obj, type) and issubclass(obj, Layer):
            register_layer(obj)
        elif callable(obj) and "<" not in getattr(obj, "__qualname__", "<"):
            register_function(obj)          # a Lambda layer's function, found by name
    with _open(path) as npz:
        meta = _metadata(npz, MODEL_FORMAT)
        model = _architecture(npz, meta)
        values = _read_weights(npz, model, meta["weights"])
        for variable, value in zip(model.weights, values):
            variable.set_value(value)
        if compile and meta.get("compile") and _compile(npz, model, meta["compile"],
                                                        custom_objects):
            state = _optimizer_state(npz, model, meta.get("optimizer_state") or [])
            try:
                model.optimizer.load_state_arrays(model.trainable_weights, state)
            except _BUILD_ERRORS as exc:
                raise CheckpointError(f"{npz.path!r}: optimizer state does not fit the "
                                      f"model ({exc})") from None
    return model
