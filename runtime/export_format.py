"""The export format as data: a Plan to and from JSON, and the manifest's fields, all checked.

An export directory holds

    manifest.json        format name and version, graphc version, the signature (inputs and
                         outputs: names, shapes, dtypes, plan bindings), the call counter of
                         random ops, the variables, the plan per backend, sha256 of each file
    opencl/plan.json     the Plan without its source: buffers, bindings, launches
    opencl/program.cl    the Plan's OpenCL C source
    opencl/binaries/*.bin  the program built for the export's device, where the driver keeps
                         no binaries of its own: a checked cache entry (runtime/cache_entry.py)
                         that a load on the same device, driver and platform uses
    variables/NNNN.npy   one array per variable or constant binding of the plan (no pickle)

Backends are keys of the manifest's "backends": "opencl", or "vulkan" for a function compiled
for a Vulkan device (vulkan/plan.json and vulkan/program.glsl, its GLSL kernels; no binaries:
a load compiles them with glslangValidator, through the SPIR-V cache). Everything read back is checked here field by field against the
schema before any of it is used: a bad value is an ExportError naming the file and the field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ExportError
from .launch import BufferArg, BufferSpec, IOBinding, KernelLaunch, Plan, ScalarArg

FORMAT = "graphc-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BACKEND = "opencl"
STEP_BINDING = "graphc_step"
PLAN_FILE = f"{BACKEND}/plan.json"
SOURCE_FILE = f"{BACKEND}/program.cl"
BINARY_FOLDER = f"{BACKEND}/binaries"
DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                    "uint64", "float16", "float32", "float64"})
MAX_ELEMENTS = 1 << 40
_KERNEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,250}")
_BUILD_OPTIONS = re.compile(r"[A-Za-z0-9_=.+ -]{0,1000}")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an export: its name, shape and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str


# ---- a Plan as JSON data ----

def plan_to_data(plan: Plan) -> dict:
    """The plan without its source, as JSON-ready data."""
    return {"build_options": plan.build_options,
            "buffers": [{"name": b.name, "nbytes": b.nbytes, "role": b.role,
                         "parent": b.parent, "offset": b.offset} for b in plan.buffers],
            "inputs": [_binding_data(b) for b in plan.inputs],
            "outputs": [_binding_data(b) for b in plan.outputs],
            "variables": [_binding_data(b) for b in plan.variables],
            "launches": [_launch_data(launch) for launch in plan.launches]}


def _binding_data(binding: IOBinding) -> dict:
    return {"name": binding.name, "buffer": binding.buffer, "shape": list(binding.shape),
            "dtype": binding.dtype}


def _launch_data(launch: KernelLaunch) -> dict:
    args = [{"buffer": a.buffer} if isinstance(a, BufferArg)
            else {"scalar": a.value, "dtype": a.dtype} for a in launch.args]
    return {"name": launch.name, "args": args, "global_size": list(launch.global_size),
            "local_size": None if launch.local_size is None else list(launch.local_size),
            "flops": launch.flops, "bytes_read": launch.bytes_read,
            "bytes_written": launch.bytes_written, "ops": list(launch.ops)}


def plan_from_data(data: Any, source: str, where: str) -> Plan:
    """The Plan that `data` (read from file `where`) describes, every field checked."""
    top = Fields(data, where)
    return Plan(source, top.text("build_options", _BUILD_OPTIONS),
                tuple(_buffer(f) for f in top.records("buffers")),
                tuple(_binding(f) for f in top.records("inputs")),
                tuple(_binding(f) for f in top.records("outputs")),
                tuple(_binding(f) for f in top.records("variables")),
                tuple(_launch(f) for f in top.records("launches")))


def _buffer(f: Fields) -> BufferSpec:
    return BufferSpec(f.name("name"), f.count("nbytes"), f.name("role"),
                      f.name("parent", empty=True), f.count("offset"))


def _binding(f: Fields) -> IOBinding:
    return IOBinding(f.name("name"), f.name("buffer"), f.shape("shape"), f.dtype("dtype"))


def _launch(f: Fields) -> KernelLaunch:
    args = tuple(_argument(a) for a in f.records("args"))
    local = None if f.get("local_size") is None else f.sizes("local_size")
    return KernelLaunch(f.text("name", _KERNEL_NAME), args, f.sizes("global_size"), local,
                        f.count("flops"), f.count("bytes_read"), f.count("bytes_written"),
                        tuple(f.strings("ops")))


def _argument(f: Fields) -> BufferArg | ScalarArg:
    if "buffer" in f.data:
        return BufferArg(f.name("buffer"))
    dtype = f.dtype("dtype")
    value = f.number("scalar", floating=dtype.startswith("float"))
    return ScalarArg(value, dtype)


# ---- the manifest ----

@dataclass(frozen=True)
class VariableEntry:
    """A plan variable's array file."""

    binding: str
    file: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class Manifest:
    """The checked fields of manifest.json."""

    name: str
    graphc_version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    input_bindings: tuple[str, ...]
    output_bindings: tuple[str, ...]
    single_output: bool
    batch_size: int | None
    step: int | None
    variables: tuple[VariableEntry, ...]
    backends: dict            # backend name -> {"plan": file, "source": file, ...}
    files: dict               # relative path -> sha256 hex


def manifest_from_data(data: Any, where: str = MANIFEST) -> Manifest:
    """The manifest's fields (read from file `where`), its format and version checked first."""
    top = Fields(data, where)
    check_format(top)
    signature = top.record("signature")
    inputs = signature.records("inputs")
    outputs = signature.records("outputs")
    step = top.get("step")
    batch = signature.get("batch_size")
    return Manifest(
        top.text("name", re.compile(r"[^\x00-\x1f]{1,200}")),
        top.text("graphc_version", re.compile(r"[^\x00-\x1f]{1,100}")),
        tuple(_spec(f) for f in inputs), tuple(_spec(f) for f in outputs),
        tuple(f.name("binding") for f in inputs), tuple(f.name("binding") for f in outputs),
        signature.flag("single_output"),
        None if batch is None else signature.count("batch_size"),
        None if step is None else top.record("step").count("next"),
        tuple(_variable(f) for f in top.records("variables")),
        {name: _backend(top.record("backends").record(name))
         for name in top.record("backends").data},
        _files(top.record("files")))


def check_format(top: Fields) -> None:
    """A foreign directory, or one this graphc is too old to read, is refused first."""
    found = top.data.get("format")
    if found != FORMAT:
        raise ExportError(f"{top.where}: format {found!r} is not {FORMAT!r}: not a graphc "
                          f"export")
    version = top.count("format_version")
    if version > FORMAT_VERSION:
        raise ExportError(f"{top.where}: format version {version} is newer than this graphc "
                          f"reads ({FORMAT_VERSION}); exported by graphc "
                          f"{top.data.get('graphc_version')!r}: upgrade graphc to load it")
    if version < 1:
        raise ExportError(f"{top.where}: format version {version} does not exist")


def _spec(f: Fields) -> TensorSpec:
    return TensorSpec(f.text("name", re.compile(r"[^\x00-\x1f]{1,200}")), f.shape("shape"),
                      f.dtype("dtype"))


def _variable(f: Fields) -> VariableEntry:
    return VariableEntry(f.name("binding"), f.path("file"), f.shape("shape"), f.dtype("dtype"))


def _backend(f: Fields) -> dict:
    entry: dict = {key: f.path(key) for key in ("plan", "source") if key in f.data}
    entry["binaries"] = [Fields.path_text(p, f"{f.where} field {f.prefix}.binaries")
                         for p in f.strings("binaries")] if "binaries" in f.data else []
    if "built_on" in f.data:
        built = f.record("built_on")
        entry["built_on"] = {k: built.text(k, re.compile(r"[^\x00-\x1f]{0,300}"))
                             for k in built.data}
    return entry


def backend_paths(backend: str) -> tuple[str, str, str]:
    """(plan file, source file, binary folder) of a backend's plan in an export."""
    if backend == BACKEND:
        return PLAN_FILE, SOURCE_FILE, BINARY_FOLDER
    return f"{backend}/plan.json", f"{backend}/program.glsl", f"{backend}/binaries"


def manifest_data(name: str, graphc_version: str, inputs: list[tuple[TensorSpec, str]],
                  outputs: list[tuple[TensorSpec, str]], single_output: bool,
                  batch_size: int | None, step: int | None,
                  variables: list[VariableEntry], built_on: dict,
                  binaries: list[str] = (), backend: str = BACKEND) -> dict:
    """manifest.json's content (without "files", which the writer adds) for a plan written
    as opencl/plan.json and opencl/program.cl, with program binaries (cache entries of
    runtime/cache_entry.py) in the files `binaries`; inputs and outputs pair a TensorSpec
    with its plan binding."""
    def spec(pair: tuple[TensorSpec, str]) -> dict:
        tensor, binding = pair
        return {"name": tensor.name, "shape": list(tensor.shape), "dtype": tensor.dtype,
                "binding": binding}

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "name": name,
            "graphc_version": graphc_version,
            "signature": {"inputs": [spec(p) for p in inputs],
                          "outputs": [spec(p) for p in outputs],
                          "single_output": single_output, "batch_size": batch_size},
            "step": None if step is None else {"binding": STEP_BINDING, "next": step},
            "variables": [{"binding": v.binding, "file": v.file, "shape": list(v.shape),
                           "dtype": v.dtype} for v in variables],
            "backends": {backend: {"plan": backend_paths(backend)[0],
                                   "source": backend_paths(backend)[1],
                                   "binaries": list(binaries), "built_on": built_on}}}


def _files(f: Fields) -> dict:
    files = {}
    for name in f.data:
        f.path_text(name, f"{f.where} key")
        files[name] = f.text(name, _SHA256)
    return files


class Fields:
    """A JSON object read from file `where`, with typed, checked accessors: a missing or
    wrong field raises ExportError naming the file and the field's path."""

    def __init__(self, data: Any, where: str, path: str = "") -> None:
        if not isinstance(data, dict):
            raise ExportError(f"{where}: {path or 'the top level'} must be a JSON object, got "
                              f"{type(data).__name__}")
        self.data, self.where, self.prefix = data, where, path

    def _at(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, wanted: str) -> ExportError:
        value = self.data.get(key, "<missing>")
        shown = repr(value) if len(repr(value)) < 80 else repr(value)[:77] + "..."
        return ExportError(f"{self.where}: field {self._at(key)!r} must be {wanted}, got "
                           f"{shown}")

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def record(self, key: str) -> Fields:
        if not isinstance(self.data.get(key), dict):
            raise self.fail(key, "an object")
        return Fields(self.data[key], self.where, self._at(key))

    def records(self, key: str) -> list[Fields]:
        items = self.data.get(key)
        if not isinstance(items, list):
            raise self.fail(key, "a list")
        return [Fields(item, self.where, f"{self._at(key)}[{i}]") for i, item in enumerate(items)]

    def text(self, key: str, pattern: re.Pattern) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise self.fail(key, f"a string matching {pattern.pattern}")
        return value

    def name(self, key: str, empty: bool = False) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or len(value) > 200 or (not value and not empty) \
                or any(ord(c) < 32 for c in value):
            raise self.fail(key, "a buffer or binding name (1-200 printable characters)")
        return value

    def strings(self, key: str) -> list[str]:
        values = self.data.get(key)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise self.fail(key, "a list of strings")
        return values

    def flag(self, key: str) -> bool:
        if not isinstance(self.data.get(key), bool):
            raise self.fail(key, "true or false")
        return self.data[key]

    def count(self, key: str) -> int:
        value = self.data.get(key)
        if type(value) is not int or not 0 <= value < 1 << 62:
            raise self.fail(key, "a non-negative integer")
        return value

    def number(self, key: str, floating: bool) -> int | float:
        value = self.data.get(key)
        if type(value) not in ((int, float) if floating else (int,)):
            raise self.fail(key, "a float" if floating else "an integer")
        return value

    def sizes(self, key: str) -> tuple[int, ...]:
        values = self.data.get(key)
        if not isinstance(values, list) or not 1 <= len(values) <= 3 or \
                not all(type(v) is int and 0 <= v < 1 << 40 for v in values):
            raise self.fail(key, "a list of 1 to 3 non-negative integers")
        return tuple(values)

    def shape(self, key: str) -> tuple[int, ...]:
        values = self.data.get(key)
        ok = isinstance(values, list) and len(values) <= 32 and \
            all(type(v) is int and 0 <= v < MAX_ELEMENTS for v in values)
        if ok:
            elements = 1
            for v in values:
                elements *= v
            ok = elements < MAX_ELEMENTS
        if not ok:
            raise self.fail(key, f"a shape (at most 32 non-negative sizes, under "
                                 f"{MAX_ELEMENTS} elements)")
        return tuple(values)

    def dtype(self, key: str) -> str:
        if self.data.get(key) not in DTYPES:
            raise self.fail(key, f"one of {', '.join(sorted(DTYPES))}")
        return self.data[key]

    def path(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise self.fail(key, "a relative file path")
        return self.path_text(value, f"{self.where} field {self._at(key)!r}")

    @staticmethod
    def path_text(value: str, what: str) -> str:
        """A file path inside the export: relative, '/'-separated, plain names only."""
        parts = value.split("/")
        if len(parts) > 4 or not all(_FILE_NAME.fullmatch(p) and p not in (".", "..")
                                     for p in parts):
            raise ExportError(f"{what}: {value!r} is not a plain relative path inside the "
                              f"export")
        return value
