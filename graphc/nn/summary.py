"""The text table of Model.summary()."""
from __future__ import annotations


def model_summary(model) -> str:
    """A table of the model's layers (name and type), output shapes and parameter counts."""
    if not model.built:
        raise RuntimeError(f"model {model.name} is not built yet: call build(input_shape),"
                           f" or fit/predict on data, before summary()")
    rows = [(f"{t.name} (InputLayer)", str(t.shape), "0") for t in model._summary_inputs()]
    shapes = _output_shapes(model)
    rows += [(f"{layer.name} ({type(layer).__name__})", str(shapes[id(layer)]),
              f"{layer.count_params():,}") for layer in model.layers]
    return table(f'Model: "{model.name}"', rows, _param_totals(model))


def _output_shapes(model) -> dict[int, object]:
    shapes: dict[int, object] = {}
    for node in model._nodes:
        out = [t.shape for t in node.outputs]
        shapes.setdefault(id(node.layer), out if node.list_output else out[0])
    return shapes


def _param_totals(model) -> list[str]:
    trainable = int(sum(v.size for v in model.trainable_weights))
    total = int(sum(v.size for v in model.weights))
    size = sum(v.size * v.dtype.itemsize for v in model.weights)
    return [f"Total params: {total:,} ({size / 1024:.2f} KB)",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}"]


def table(title: str, rows: list[tuple[str, str, str]], totals: list[str]) -> str:
    widths = [max(len(r[i]) for r in rows + [("Layer (type)", "Output Shape", "Param #")]) + 3
              for i in range(3)]
    width = sum(widths)
    header = ("Layer (type)", "Output Shape", "Param #")

    def line(row) -> str:
        return " " + "".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()

    return "\n".join([title, "_" * width, line(header), "=" * width]
                     + [line(r) for r in rows] + ["=" * width] + totals + ["_" * width])
