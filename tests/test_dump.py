"""gc.dump: text at three stages (golden files), DOT with kernel clusters, SVG through Graphviz.
The golden files' training function is right below the imports (its lines are sites in them),
compiled for a fixed CPU description (no OpenCL), so kernel names and launch sizes do not
depend on the machine. Regenerate with GRAPHC_UPDATE_GOLDEN=1 and review the diff."""
import os
import re
import shutil
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.compiler import compile_graph
from graphc.inspection.anatomy import anatomy, buffer_labels, user_graph
from graphc.inspection.dump import dump
from graphc.inspection.hazards import plan_hazards
from graphc.inspection.printer import format_graph
from graphc.inspection.text import format_kernels
from graphc.runtime.device import Device


def mlp_training_step():
    x = gc.placeholder((4, 3), gc.float32, name="x")
    y = gc.placeholder((4,), gc.int32, name="y")
    W1 = gc.variable(np.zeros((3, 5), np.float32), name="W1")
    b1 = gc.variable(np.zeros(5, np.float32), name="b1")
    W2 = gc.variable(np.zeros((5, 2), np.float32), name="W2")
    logits = gc.relu(x @ W1 + b1) @ W2
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    params = [W1, b1, W2]
    grads = gc.grad(loss, params)
    updates = [(p, p - 0.1 * g) for p, g in zip(params, grads)]
    return [x, y], [loss], updates


GOLDEN = Path(__file__).parent / "golden"
REPO_ROOT = Path(__file__).resolve().parent.parent
STAGES = ("graph", "optimized", "kernels")


def golden_device() -> Device:
    """A fixed 4-core CPU description: codegen sees the same device on every machine."""
    return Device(index=0, name="golden-cpu", vendor="graphc", platform_name="golden",
                  platform_version="OpenCL 3.0 golden", type="cpu", unified_memory=True,
                  compute_units=4, global_mem_size=2**32, max_mem_alloc_size=2**30,
                  local_mem_size=2**16, max_work_group_size=1024,
                  max_work_item_sizes=(1024, 1024, 1024), preferred_float_vector_width=8,
                  fp16=False, fp64=True, opencl_c_version=(1, 2), driver_version="golden",
                  extensions=frozenset(), cl_device=None, cl_platform=None)


def compiled_for_golden():
    """A Function-like record of the training step compiled for golden_device()."""
    inputs, outputs, updates = mlp_training_step()
    device = golden_device()
    compiled = compile_graph(inputs, outputs, updates, device)
    return types.SimpleNamespace(name="train_step", inputs=inputs, outputs=outputs,
                                 updates=updates, compiled=compiled, device=device)


@pytest.fixture
def at_repo_root(monkeypatch):
    """Sites are paths relative to the working directory: make them `tests/...`."""
    monkeypatch.chdir(REPO_ROOT)


@pytest.fixture
def golden_fn(at_repo_root):
    return compiled_for_golden()


def without_digests(text: str) -> str:
    """Kernel names end in a digest of their source (`E_4_2_48a3bc`), which the codegen
    golden files track; here `E_4_2_######` keeps the dump's layout in focus."""
    return re.sub(r"\b([A-Z]+(?:_\d+)+)_[0-9a-f]{6}\b", r"\1_######", text)


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name>.txt, or rewrite it when GRAPHC_UPDATE_GOLDEN=1."""
    text = without_digests(text)
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("GRAPHC_UPDATE_GOLDEN") == "1":
        path.write_text(text + "\n")
    assert path.exists(), f"{path} is missing: run the tests with GRAPHC_UPDATE_GOLDEN=1"
    assert text + "\n" == path.read_text(), f"{name}: dump differs from {path}"


# ---- text ----

@pytest.mark.parametrize("stage", STAGES)
def test_training_step_dump_matches_golden_text(stage, golden_fn):
    check_golden(f"dump_mlp_{stage}", dump(golden_fn, stage=stage))


def test_graph_stage_is_what_the_user_built(golden_fn):
    text = dump(golden_fn, stage="graph")
    assert text == format_graph(user_graph(golden_fn))
    assert text.startswith("graph train_step(x:f32[4,3], y:i32[4], W1:f32[3,5] var,")
    assert re.search(r"= relu \w+ +# tests/test_dump\.py:\d+\n", text)


def test_optimized_stage_is_the_compiled_graph(golden_fn):
    assert dump(golden_fn, stage="optimized") == str(golden_fn.compiled.graph)


def test_kernel_view_shows_every_kernel_with_equations_and_sites(golden_fn):
    text = dump(golden_fn, stage="kernels")
    compiled = golden_fn.compiled
    assert text.startswith(f"function train_step on golden-cpu: {len(compiled.kernels)} kernels")
    for i, kernel in enumerate(compiled.kernels):
        assert re.search(rf"^kernel #{i} {kernel.name}  global=\S+ local=\S+  flops=\d+", text,
                         re.M)
    assert "fuses " not in text, "every kernel's equations should be found"
    assert re.search(r"^  \w+:f32\[4,5\] = relu \w+ +# tests/test_dump\.py:\d+$", text, re.M)
    assert re.search(r"^  var:W1 +variable +60 B  W1, \w+$", text, re.M)
    assert re.search(r"^planned peak memory: [\d.]+ KiB \(scratch [\d.]+ KiB\)$", text, re.M)


def test_kernel_view_has_no_object_ids(golden_fn):
    text = dump(golden_fn, stage="kernels", source=True)
    assert not re.search(r"0x[0-9a-f]{6,}|:\d{8,}", text)


def test_every_stored_value_is_matched_to_the_kernel_that_writes_it(golden_fn):
    compiled = golden_fn.compiled
    views = anatomy(compiled)
    written = [t for v in views for t in v.writes.values()]
    assert sorted(map(id, written)) == sorted(map(id, compiled.memory.buffer_of))
    for view in views:
        assert view.writes and set(view.kernel.ops) <= set(view.derived_ops)


def test_plan_hazards_flag_a_kernel_that_runs_before_its_input_is_written(golden_fn):
    compiled = golden_fn.compiled
    assert plan_hazards(compiled) == []
    order = [1, 0] + list(range(2, len(compiled.kernels)))
    swapped = types.SimpleNamespace(
        kernels=[compiled.kernels[i] for i in order], memory=compiled.memory,
        graph=compiled.graph, leaves=compiled.leaves,
        plan=types.SimpleNamespace(launches=[compiled.plan.launches[i] for i in order],
                                   buffers=compiled.plan.buffers, inputs=compiled.plan.inputs))
    (hazard,) = plan_hazards(swapped)
    assert re.fullmatch(rf"kernel #0 {compiled.kernels[1].name} reads d before kernel #1 "
                        r"writes it \(s1\)", hazard), hazard
    assert f"HAZARD: {hazard}" in dump(swapped, stage="kernels")


def test_buffer_names_with_object_ids_print_without_them():
    specs = [types.SimpleNamespace(name=n) for n in
             ("in:x:140170245133824", "in:x:140170245139999", "var:W1:140170245133000", "s0")]
    compiled = types.SimpleNamespace(plan=types.SimpleNamespace(buffers=specs))
    assert list(buffer_labels(compiled).values()) == ["in:x", "in:x#2", "var:W1", "s0"]


def test_dump_of_tensors_at_the_optimized_stage_runs_the_graph_passes():
    x = gc.placeholder((3,), gc.float32, name="x")
    y = (x * 1.0 + 0.0) * 2.0
    assert dump(y).count(" = ") == 3
    assert dump(y, stage="optimized").count(" = ") == 1


def test_dump_refuses_unknown_formats_stages_and_kernels_of_tensors():
    x = gc.placeholder((3,), gc.float32, name="x")
    with pytest.raises(ValueError, match="format 'png'"):
        dump(x + 1, format="png")
    with pytest.raises(ValueError, match="stage 'lowered'"):
        dump(x + 1, stage="lowered")
    with pytest.raises(ValueError, match="needs a compiled function"):
        dump(x + 1, stage="kernels")


def test_gc_dump_stays_callable_after_graphc_inspection_dump_is_imported():
    import graphc.inspection.dump  # noqa: F401  binds graphc.inspection.dump, not graphc.dump
    x = gc.placeholder((3,), gc.float32, name="x")
    assert gc.dump(x + 1) == dump(x + 1)


# ---- DOT and SVG ----

def test_dot_of_a_compiled_function_has_one_cluster_per_kernel(golden_fn):
    text = dump(golden_fn, format="dot", stage="kernels")
    clusters = re.findall(r"^  subgraph (cluster_\w+) \{$", text, re.M)
    assert clusters == [f"cluster_{k.name}" for k in golden_fn.compiled.kernels]
    assert text.count("peripheries=2") == len(golden_fn.compiled.memory.buffer_of)


def test_dot_of_a_graph_has_one_box_per_equation():
    x = gc.placeholder((3,), gc.float32, name="x")
    text = dump(gc.exp(x) * 2.0, format="dot")
    assert text.startswith('digraph "graph" {')
    assert re.findall(r"^  n\d+ \[", text, re.M) == ["  n0 [", "  n1 ["]
    assert "  l0 -> n0;" in text and "  n0 -> n1;" in text


def _svg_titles(svg: str, cls: str) -> list[str]:
    root = ET.fromstring(svg)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    return [g.find("svg:title", ns).text for g in root.iter("{http://www.w3.org/2000/svg}g")
            if g.get("class") == cls]


needs_graphviz = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")


@needs_graphviz
def test_svg_of_a_compiled_function_draws_every_kernel_cluster(golden_fn):
    svg = dump(golden_fn, format="svg", stage="kernels")
    clusters = _svg_titles(svg, "cluster")
    assert clusters == [f"cluster_{k.name}" for k in golden_fn.compiled.kernels]
    assert len(_svg_titles(svg, "node")) >= len(golden_fn.compiled.graph.nodes)


@needs_graphviz
@pytest.mark.parametrize("stage", ["graph", "optimized"])
def test_svg_of_the_graph_stages_parses(stage, golden_fn):
    svg = dump(golden_fn, format="svg", stage=stage)
    assert not _svg_titles(svg, "cluster")
    assert len(_svg_titles(svg, "node")) > 10


def test_without_graphviz_svg_says_what_to_install_and_keeps_the_dot(monkeypatch, tmp_path):
    from graphc.inspection import dot
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "pygraphviz", None)
    x = gc.placeholder((3,), gc.float32, name="x")
    with pytest.raises(dot.GraphvizMissing, match="apt-get install graphviz"):
        dump(x + 1, format="svg")
    with pytest.raises(dot.GraphvizMissing, match=r"wrote .*g\.dot"):
        dot.save(dump(x + 1, format="dot"), tmp_path / "g.svg")
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


# ---- on the device ----

@pytest.mark.opencl
def test_dump_of_a_real_function(cl_device):
    inputs, outputs, updates = mlp_training_step()
    fn = gc.function(inputs, outputs, updates=updates, device=cl_device, name="train_step")
    kernels = dump(fn, stage="kernels")
    assert kernels.startswith(f"function train_step on {cl_device.name}: {fn.kernel_count} ")
    assert fn.dump() == format_kernels(fn.compiled, fn.name, cl_device.name)
    assert dump(fn) == format_graph(user_graph(fn))
    assert "__kernel void" in dump(fn, stage="kernels", source=True)
