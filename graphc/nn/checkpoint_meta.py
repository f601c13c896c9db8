"""The JSON of a model file, checked field by field before anything is built from it.

`fail(field, problem)` makes the error to raise (CheckpointError naming the file), so every
message names the field as a path: `config.layers[2].config.units`. The JSON's nesting is
bounded before it is parsed, and every walk over it is iterative. What the layers, the
optimizer and the loss read from their configs is checked after they are made, by reading
their configs back: a value they coerced ('8' for 8, 1.5 for an int) or refused shows as a
difference at its field.
"""
from __future__ import annotations

import json
import math
import re

import numpy as np

MAX_META_BYTES = 16 << 20
MAX_DEPTH = 64
MAX_DIM = 1 << 40
DTYPE_NAMES = frozenset({"float16", "float32", "float64", "int32", "int64", "bool"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "an integer",
               float: "a number", bool: "true or false", type(None): "null"}


def _kind(value) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


# ---- parsing ----

def json_depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings (numpy, no recursion)."""
    skeleton = _STRING.sub('""', text).encode("utf-8", errors="replace")
    codes = np.frombuffer(skeleton, np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - \
        np.isin(codes, (ord("]"), ord("}"))).astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def parse(raw: bytes, fail) -> dict:
    """The metadata dict of the raw JSON bytes, with bounded nesting and finite numbers."""
    if len(raw) > MAX_META_BYTES:
        raise fail(None, f"{len(raw):,} bytes of JSON (at most {MAX_META_BYTES:,})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(None, f"is not UTF-8 text ({exc})") from None
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise fail(None, f"nests {depth} levels deep (at most {MAX_DEPTH})")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise fail(None, f"is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise fail(None, f"holds {_kind(meta)}, not an object")
    for field, value in walk(meta):
        if isinstance(value, float) and not math.isfinite(value):
            raise fail(field, f"{value} is not a finite number")
    return meta


def walk(value, field: str = ""):
    """(field path, value) of every value inside `value`, depth first, without recursion."""
    stack = [(field, value)]
    while stack:
        path, item = stack.pop()
        yield path, item
        if isinstance(item, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v)
                         for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))


# ---- fields ----

class Fields:
    """Typed reads of JSON fields; a wrong or missing one raises fail(field, problem)."""

    def __init__(self, fail):
        self.fail = fail

    def get(self, obj: dict, key: str, kinds, field: str, optional: bool = False):
        path = f"{field}.{key}" if field else key
        if key not in obj:
            if optional:
                return None
            raise self.fail(path, "is missing")
        value = obj[key]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if type(value) not in kinds:       # type(): True is no integer here
            wanted = " or ".join(_JSON_TYPES.get(k, k.__name__) for k in kinds)
            raise self.fail(path, f"is {_kind(value)} ({_short(value)}), expected {wanted}")
        return value

    def shape(self, obj: dict, key: str, field: str) -> list[int]:
        shape = self.get(obj, key, list, field)
        for i, d in enumerate(shape):
            if type(d) is not int or not 0 <= d <= MAX_DIM:
                raise self.fail(f"{field}.{key}[{i}]", f"{_short(d)} is not a dimension (an "
                                f"integer in [0, 2**40])")
        return shape

    def dtype(self, obj: dict, key: str, field: str) -> str:
        name = self.get(obj, key, str, field)
        if name not in DTYPE_NAMES:
            raise self.fail(f"{field}.{key}", f"{name!r} is not a dtype graphc models use "
                            f"({', '.join(sorted(DTYPE_NAMES))})")
        return name

    def index(self, value, size: int, field: str) -> int:
        if type(value) is not int or not 0 <= value < size:
            raise self.fail(field, f"{_short(value)} is not an index in [0, {size})")
        return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_top(meta: dict, fail, expected_format: str | None, version: int,
              classes: dict) -> None:
    """format, version, weights (and for a model: class_name, one of `classes`, config,
    compile, optimizer state)."""
    fields = Fields(fail)
    fields.get(meta, "format", str, "")
    if expected_format and meta["format"] != expected_format:
        raise fail("format", f"{meta['format']!r}, expected {expected_format!r}")
    if fields.get(meta, "version", int, "") != version:
        raise fail("version", f"{meta['version']} (this graphc reads version {version})")
    for i, weight in enumerate(fields.get(meta, "weights", list, "")):
        if type(weight) is not dict:
            raise fail(f"weights[{i}]", f"is {_kind(weight)}, expected an object")
        fields.get(weight, "name", str, f"weights[{i}]")
        fields.shape(weight, "shape", f"weights[{i}]")
    if meta["format"] != "graphc.nn.model":
        return
    name = fields.get(meta, "class_name", str, "")
    if name not in classes or not _is_model(classes[name], classes):
        raise fail("class_name", f"unknown model class {name!r}")
    check_architecture(meta, fail)
    settings = fields.get(meta, "compile", (dict, type(None)), "", optional=True)
    if settings:
        fields.get(settings, "optimizer", dict, "compile")
        fields.get(settings, "loss", dict, "compile")
        fields.get(settings, "metrics", list, "compile", optional=True)
    for i, key in enumerate(fields.get(meta, "optimizer_state", list, "", optional=True) or []):
        if type(key) is not str:
            raise fail(f"optimizer_state[{i}]", f"is {_kind(key)}, expected a string")


# ---- the architecture ----

def _is_model(cls, classes: dict) -> bool:
    """A model class: `classes` (the layer registry) holds Model (graphc/nn/model.py), which
    imports saving, which imports this module."""
    return isinstance(cls, type) and issubclass(cls, classes["Model"])


def check_architecture(meta: dict, fail) -> None:
    """The model config and every nested model's, each layer a {class_name, config}."""
    fields = Fields(fail)
    pending = [(meta["class_name"], fields.get(meta, "config", dict, ""), "config")]
    while pending:
        class_name, config, field = pending.pop()
        fields.get(config, "name", str, field)
        layers = fields.get(config, "layers", list, field)
        for i, spec in enumerate(layers):
            where = f"{field}.layers[{i}]"
            if type(spec) is not dict:
                raise fail(where, f"is {_kind(spec)}, expected an object")
            name = fields.get(spec, "class_name", str, where)
            inner = fields.get(spec, "config", dict, where)
            if name in ("Model", "Sequential"):
                pending.append((name, inner, f"{where}.config"))
        if class_name == "Sequential":
            _check_sequential_input(config, fields, field)
        else:
            _check_functional(config, len(layers), fields, field)


def _check_sequential_input(config: dict, fields: Fields, field: str) -> None:
    source = fields.get(config, "input", (dict, type(None)), field, optional=True)
    if source is not None:
        fields.shape(source, "shape", f"{field}.input")
        fields.dtype(source, "dtype", f"{field}.input")


def _check_functional(config: dict, layer_count: int, fields: Fields, field: str) -> None:
    inputs = fields.get(config, "inputs", list, field)
    for i, spec in enumerate(inputs):
        where = f"{field}.inputs[{i}]"
        if type(spec) is not dict:
            raise fields.fail(where, f"is {_kind(spec)}, expected an object")
        fields.shape(spec, "shape", where)
        fields.dtype(spec, "dtype", where)
        fields.get(spec, "name", (str, type(None)), where, optional=True)
    nodes = fields.get(config, "nodes", list, field)
    for j, node in enumerate(nodes):
        where = f"{field}.nodes[{j}]"
        if type(node) is not dict:
            raise fields.fail(where, f"is {_kind(node)}, expected an object")
        fields.index(fields.get(node, "layer", int, where), layer_count, f"{where}.layer")
        fields.get(node, "list_input", bool, where)
        for k, ref in enumerate(fields.get(node, "inputs", list, where)):
            _check_ref(ref, len(inputs), j, fields, f"{where}.inputs[{k}]")
    for k, ref in enumerate(fields.get(config, "outputs", list, field)):
        _check_ref(ref, len(inputs), len(nodes), fields, f"{field}.outputs[{k}]")
    for key in ("single_input", "single_output"):
        fields.get(config, key, bool, field)


def _check_ref(ref, input_count: int, node_count: int, fields: Fields, field: str) -> None:
    """["input", i, 0] or ["node", j, k] with j an earlier node."""
    if type(ref) is not list or len(ref) != 3 or ref[0] not in ("input", "node"):
        raise fields.fail(field, f"{_short(ref)} is not ['input', i, 0] or ['node', j, k]")
    fields.index(ref[1], input_count if ref[0] == "input" else node_count, f"{field}[1]")
    if type(ref[2]) is not int or ref[2] < 0 or (ref[0] == "input" and ref[2] != 0):
        raise fields.fail(f"{field}[2]", f"{_short(ref[2])} is not an output index")


# ---- reading back ----

def first_difference(given, rebuilt, field: str = ""):
    """(field, given value, rebuilt value) of the first field of `given` that `rebuilt`
    does not hold alike, or None (keys only `rebuilt` has are defaults: ignored)."""
    stack = [(field, given, rebuilt)]
    while stack:
        path, a, b = stack.pop()
        if isinstance(a, dict) and isinstance(b, dict):
            for key in reversed(list(a)):
                if key not in b:
                    return f"{path}.{key}" if path else key, a[key], "<no such setting>"
                stack.append((f"{path}.{key}" if path else key, a[key], b[key]))
        elif isinstance(a, list) and isinstance(b, (list, tuple)) and len(a) == len(b):
            stack.extend((f"{path}[{i}]", u, v) for i, u, v in reversed(list(zip(
                range(len(a)), a, b))))
        elif not _same(a, b):
            return path, a, b
    return None


def _same(a, b) -> bool:
    """Alike: same JSON kind and value; a float may come back rounded to float32 (a
    variable holds it), never as inf or nan."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if not math.isfinite(b):
            return False
        return a == b or (isinstance(b, float) and np.float32(a) == np.float32(b))
    return type(a) is type(b) and a == b
