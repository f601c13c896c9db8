"""graphc as an ONNX backend (`onnx.backend.base.Backend`), for ONNX's own test runner.

    import graphc.onnx.backend as backend
    rep = backend.prepare(model, "CPU")          # refuses unsupported ops here
    outputs = rep.run([x])                       # compiled for x's shape on first run

`prepare(model, device, mode="interpret")` runs the numpy reference interpreter instead of
the OpenCL device (a fast check of the conversion itself). The `device` string is ONNX's
("CPU"); which OpenCL device runs the model is graphc's choice (GRAPHC_DEVICE).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from graphc.onnx.errors import OnnxImportError
from graphc.onnx.model import OnnxModel


class GraphcRep(BackendRep):
    """A prepared model: `run(inputs)` takes a list (graph-input order) or a dict."""

    def __init__(self, model: OnnxModel, mode: str = "device"):
        self.model = model
        self.mode = mode

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            feeds = dict(zip(self.model.input_names, arrays))
        outputs = self.model.run(feeds, mode=self.mode)
        names = [_field(n, i) for i, n in enumerate(self.model.output_names)]
        return namedtuple("Outputs", names, rename=True)(*outputs)


def _field(name: str, index: int) -> str:
    return name if name.isidentifier() and not name.startswith("_") else f"output_{index}"


class GraphcBackend(Backend):
    """ONNX's backend interface over graphc.onnx.load."""

    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:
        try:
            OnnxModel(model, device=kwargs.get("graphc_device"))
        except OnnxImportError:
            return False
        return True

    @classmethod
    def prepare(cls, model, device: str = "CPU", mode: str = "device", **kwargs) -> GraphcRep:
        super().prepare(model, device, **kwargs)
        return GraphcRep(OnnxModel(model, device=kwargs.get("graphc_device")), mode)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        """Run one NodeProto on `inputs` (a list of arrays in the node's input order)."""
        from onnx import helper
        arrays = [np.asarray(a) for a in inputs]
        in_info = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype),
                                                 a.shape)
                   for name, a in zip(node.input, arrays)]
        out_info = [helper.make_tensor_value_info(name, 0, None) for name in node.output]
        graph = helper.make_graph([node], "node", in_info, out_info)
        opset = kwargs.get("opset_version")
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]) \
            if opset else helper.make_model(graph)
        mode = kwargs.get("mode", "device")       # untyped outputs: no onnx.checker here
        return GraphcRep(OnnxModel(model, device=kwargs.get("graphc_device")), mode).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """graphc runs on OpenCL devices, the CPU among them; ONNX's CUDA is not one."""
        return Device(device).type == DeviceType.CPU


prepare = GraphcBackend.prepare
run_model = GraphcBackend.run_model
run_node = GraphcBackend.run_node
supports_device = GraphcBackend.supports_device
is_compatible = GraphcBackend.is_compatible
