"""Keras's model.to_json() and gc.nn.model_from_json(): the architecture alone, as JSON text.

    text = model.to_json()
    again = gc.nn.model_from_json(text)       # same layers, fresh weights

The text may come from elsewhere, so it is read as a model file's JSON is (graphc.nn.
checkpoint_meta): size and nesting bounded before parsing, every field checked before
anything is built, settings read back after, and the layers may create at most
`max_weight_values` weight values (a declared Dense(10**9) is refused before any memory is
taken). Every problem is one gc.CheckpointError naming the field.
"""
from __future__ import annotations

import json

from graphc.errors import CheckpointError, GraphcError
from graphc.nn import checkpoint_meta
from graphc.nn.base import REGISTRY, Layer, LoadLimits, load_limits, register_layer

FORMAT = "graphc.nn.architecture"
VERSION = 1
MAX_WEIGHT_VALUES = 1 << 28             # 1 GiB of float32 weights
_BUILD_ERRORS = (KeyError, TypeError, ValueError, IndexError, ArithmeticError, GraphcError)


def to_json(model, **kwargs) -> str:
    """{'format', 'version', 'class_name', 'config'} as text; kwargs go to json.dumps
    (indent=2, say)."""
    if not model.built:
        raise GraphcError(f"model {model.name} is not built: it has no architecture to save "
                          f"yet (give it an input shape)")
    return json.dumps({"format": FORMAT, "version": VERSION,
                       "class_name": type(model).__name__, "config": model.get_config()},
                      allow_nan=False, **kwargs)


def _fail(field, problem: str) -> CheckpointError:
    where = f"field {field}" if field else "text"
    return CheckpointError(f"model JSON: {where}: {problem}")


def model_from_json(json_string, custom_objects: dict | None = None,
                    max_weight_values: int = MAX_WEIGHT_VALUES):
    """The model `to_json` described, with freshly initialized weights; custom layer
    classes come from `custom_objects` ({name: class})."""
    for obj in (custom_objects or {}).values():
        if isinstance(obj, type) and issubclass(obj, Layer):
            register_layer(obj)
    raw = json_string.encode("utf-8") if isinstance(json_string, str) else bytes(json_string)
    meta = checkpoint_meta.parse(raw, _fail)
    if meta.get("format") != FORMAT:
        raise _fail("format", f"{meta.get('format')!r}, expected {FORMAT!r} (text from "
                              f"model.to_json())")
    if meta.get("version") != VERSION:
        raise _fail("version", f"{meta.get('version')!r} (this graphc reads version "
                               f"{VERSION})")
    name = meta.get("class_name")
    if name not in ("Model", "Sequential") and not _is_model_class(name):
        raise _fail("class_name", f"unknown model class {name!r}")
    checkpoint_meta.check_architecture(meta, _fail)
    limits = LoadLimits(max_weight_values, lambda text: _fail("config", text))
    try:
        with load_limits(limits):
            model = REGISTRY[name].from_config(meta["config"])
    except CheckpointError:
        raise
    except _BUILD_ERRORS as exc:
        raise _fail("config", f"cannot rebuild the architecture ({type(exc).__name__}: "
                              f"{exc})") from None
    difference = checkpoint_meta.first_difference(meta["config"], model.get_config(), "config")
    if difference is not None:
        path, value, read = difference
        raise _fail(path, f"{value!r} is not a valid setting (read as {read!r})")
    return model


def _is_model_class(name) -> bool:
    from graphc.nn.model import Model
    cls = REGISTRY.get(name) if isinstance(name, str) else None
    return isinstance(cls, type) and issubclass(cls, Model)
