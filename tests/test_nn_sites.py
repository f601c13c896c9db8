"""Ops built by gc.nn layers name their layer (`dense_3/...`) and the user's line that made the
layer, not the line of model.fit: in dumps, the HTML report, errors and numerics checks.
Weights print by their names (`dense_3/kernel`); feed errors name the user's input and the
user's batch, not `x0` and the padded batch."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import graphc as gc
from graphc import nn

HERE = os.path.relpath(__file__) if not os.path.relpath(__file__).startswith("..") \
    else __file__                  # sites name the user's file relative to the working dir


def line_of(marker: str) -> int:
    """The line of this file that carries `# <marker>`."""
    with open(__file__) as source:
        for number, line in enumerate(source, 1):
            if line.rstrip().endswith(f"# {marker}"):
                return number
    raise AssertionError(marker)


def _classifier():
    hidden = nn.Dense(5, activation="relu", name="hidden")     # LAYER:hidden
    scores = nn.Dense(3, name="scores")                        # LAYER:scores
    model = nn.Sequential([nn.Input((4,), name="pixels"), hidden, scores])
    model.compile(gc.optim.SGD(0.1),                           # COMPILE
                  nn.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"],
                  device="interpret")
    return model


X = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
Y = np.arange(10, dtype=np.int32) % 3


def _sites_by_op(text: str) -> list[tuple[str, str]]:
    """(op, site) of each equation of a dump."""
    found = []
    for line in text.splitlines():
        match = re.match(r"\s+\S.* = (\w+)\S* .*#\s*(.*)$", line)
        if match:
            found.append((match.group(1), match.group(2).strip()))
    return found


def test_train_step_ops_carry_their_layer_and_its_line():
    model = _classifier()
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0)            # FIT
    (step,) = model.compiled_steps().train_cache.values()
    text = gc.dump(step.outputs + [v for _, v in step.updates])
    for name in ("hidden/kernel", "hidden/bias", "scores/kernel", "scores/bias"):
        assert f"{name}:f32[" in text and f" {name} " in text, name
    assert "pixels:f32[4,4]" in text                                 # the input's name
    sites = _sites_by_op(text)
    hidden = f"{HERE}:{line_of('LAYER:hidden')} in hidden"
    scores = f"{HERE}:{line_of('LAYER:scores')} in scores"
    assert ("matmul", hidden) in sites and ("relu", hidden) in sites
    assert ("matmul", scores) in sites and ("add", scores) in sites
    compile_line = f"{HERE}:{line_of('COMPILE')}"
    assert ("softmax_cross_entropy", f"{compile_line} in sparse_categorical_crossentropy") \
        in sites
    assert any(site == f"{compile_line} in SGD" for _, site in sites)   # the update rule
    assert not any(f":{line_of('FIT')}" in site for _, site in sites)


def test_sites_of_nested_models_and_subclassed_layers():
    class Scaled(nn.Layer):
        def __init__(self, factor, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x, training=False):
            return x * self.factor

    inner = nn.Sequential([nn.Input((4,)), nn.Dense(2, name="inside")], name="block")
    scale = Scaled(3.0, name="triple")                           # LAYER:scaled
    inputs = nn.Input((4,))
    model = nn.Model(inputs, scale(inner(inputs)))
    x = gc.placeholder((2, 4), name="x")
    text = gc.dump(model(x))
    sites = _sites_by_op(text)
    # called as a layer, the model opens a scope too (Keras: model_1/block/inside)
    assert ("multiply", f"{HERE}:{line_of('LAYER:scaled')} in {model.name}/triple") in sites
    inside = [site for op, site in sites if op == "matmul"]
    assert len(inside) == 1 and inside[0].endswith(f" in {model.name}/block/inside"), inside


def test_kernel_dump_names_layers_and_weights(cl_device):
    model = _classifier()
    model.compile(model.optimizer, model.loss, device=cl_device)
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0)
    (step,) = model.compiled_steps().train_cache.values()
    text = step.dump()
    assert f"{HERE}:{line_of('LAYER:hidden')} in hidden" in text
    assert f"{HERE}:{line_of('LAYER:scores')} in scores" in text
    assert "hidden/kernel" in text and "scores/bias" in text


def test_report_names_layers_and_weights(cl_device, tmp_path):
    model = _classifier()
    model.compile(model.optimizer, model.loss, device=cl_device)
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0)
    (step,) = model.compiled_steps().train_cache.values()
    page = gc.report(step, path=tmp_path / "r.html").read_text()
    assert f"{HERE}:{line_of('LAYER:hidden')} in hidden" in page
    assert "hidden/kernel" in page and "scores/kernel" in page


def test_numerics_error_names_the_layer(cl_device, monkeypatch):
    model = nn.Sequential([nn.Input((4,)),
                           nn.Dense(3, kernel_initializer="ones", name="wide"),
                           nn.Activation(gc.log, name="logs")])        # LAYER:logs
    model.compile("sgd", "mse", device=cl_device)
    monkeypatch.setenv("GRAPHC_CHECK_NUMERICS", "1")
    with pytest.raises(gc.NumericsError) as caught:
        model.predict(-np.ones((4, 4), np.float32), batch_size=4)
    assert f"{HERE}:{line_of('LAYER:logs')} in logs" in str(caught.value)


def test_build_error_names_the_layer_and_its_line():
    left, right = nn.Input((4,)), nn.Input((3,))
    adder = nn.Add(name="merge")                                  # LAYER:merge
    with pytest.raises(gc.ShapeError) as caught:
        adder([left, right])
    assert f"created at {HERE}:{line_of('LAYER:merge')} in merge" in str(caught.value)


def test_feed_errors_name_the_input_and_the_users_batch():
    model = _classifier()
    with pytest.raises(gc.FeedError) as caught:
        model.fit(np.zeros((10, 5), np.float32), Y, batch_size=32, verbose=0)
    text = str(caught.value)
    assert "'pixels'" in text and "(10, 5)" in text and "(4,)" in text
    assert not re.search(r"\bx0\b|\b32\b", text), text
    with pytest.raises(gc.FeedError, match=r"'pixels'.*shape \(7, 4, 1\)"):
        model.predict(np.zeros((7, 4, 1), np.float32))


def test_weight_names_round_trip_through_the_text_format():
    model = _classifier()
    x = gc.placeholder((2, 4), name="x")
    graph = gc.Graph.from_outputs([model(x)])
    text = str(graph)
    assert "hidden/kernel:f32[4,5] var" in text
    assert str(gc.parse(text)) == text
