"""OnnxModel: an imported ONNX model, specialized per input shape and compiled on demand."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from graphc import dtypes
from graphc.builder import constant, placeholder, variable
from graphc.errors import FeedError, GraphcError
from graphc.ir import Tensor
from graphc.onnx import convert, types
from graphc.onnx.errors import NeedsValue, OnnxImportError, UnsupportedError


@dataclass(frozen=True)
class InputSpec:
    """A graph input: its name, ONNX element type and dims (ints, or names / None when
    symbolic)."""

    name: str
    elem_type: int
    dims: tuple | None


@dataclass
class Specialization:
    """The graphc graph of the model for one set of input shapes (and bound values)."""

    placeholders: dict[str, Tensor]          # ONNX input name -> placeholder
    outputs: list[Tensor]
    function: object = None                  # gc.Function, compiled on first device run
    bound: dict = field(default_factory=dict)


class OnnxModel:
    """See graphc.onnx.load."""

    def __init__(self, model_or_path, input_shapes=None, device=None):
        self.proto, self.source = _read(model_or_path)
        self.opset = convert.model_opset(self.proto)
        convert.check_model(self.proto, self.opset)
        self.device = device
        graph = self.proto.graph
        init_names = {t.name for t in graph.initializer}
        self.input_specs = [_input_spec(v) for v in graph.input if v.name not in init_names]
        self.output_specs = [(v.name, v.type.tensor_type.elem_type) for v in graph.output]
        self.variables: dict[str, Tensor] = {}
        self.constants: dict[str, Tensor] = {}
        for init in graph.initializer:
            self._add_initializer(init)
        self.by_value: set[str] = set()          # inputs whose values fix shapes
        self._cache: dict = {}
        self._current: Specialization | None = None
        if input_shapes is not None or all(_static(s.dims) for s in self.input_specs):
            shapes = self._shapes_from(input_shapes or {})
            try:
                self._current = self.specialize(shapes)
            except NeedsValue as need:
                self.by_value.add(need.name)

    # ---- building ----

    def _add_initializer(self, init) -> None:
        from onnx import numpy_helper
        try:
            array = numpy_helper.to_array(init)
            dtype = types.compute_dtype(init.data_type)
        except UnsupportedError as exc:
            raise UnsupportedError(f"initializer {init.name!r}: {exc}") from None
        if dtypes.is_float(dtype):
            self.variables[init.name] = variable(array.astype(dtype), name=init.name)
        else:
            self.constants[init.name] = constant(array.astype(dtype), name=init.name)

    def _shapes_from(self, given: dict) -> dict[str, tuple]:
        unknown = set(given) - {s.name for s in self.input_specs}
        if unknown:
            raise FeedError(f"input_shapes names {sorted(unknown)}, but the model's inputs are"
                            f" {[s.name for s in self.input_specs]}")
        shapes = {}
        for spec in self.input_specs:
            if spec.name in given:
                shapes[spec.name] = tuple(int(d) for d in given[spec.name])
            elif _static(spec.dims):
                shapes[spec.name] = tuple(spec.dims)
            else:
                raise FeedError(f"input {spec.name!r} has symbolic dims {spec.dims}: give its "
                                f"shape in input_shapes or call the model with arrays")
        _check_shapes(self.input_specs, shapes)
        return shapes

    def specialize(self, shapes: dict[str, tuple], values: dict | None = None) -> Specialization:
        """The graph for these input shapes (and bound input values), built once and cached."""
        values = values or {}
        key = (tuple(sorted(shapes.items())),
               tuple(sorted((k, v.dtype.str, v.shape, v.tobytes()) for k, v in values.items())))
        if key in self._cache:
            return self._cache[key]
        env: dict[str, Tensor] = dict(self.variables)
        env.update(self.constants)
        holders = {}
        for spec in self.input_specs:
            dtype = types.compute_dtype(spec.elem_type)
            if spec.name in values:
                env[spec.name] = constant(np.asarray(values[spec.name]).astype(dtype))
            else:
                holders[spec.name] = env[spec.name] = placeholder(shapes[spec.name], dtype,
                                                                  name=spec.name)
        convert.convert_nodes(self.proto, self.opset, env, self.source, self.variables)
        missing = [name for name, _ in self.output_specs if name not in env]
        if missing:
            raise OnnxImportError(f"graph outputs {missing} are produced by no node")
        spec = Specialization(holders, [env[name] for name, _ in self.output_specs],
                              bound=dict(values))
        self._cache[key] = spec
        return spec

    # ---- the current specialization (for building on top of the model) ----

    def _active(self) -> Specialization:
        if self._current is None:
            wanted = f" and the values of {sorted(self.by_value)}" if self.by_value else ""
            raise GraphcError(f"the model {self.source!r} is not specialized yet: pass "
                              f"input_shapes to load{wanted}, or call it with arrays once")
        return self._current

    @property
    def inputs(self) -> list[Tensor]:
        """The placeholders of the current specialization, in the model's input order."""
        return list(self._active().placeholders.values())

    @property
    def outputs(self) -> list[Tensor]:
        """The output tensors of the current specialization."""
        return list(self._active().outputs)

    @property
    def specializations(self) -> list[Specialization]:
        """Every specialization built so far (one per set of shapes and bound values)."""
        return list(self._cache.values())

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.input_specs]

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self.output_specs]

    # ---- running ----

    def __call__(self, *arrays, **named) -> list[np.ndarray]:
        """Run on the device: one array per input, in order or by name; a list of outputs."""
        return self.run(self._feeds(arrays, named))

    def run(self, feeds: dict, mode: str = "device") -> list[np.ndarray]:
        """Run with {input name: array}; mode "device" (compiled) or "interpret" (numpy)."""
        arrays = {spec.name: _as_input(spec, feeds[spec.name]) for spec in self.input_specs}
        spec = self._specialize_for(arrays)
        self._current = spec
        live = {name: arrays[name] for name in spec.placeholders}
        results = self._evaluate(spec, live, mode)
        return [_as_output(r, elem) for r, (_, elem) in zip(results, self.output_specs)]

    def _feeds(self, arrays, named) -> dict:
        names = self.input_names
        if len(arrays) > len(names):
            raise FeedError(f"the model takes {len(names)} inputs ({', '.join(names)}), got "
                            f"{len(arrays)}")
        feeds = dict(zip(names, arrays))
        feeds.update(named)
        missing = [n for n in names if n not in feeds]
        if missing:
            raise FeedError(f"no array for the model's inputs {missing}")
        return feeds

    def _specialize_for(self, arrays: dict) -> Specialization:
        shapes = {name: a.shape for name, a in arrays.items()}
        _check_shapes(self.input_specs, shapes)
        while True:
            values = {name: arrays[name] for name in self.by_value}
            try:
                return self.specialize(shapes, values)
            except NeedsValue as need:
                if need.name in self.by_value:
                    raise
                self.by_value.add(need.name)

    def _evaluate(self, spec: Specialization, feeds: dict, mode: str) -> list[np.ndarray]:
        computed = _unique([o for o in spec.outputs if o.role == "node"])
        by_tensor = {spec.placeholders[n]: v for n, v in feeds.items()}
        if computed and mode == "interpret":
            from graphc.interp import interpret
            values = interpret(computed, by_tensor)
        elif computed:
            values = self._function(spec, computed)(*[by_tensor[p] for p in
                                                      spec.placeholders.values()])
        else:
            values = []
        known = dict(zip(computed, values))
        return [_value_of(o, known, by_tensor) for o in spec.outputs]

    def _function(self, spec: Specialization, computed: list[Tensor]):
        if spec.function is None:
            from graphc.function import function
            spec.function = function(list(spec.placeholders.values()), computed,
                                     device=self.device, name=self.source)
        return spec.function


def _unique(tensors: list[Tensor]) -> list[Tensor]:
    return list({id(t): t for t in tensors}.values())


def _value_of(out: Tensor, known: dict, feeds: dict) -> np.ndarray:
    if out in known:
        return np.asarray(known[out])
    if out.role == "constant":
        return np.asarray(out.data)
    if out.role == "variable":
        return out.get_value()
    return np.asarray(feeds[out])


def _read(model_or_path):
    try:
        import onnx
    except ImportError:
        raise OnnxImportError("graphc.onnx needs the onnx package: pip install "
                              "'graphc[onnx]'") from None
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path, model_or_path.graph.name or "model"
    if isinstance(model_or_path, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model_or_path)), "model"
    path = os.fspath(model_or_path)
    try:
        return onnx.load(path), os.path.basename(path)
    except OSError as exc:
        raise OnnxImportError(f"cannot read the ONNX model {path!r}: {exc}") from None
    except Exception as exc:    # protobuf's DecodeError and friends
        raise OnnxImportError(f"{path!r} is not an ONNX model: {exc}") from None


def _input_spec(value_info) -> InputSpec:
    t = value_info.type
    if not t.HasField("tensor_type"):
        raise UnsupportedError(f"input {value_info.name!r}: only tensor inputs are supported "
                               f"(not sequences, maps or optionals)")
    tt = t.tensor_type
    try:
        types.compute_dtype(tt.elem_type)
    except UnsupportedError as exc:
        raise UnsupportedError(f"input {value_info.name!r}: {exc}") from None
    dims = None
    if tt.HasField("shape"):
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                     for d in tt.shape.dim)
    return InputSpec(value_info.name, tt.elem_type, dims)


def _static(dims) -> bool:
    return dims is not None and all(isinstance(d, int) for d in dims)


def _check_shapes(specs: list[InputSpec], shapes: dict) -> None:
    """Static dims must match; a symbolic dim name must take one value across inputs."""
    bound: dict[str, tuple[int, str]] = {}
    for spec in specs:
        shape = shapes[spec.name]
        if spec.dims is None:
            continue
        if len(shape) != len(spec.dims):
            raise FeedError(f"input {spec.name!r} is {len(spec.dims)}-d {spec.dims}, got shape"
                            f" {shape}")
        for axis, (dim, size) in enumerate(zip(spec.dims, shape)):
            if isinstance(dim, int) and dim != size:
                raise FeedError(f"input {spec.name!r} has size {dim} on axis {axis}, got shape"
                                f" {shape}")
            if isinstance(dim, str):
                first = bound.setdefault(dim, (size, spec.name))
                if first[0] != size:
                    raise FeedError(f"dim {dim!r} is {first[0]} in input {first[1]!r} but "
                                    f"{size} in input {spec.name!r}")


def _as_input(spec: InputSpec, value) -> np.ndarray:
    array = np.asarray(value)
    wanted = types.numpy_dtype(spec.elem_type)
    if array.dtype != wanted and not np.can_cast(array.dtype, wanted, casting="same_kind"):
        raise FeedError(f"input {spec.name!r} is {wanted}, got {array.dtype}")
    array = array.astype(wanted)
    if types.is_storage_only(spec.elem_type):          # exact in the compute type
        array = array.astype(np.float32)
    return np.array(array, dtype=types.compute_dtype(spec.elem_type), order="C")


def _as_output(array: np.ndarray, elem_type: int) -> np.ndarray:
    """A result in the model's declared type (storage-only floats rounded to nearest even)."""
    array = np.asarray(array)
    if not elem_type or elem_type not in types.COMPUTE:
        return array
    if elem_type in types.STORAGE_INTS:              # out of range is undefined in ONNX;
        low, high = types.integer_range(elem_type)     # its reference gives 0
        array = np.where((array < low) | (array > high), 0, array)
    elif types.is_storage_only(elem_type):
        array = array.astype(np.float32)
    return array.astype(types.numpy_dtype(elem_type))
