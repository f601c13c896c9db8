"""graphc.runtime.load: run an export directory with the runtime alone (no compiler).

    fn = graphc.runtime.load("mlp_export")          # device=None: $GRAPHC_DEVICE or the best
    (probabilities,) = fn(x)                        # numpy in, numpy out
    fn.inputs, fn.outputs                           # TensorSpec(name, shape, dtype)

Every file is checked before use (runtime/export_format.py, runtime/export_files.py); a bad
directory is an ExportError naming the file. No Python from the directory is run: the plan
is data, the variables are .npy arrays read without pickle. Its OpenCL source is compiled
and its kernels run on the device, as the compiler's own output would: checksums catch
damage, not malice, so load exports you trust.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .device import Device, select_device
from .errors import ExportError, FeedError
from .executable import Executable
from .export_files import (MAX_JSON_BYTES, parse_json, parse_npy, read_checked, read_json,
                           verify_checksums)
from .export_format import (BACKEND, MANIFEST, STEP_BINDING, Manifest, TensorSpec,
                            manifest_from_data, plan_from_data)
from .launch import Plan, plan_problems
from .program_cache import adopt_export_entry
from .resident import ResidentArray


def load(path, device: Device | int | str | None = None) -> LoadedFunction:
    """The export at `path`, ready to run on `device` (a Device, an index or a name
    substring; None: $GRAPHC_DEVICE, else the best device)."""
    root = Path(path)
    manifest = read_manifest(root)
    verify_checksums(root, manifest.files)
    device = select_device(device)
    backend = getattr(device, "backend", BACKEND)
    plan = read_plan(root, manifest, backend)
    check_signature(root, manifest, plan)
    arrays = {v.binding: parse_npy(root / v.file, _read(root, manifest, v.file), v.shape,
                                   v.dtype) for v in manifest.variables}
    adopted = _adopt_binary(root, manifest, plan, device) if backend == BACKEND else None
    loaded = LoadedFunction(root, manifest, plan, arrays, device)
    del adopted
    return loaded


def _adopt_binary(root: Path, manifest: Manifest, plan: Plan, device: Device) -> Any:
    """The program of the export's binary built for this device, driver and source, if it
    has one (else the source is built, as a compiled function's is)."""
    for relative in manifest.backends[BACKEND]["binaries"]:
        entry = _read(root, manifest, relative)
        program = adopt_export_entry(device, plan.source, plan.build_options, entry)
        if program is not None:
            return program
    return None


def read_manifest(root: Path) -> Manifest:
    """The checked manifest of the export at `root`."""
    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        raise ExportError(f"{root}: no export there ({what}){_left_aside_hint(root)}")
    path = root / MANIFEST
    if not path.is_file():
        raise ExportError(f"{root}: has no {MANIFEST}: not a graphc export")
    return manifest_from_data(read_json(path), str(path))


def read_plan(root: Path, manifest: Manifest, name: str = BACKEND) -> Plan:
    """The plan for backend `name` (the device's: "opencl" or "vulkan"), checked for
    consistency."""
    backend = manifest.backends.get(name)
    if backend is None or "plan" not in backend or "source" not in backend:
        raise ExportError(f"{root / MANIFEST}: no complete plan for backend {name!r} "
                          f"(backends: {', '.join(sorted(manifest.backends)) or 'none'}): "
                          f"export it from a function compiled for a {name} device")
    plan_file = backend["plan"]
    data = parse_json(root / plan_file, _read(root, manifest, plan_file, MAX_JSON_BYTES))
    source = _read_text(root, manifest, backend["source"])
    plan = plan_from_data(data, source, str(root / plan_file))
    problems = plan_problems(plan)
    if problems:
        raise ExportError(f"{root / plan_file}: the plan is inconsistent:\n  "
                          + "\n  ".join(problems))
    return plan


def _read(root: Path, manifest: Manifest, relative: str, limit: int = 1 << 40) -> bytes:
    """A file the manifest refers to: listed among its files, read and verified once."""
    if relative not in manifest.files:
        raise ExportError(f"{root / MANIFEST}: refers to {relative!r}, which is not among "
                          f"its files (no checksum)")
    return read_checked(root, relative, manifest.files[relative], limit)


def _read_text(root: Path, manifest: Manifest, relative: str) -> str:
    """A UTF-8 text file the manifest refers to (a kernel source)."""
    data = _read(root, manifest, relative, MAX_JSON_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ExportError(f"{root / relative}: not UTF-8 text ({err})") from None


def check_signature(root: Path, manifest: Manifest, plan: Plan) -> None:
    """The manifest's inputs, outputs, variables and step agree with the plan's bindings."""
    where = root / MANIFEST
    _unique(where, "input", [s.name for s in manifest.inputs])
    _unique(where, "output", [s.name for s in manifest.outputs])
    expected_inputs = list(manifest.input_bindings) + \
        ([STEP_BINDING] if manifest.step is not None else [])
    _same_bindings(where, "inputs", expected_inputs, [b.name for b in plan.inputs])
    _same_bindings(where, "outputs", list(manifest.output_bindings),
                   [b.name for b in plan.outputs])
    _same_bindings(where, "variables", [v.binding for v in manifest.variables],
                   [b.name for b in plan.variables])
    by_name = {b.name: b for b in plan.inputs + plan.outputs + plan.variables}
    pairs = list(zip(manifest.input_bindings, manifest.inputs)) + \
        list(zip(manifest.output_bindings, manifest.outputs)) + \
        [(v.binding, v) for v in manifest.variables]
    for binding, spec in pairs:
        planned = by_name[binding]
        if tuple(planned.shape) != spec.shape or planned.dtype != spec.dtype:
            raise ExportError(f"{where}: {binding!r} is {spec.dtype}{list(spec.shape)} there, "
                              f"{planned.dtype}{list(planned.shape)} in the plan")
    if manifest.batch_size is not None:
        for spec in manifest.inputs + manifest.outputs:
            if not spec.shape or spec.shape[0] != manifest.batch_size:
                raise ExportError(f"{where}: {spec.name!r} has shape {list(spec.shape)}, not "
                                  f"a batch of {manifest.batch_size}")


def _unique(where: Path, kind: str, names: list[str]) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ExportError(f"{where}: {kind} names {twice} are used more than once")


def _same_bindings(where: Path, kind: str, listed: list[str], planned: list[str]) -> None:
    if sorted(listed) != sorted(planned) or len(set(listed)) != len(listed):
        raise ExportError(f"{where}: its {kind} {listed} are not the plan's {planned}")


def _left_aside_hint(root: Path) -> str:
    """Where an export killed while replacing `root` left the previous one, if anywhere."""
    aside = sorted(root.parent.glob(f".{root.name}.old-*/export")) if root.parent.is_dir() \
        else []
    return (f" (an export killed while replacing it left the previous one in {aside[0]})"
            if aside else "")


class LoadedFunction:
    """An exported function on a device: call it with one numpy array per input."""

    def __init__(self, root: Path, manifest: Manifest, plan: Plan,
                 arrays: dict[str, np.ndarray], device: Device) -> None:
        self.path, self.name, self.device = root, manifest.name, device
        self.inputs: tuple[TensorSpec, ...] = manifest.inputs
        self.outputs: tuple[TensorSpec, ...] = manifest.outputs
        self.batch_size = manifest.batch_size
        self.graphc_version = manifest.graphc_version
        self.single_output = manifest.single_output
        self.calls = manifest.step or 0
        self._step = manifest.step is not None
        self._feed_order = [b.name for b in plan.inputs]
        self._input_index = {b: i for i, b in enumerate(manifest.input_bindings)}
        out_index = {b.name: i for i, b in enumerate(plan.outputs)}
        self._output_order = [out_index[b] for b in manifest.output_bindings]
        with device.lock:
            self.residents = {name: ResidentArray(device, array, name)
                              for name, array in arrays.items()}
        self.executable = Executable(device, plan, self.residents)

    def __call__(self, *feeds: Any) -> np.ndarray | list[np.ndarray]:
        """Run once: the outputs as a list (one array when the function had one output)."""
        results = self.run(feeds)
        return results[0] if self.single_output else results

    def run(self, feeds: Sequence[Any]) -> list[np.ndarray]:
        """Run once on one array per input; the outputs, always as a list. Thread-safe."""
        arrays = self._checked(feeds)
        with self.device.lock:
            step = [np.array([self.calls], np.uint64)]
            ordered = [step[0] if name == STEP_BINDING else arrays[self._input_index[name]]
                       for name in self._feed_order]
            results = self.executable.run(ordered)
            self.calls += 1
        return [results[i] for i in self._output_order]

    def _checked(self, feeds: Sequence[Any]) -> list[np.ndarray]:
        if len(feeds) != len(self.inputs):
            names = ", ".join(s.name for s in self.inputs)
            raise FeedError(f"export {self.name!r} takes {len(self.inputs)} inputs ({names}), "
                            f"got {len(feeds)}")
        return [check_feed(spec, value, self.name) for spec, value in zip(self.inputs, feeds)]

    def variable(self, binding: str) -> np.ndarray:
        """The current value of a variable or constant of the plan (`var:W`, ...)."""
        return self.residents[binding].read()

    def __repr__(self) -> str:
        specs = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in self.inputs)
        return f"LoadedFunction({self.name!r}, ({specs}), device={self.device.describe()})"


def check_feed(spec: TensorSpec, value: Any, export: str) -> np.ndarray:
    """`value` as a C-ordered array of the input's dtype, or a FeedError naming the input."""
    try:
        array = np.asarray(value)
    except Exception as exc:        # ragged lists and the like
        raise FeedError(f"input {spec.name!r} of export {export!r}: cannot make an array of "
                        f"the fed value ({exc})") from None
    if array.shape != spec.shape:
        raise FeedError(f"input {spec.name!r} of export {export!r} expects shape "
                        f"{spec.shape}, got {array.shape}")
    wanted = np.dtype(spec.dtype)
    if array.dtype != wanted and not np.can_cast(array.dtype, wanted, casting="same_kind"):
        raise FeedError(f"input {spec.name!r} of export {export!r} expects dtype "
                        f"{spec.dtype}, got {array.dtype.name}")
    return np.asarray(array, dtype=wanted, order="C")      # 0-d stays 0-d

