"""model.save / gc.nn.load_model: one .npz file, written atomically.

The file holds the architecture (layer classes, their configs, the functional DAG), the
compile settings and optimizer config as JSON (stored as a uint8 array under
`__graphc_model__`), and every weight and optimizer variable as an array. It is written to a
temporary file in the same folder, flushed and fsync'ed, then renamed over the target with
os.replace: an interrupted save leaves the previous file whole. It is read with
np.load(allow_pickle=False); a truncated or foreign file, a missing entry or a weight of the
wrong shape raises CheckpointError naming the file and the problem.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings

import numpy as np

from graphc import optim
from graphc.errors import GraphcError
from graphc.nn import losses as nn_losses
from graphc.nn import metrics as nn_metrics
from graphc.nn.base import REGISTRY, Layer, register_layer

META_KEY = "__graphc_model__"
MODEL_FORMAT = "graphc.nn.model"
WEIGHTS_FORMAT = "graphc.nn.weights"
VERSION = 1


class CheckpointError(GraphcError, ValueError):
    """A saved model or weights file that cannot be loaded (corrupt, incomplete, mismatched)."""


# ---- the file ----

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


def atomic_savez(path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez into a temporary sibling, fsync, then os.replace onto `path`."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
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


def read_npz(path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, or CheckpointError saying why it cannot be read."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path!r} is a single .npy array, not a graphc .npz file")
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except CheckpointError:
        raise
    except Exception as exc:            # zip, zlib and format errors of a damaged file
        raise CheckpointError(f"cannot read {path!r}: the file is truncated, corrupt or not an"
                              f" .npz archive ({type(exc).__name__}: {exc})") from exc


def _metadata(path, arrays: dict, expected_format: str | None) -> dict:
    if META_KEY not in arrays:
        raise CheckpointError(f"{os.fspath(path)!r} is an .npz file but not a graphc model: it "
                              f"has no {META_KEY!r} entry")
    try:
        meta = json.loads(arrays[META_KEY].astype(np.uint8).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{os.fspath(path)!r}: the {META_KEY!r} entry is not valid JSON "
                              f"({exc})") from exc
    if expected_format and meta.get("format") != expected_format:
        raise CheckpointError(f"{os.fspath(path)!r} holds {meta.get('format')!r}, expected "
                              f"{expected_format!r}")
    return meta


def _entry(path, arrays: dict, key: str) -> np.ndarray:
    if key not in arrays:
        raise CheckpointError(f"{os.fspath(path)!r} is incomplete: entry {key!r} is missing")
    return arrays[key]


def _json_array(meta: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)


# ---- weights ----

def _weight_arrays(model) -> tuple[dict[str, np.ndarray], list[dict]]:
    arrays, described = {}, []
    for i, variable in enumerate(model.weights):
        arrays[f"weights/{i}"] = variable.get_value()
        described.append({"name": variable.name, "shape": list(variable.shape)})
    return arrays, described


def _set_weights(path, model, arrays: dict, described: list[dict]) -> None:
    """Check every saved weight against the model's, then assign them all."""
    variables = model.weights
    if len(described) != len(variables):
        raise CheckpointError(f"{os.fspath(path)!r} holds {len(described)} weights, the model "
                              f"{model.name} has {len(variables)}")
    values = []
    for i, (variable, saved) in enumerate(zip(variables, described)):
        value = _entry(path, arrays, f"weights/{i}")
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointError(
                f"{os.fspath(path)!r}: weight {i} ({saved.get('name')}) has shape "
                f"{tuple(value.shape)} in the file, but the model's {variable.name} has shape "
                f"{tuple(variable.shape)}")
        values.append(value)
    for variable, value in zip(variables, values):
        variable.set_value(value.astype(variable.dtype, copy=False))


def save_weights(model, path) -> None:
    """The model's weights alone, in one atomically written .npz file."""
    arrays, described = _weight_arrays(model)
    arrays[META_KEY] = _json_array({"format": WEIGHTS_FORMAT, "version": VERSION,
                                    "weights": described})
    atomic_savez(path, arrays)


def load_weights(model, path) -> None:
    """Weights from save_weights or save, checked against the model's shapes."""
    arrays = read_npz(path)
    meta = _metadata(path, arrays, None)
    _set_weights(path, model, arrays, meta.get("weights", []))


# ---- the whole model ----

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


def _architecture(path, meta: dict):
    name = meta.get("class_name")
    if name not in REGISTRY:
        raise CheckpointError(f"{os.fspath(path)!r}: unknown model class {name!r}")
    try:
        return REGISTRY[name].from_config(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{os.fspath(path)!r}: cannot rebuild the architecture "
                              f"({type(exc).__name__}: {exc})") from exc


def _compile(path, model, settings: dict, custom_objects: dict | None) -> bool:
    try:
        loss = nn_losses.deserialize(settings["loss"], custom_objects)
    except ValueError as exc:
        warnings.warn(f"{os.fspath(path)!r}: loaded without compiling: {exc}", stacklevel=3)
        return False
    model.compile(optim.deserialize(settings["optimizer"]), loss,
                  [nn_metrics.get(m) for m in settings.get("metrics", [])])
    return True


def load_model(path, custom_objects: dict | None = None, compile: bool = True):
    """The model `save` wrote: same architecture, weights and (compiled) optimizer state.

    `custom_objects` maps names to loss functions and layer classes the file refers to.
    """
    arrays = read_npz(path)
    meta = _metadata(path, arrays, MODEL_FORMAT)
    for obj in (custom_objects or {}).values():
        if isinstance(obj, type) and issubclass(obj, Layer):
            register_layer(obj)
    model = _architecture(path, meta)
    _set_weights(path, model, arrays, meta.get("weights", []))
    if compile and meta.get("compile") and _compile(path, model, meta["compile"],
                                                    custom_objects):
        state = {key: _entry(path, arrays, f"optimizer/{key}")
                 for key in meta.get("optimizer_state", [])}
        try:
            model.optimizer.load_state_arrays(model.trainable_weights, state)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{os.fspath(path)!r}: optimizer state does not fit the "
                                  f"model ({exc})") from exc
    return model
