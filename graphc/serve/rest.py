"""TensorFlow Serving's REST API as data: predict requests to arrays, arrays to responses.

Row format:      {"instances": [row, ...]}   a row is the value of the one input, or an
                 object {input name: value} per row;  answered {"predictions": [...]}
                 (one value per row, or an object {output name: value} per row).
Columnar format: {"inputs": value}  or  {"inputs": {input name: value}};  answered
                 {"outputs": value}  or  {"outputs": {output name: value}}.
"signature_name" may be "serving_default" (the only signature). Every problem is a
RequestError (HTTP 400 with {"error": ...}), raised before the model runs.

JSON is read and written with orjson when it is installed (graphc[serve] installs it; a
784-float row decodes in 0.1 ms instead of 0.9), else with the standard library. As in
TensorFlow Serving, NaN and Infinity are accepted in requests and written as tokens.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc.runtime import TensorSpec

try:
    import orjson
except ImportError:         # the standard library's json does everything, slower
    orjson = None

SIGNATURE = "serving_default"
TF_DTYPES = {"bool": "DT_BOOL", "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32",
             "int64": "DT_INT64", "uint8": "DT_UINT8", "uint16": "DT_UINT16",
             "uint32": "DT_UINT32", "uint64": "DT_UINT64", "float16": "DT_HALF",
             "float32": "DT_FLOAT", "float64": "DT_DOUBLE"}


class RequestError(Exception):
    """A request the server refuses: `status` (4xx) and a message for {"error": ...}."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Predict:
    """A parsed predict request: one array per input, each of `rows` rows (or whole
    tensors, for an export without a batch axis), and the format to answer in."""

    arrays: list[np.ndarray]
    rows: int
    columnar: bool


def parse_predict(body: bytes, inputs: tuple[TensorSpec, ...], batched: bool) -> Predict:
    """The request body as arrays matching `inputs` (batched: the first axis is free)."""
    if not body.strip():
        raise RequestError("empty request body: send a JSON object with 'instances' or "
                           "'inputs'")
    request = decode(body)
    if not isinstance(request, dict):
        raise RequestError(f"the request must be a JSON object, not {_kind(request)}")
    _check_signature(request)
    unknown = sorted(set(request) - {"instances", "inputs", "signature_name"})
    if unknown:
        raise RequestError(f"unknown request fields {unknown}: expected 'instances' or "
                           f"'inputs' (and 'signature_name')")
    if ("instances" in request) == ("inputs" in request):
        raise RequestError("the request needs 'instances' (row format) or 'inputs' "
                           "(columnar format), exactly one of them")
    if "instances" in request:
        values = _rows_to_columns(request["instances"], inputs)
        columnar = False
    else:
        values = _named_columns(request["inputs"], inputs)
        columnar = True
    arrays = [_array(value, spec, batched) for value, spec in zip(values, inputs)]
    rows = arrays[0].shape[0] if batched else 1
    if batched and any(a.shape[0] != rows for a in arrays):
        counts = {s.name: a.shape[0] for s, a in zip(inputs, arrays)}
        raise RequestError(f"inputs have different numbers of rows: {counts}")
    return Predict(arrays, rows, columnar)


def decode(body: bytes) -> Any:
    """Parsed JSON (NaN and Infinity allowed), or a RequestError saying where it breaks."""
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass                    # NaN or Infinity, which only the json module reads
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(f"malformed JSON: {err}") from None


def encode(content: Any) -> bytes:
    """JSON bytes of `content`, whose arrays are numpy arrays (NaN and Infinity as
    tokens, which only the json module writes)."""
    if orjson is not None and all(np.isfinite(a).all() for a in _float_arrays(content)):
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(content, separators=(",", ":"), allow_nan=True,
                      default=_as_list).encode()


def _float_arrays(content: Any):
    if isinstance(content, (np.ndarray, np.generic)):
        if content.dtype.kind == "f":
            yield content
    elif isinstance(content, dict):
        for value in content.values():
            yield from _float_arrays(value)
    elif isinstance(content, list):
        for value in content:
            yield from _float_arrays(value)


def _as_list(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _check_signature(request: dict) -> None:
    name = request.get("signature_name", SIGNATURE)
    if name not in (SIGNATURE, ""):
        raise RequestError(f"unknown signature_name {name!r}: this model has only "
                           f"{SIGNATURE!r}")


def _rows_to_columns(instances: Any, inputs: tuple[TensorSpec, ...]) -> list[list]:
    """Row format: one list of row values per input."""
    if not isinstance(instances, list) or not instances:
        raise RequestError("'instances' must be a non-empty list of rows")
    names = [s.name for s in inputs]
    if all(isinstance(row, dict) for row in instances):
        columns = []
        for index, row in enumerate(instances):
            if sorted(row) != sorted(names):
                raise RequestError(f"instance {index} has inputs {sorted(row)}, the model "
                                   f"takes {sorted(names)}")
        for name in names:
            columns.append([row[name] for row in instances])
        return columns
    if len(inputs) > 1:
        raise RequestError(f"the model takes {len(inputs)} inputs ({', '.join(names)}): each "
                           f"instance must be an object naming them")
    if any(isinstance(row, dict) for row in instances):
        raise RequestError("'instances' mixes objects and plain values")
    return [instances]


def _named_columns(value: Any, inputs: tuple[TensorSpec, ...]) -> list:
    """Columnar format: one value per input."""
    names = [s.name for s in inputs]
    if isinstance(value, dict):
        if sorted(value) != sorted(names):
            raise RequestError(f"'inputs' names {sorted(value)}, the model takes "
                               f"{sorted(names)}")
        return [value[name] for name in names]
    if len(inputs) > 1:
        raise RequestError(f"the model takes {len(inputs)} inputs ({', '.join(names)}): "
                           f"'inputs' must be an object naming them")
    return [value]


def _array(value: Any, spec: TensorSpec, batched: bool) -> np.ndarray:
    """One input's values as an array of its dtype and shape, or a RequestError."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:       # ragged nesting
        raise RequestError(f"input {spec.name!r}: not a regular nested list ({err})") from None
    if array.dtype.kind not in "biuf":
        raise RequestError(f"input {spec.name!r}: expected {spec.dtype} values, got "
                           f"{_values(array)}")
    row_shape = spec.shape[1:] if batched else spec.shape
    if batched:
        shape_ok = array.ndim >= 1 and array.shape[0] > 0 and array.shape[1:] == row_shape
    else:
        shape_ok = array.shape == spec.shape
    if not shape_ok:
        wanted = f"(rows, {', '.join(map(str, row_shape))})" if batched else str(spec.shape)
        raise RequestError(f"input {spec.name!r}: expected shape {wanted.replace(', )', ')')}"
                           f", got {array.shape}")
    wanted = np.dtype(spec.dtype)
    if not _fits(array, wanted):
        raise RequestError(f"input {spec.name!r}: expected {spec.dtype} values, got "
                           f"{_values(array)}")
    return np.asarray(array, dtype=wanted, order="C")      # 0-d stays 0-d


def _fits(array: np.ndarray, wanted: np.dtype) -> bool:
    """Booleans only for bool inputs; integers for integer inputs (in range); any number
    for floating inputs."""
    if wanted.kind == "b":
        return array.dtype.kind == "b"
    if wanted.kind in "iu":
        if array.dtype.kind not in "iu":
            return False
        info = np.iinfo(wanted)
        return array.size == 0 or (info.min <= array.min() and array.max() <= info.max)
    return array.dtype.kind in "biuf"


def _values(array: np.ndarray) -> str:
    kinds = {"b": "booleans", "i": "integers", "u": "integers", "f": "floats",
             "U": "strings", "S": "strings", "O": "mixed values"}
    return kinds.get(array.dtype.kind, str(array.dtype))


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)


# ---- responses ----

def predict_response(outputs: list[np.ndarray], specs: tuple[TensorSpec, ...],
                     columnar: bool) -> dict:
    """{"predictions": ...} (row format) or {"outputs": ...} (columnar), holding arrays
    (encode() writes them)."""
    outputs = [np.asarray(o, order="C") if o.ndim else o[()] for o in outputs]  # 0-d: scalar
    if columnar:
        if len(specs) == 1:
            return {"outputs": outputs[0]}
        return {"outputs": {s.name: o for s, o in zip(specs, outputs)}}
    if len(specs) == 1:
        return {"predictions": outputs[0]}
    return {"predictions": [{s.name: o[i] for s, o in zip(specs, outputs)}
                            for i in range(len(outputs[0]))]}


def status_response(version: str) -> dict:
    """GetModelStatusResponse: the one version, available."""
    return {"model_version_status": [{"version": version, "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


def metadata_response(name: str, version: str, inputs: tuple[TensorSpec, ...],
                      outputs: tuple[TensorSpec, ...], batched: bool) -> dict:
    """GetModelMetadataResponse with the serving_default signature (batch axis -1)."""
    def tensor(spec: TensorSpec) -> dict:
        sizes = ["-1" if batched and i == 0 else str(d) for i, d in enumerate(spec.shape)]
        return {"dtype": TF_DTYPES[spec.dtype], "name": spec.name,
                "tensor_shape": {"dim": [{"size": s, "name": ""} for s in sizes],
                                 "unknown_rank": False}}

    signature = {"inputs": {s.name: tensor(s) for s in inputs},
                 "outputs": {s.name: tensor(s) for s in outputs},
                 "method_name": "tensorflow/serving/predict"}
    return {"model_spec": {"name": name, "signature_name": "", "version": version},
            "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}}}
