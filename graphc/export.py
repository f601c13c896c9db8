"""fn.export(path) and model.export(path, batch_size=N): a compiled function as a directory
that graphc.runtime.load runs without the compiler.

The directory holds the function's Plan (the plain data between compiler and runtime) for
its backend, the current values of its variables and constants as .npy, and a manifest with
the signature and a sha256 of every file (format: runtime/export_format.py). It is written
atomically (runtime/export_files.py).
"""
from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from graphc.errors import ExportError
from graphc.runtime.export_files import write_export
from graphc.runtime.export_format import (STEP_BINDING, TensorSpec, VariableEntry,
                                          backend_paths, manifest_data, plan_to_data)
from graphc.runtime.program_cache import export_entry


def export_function(fn, path, *, name: str | None = None, output_names=None,
                    batch_size: int | None = None, single_output: bool | None = None) -> Path:
    """Write compiled function `fn` (a gc.Function) to the folder `path`; returns the path.

    Inputs are named as their placeholders; outputs `output_0`, ... unless `output_names`
    are given. With `batch_size`, every input's and output's first axis is a batch of that
    size (graphc serve splits and pads requests to it)."""
    plan = fn.compiled.plan
    if plan.host_calls:
        calls = ", ".join(c.name for c in plan.host_calls[:3])
        raise ExportError(f"export of {fn.name!r}: it runs collectives on the host ({calls}; "
                          f"gc.distributed), which an export, run by one process without "
                          f"MPI, cannot: export a function without them (a model's predict "
                          f"step has none)")
    inputs = _input_pairs(fn, plan)
    names = list(output_names) if output_names is not None else \
        [f"output_{i}" for i in range(len(plan.outputs))]
    if len(names) != len(plan.outputs):
        raise ExportError(f"export of {fn.name!r}: {len(names)} output names for "
                          f"{len(plan.outputs)} outputs")
    outputs = [(TensorSpec(n, tuple(b.shape), b.dtype), b.name)
               for n, b in zip(names, plan.outputs)]
    _check_names(fn.name, "input", [s.name for s, _ in inputs])
    _check_names(fn.name, "output", names)
    _check_batch(fn.name, batch_size, [s for s, _ in inputs + outputs])
    variables = [VariableEntry(b.name, f"variables/{i:04d}.npy", tuple(b.shape), b.dtype)
                 for i, b in enumerate(plan.variables)]
    with fn.device.lock:        # values and the call counter of one moment
        values = [fn.executable.variables[v.binding].read() for v in variables]
        has_step = any(b.name == STEP_BINDING for b in plan.inputs)
        step = fn.calls if has_step else None
    backend = getattr(fn.device, "backend", "opencl")
    plan_file, source_file, binary_folder = backend_paths(backend)
    binaries = _binaries(fn, binary_folder) if backend == "opencl" else []
    manifest = manifest_data(name or fn.name, graphc_version(), inputs, outputs,
                             fn.single if single_output is None else single_output,
                             batch_size, step, variables, _built_on(fn.device),
                             [path for path, _ in binaries], backend)
    files = [(plan_file, json.dumps(plan_to_data(plan), indent=1).encode()),
             (source_file, plan.source.encode())]
    files += [(v.file, value) for v, value in zip(variables, values)] + binaries
    write_export(Path(path), files, manifest)
    return Path(path)


def export_model(model, path, batch_size: int = 32) -> Path:
    """Write the inference step of a Keras-style model for batches of `batch_size`."""
    if type(batch_size) is not int or batch_size < 1:
        raise ExportError(f"model {model.name} export: batch_size must be a positive int, "
                          f"got {batch_size!r}")
    from graphc.function import Function
    from graphc.nn.checks import output_names
    step = model.compiled_steps(allow_uncompiled=True).predict(batch_size)
    if not isinstance(step, Function):
        raise ExportError(f"model {model.name} export: the model runs on the reference "
                          f"interpreter (no OpenCL device); exporting needs a compiled "
                          f"function: compile(..., device=...) with an OpenCL device")
    return export_function(step, path, name=model.name,
                           output_names=_distinct(output_names(model)),
                           batch_size=batch_size, single_output=False)


def graphc_version() -> str:
    """The installed graphc's version."""
    try:
        return version("graphc")
    except PackageNotFoundError:
        return "unknown"


def _input_pairs(fn, plan) -> list[tuple[TensorSpec, str]]:
    """(spec, plan binding) per function input: the plan lists them first, in order."""
    bindings = plan.inputs[:len(fn.inputs)]
    extra = [b.name for b in plan.inputs[len(fn.inputs):] if b.name != STEP_BINDING]
    if extra:
        raise ExportError(f"export of {fn.name!r}: the plan has inputs {extra} that are not "
                          f"the function's")
    return [(TensorSpec(p.name, tuple(p.shape), p.dtype.name), b.name)
            for p, b in zip(fn.inputs, bindings)]


def _check_names(function: str, kind: str, names: list[str]) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ExportError(f"export of {function!r}: {kind} names {twice} are used more than "
                          f"once; give each {kind} its own name")


def _check_batch(function: str, batch: int | None, specs: list[TensorSpec]) -> None:
    if batch is None:
        return
    for spec in specs:
        if not spec.shape or spec.shape[0] != batch:
            raise ExportError(f"export of {function!r} with batch_size={batch}: {spec.name!r} "
                              f"has shape {spec.shape}, whose first axis is not the batch")


def _distinct(names: list[str]) -> list[str]:
    """Output names made unique (`dense`, `dense_1`) where one layer gives several."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if not count else f"{name}_{count}")
    return result


def _binaries(fn, folder: str) -> list[tuple[str, bytes]]:
    """(path, cache entry) of the function's built program, where the driver keeps no
    binaries of its own (graphc.runtime.program_cache.export_entry)."""
    program = fn.executable.program
    if program is None:
        return []
    plan = fn.compiled.plan
    entry = export_entry(fn.device, plan.source, plan.build_options, program)
    if entry is None:
        return []
    digest = hashlib.sha256(entry).hexdigest()[:16]
    return [(f"{folder}/{digest}.bin", entry)]


def _built_on(device) -> dict:
    return {"device": device.name, "platform": device.platform_name,
            "platform_version": device.platform_version, "driver": device.driver_version,
            "type": device.type}
