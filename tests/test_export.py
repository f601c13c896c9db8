"""fn.export / model.export, then graphc.runtime.load in a fresh process that imports no
compiler module: the same outputs as in-process, the call counter of random ops carried
over, atomic writes (a SIGKILL mid-export leaves no half export under the target name)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import ExportError, FeedError, load

pytestmark = pytest.mark.opencl
COMPILER_MODULES = ("graphc.compiler", "graphc.passes", "graphc.codegen", "graphc.autodiff",
                    "graphc.nn", "graphc._api")
BATCH = 4


def run_python(code: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)


def small_function():
    """x -> (relu(x @ W + b), sum(x @ W)), updating W; a variable, a constant, two outputs."""
    rng = np.random.default_rng(1)
    x = gc.placeholder((BATCH, 3), gc.float32, name="x")
    W = gc.variable(rng.standard_normal((3, 5)).astype(np.float32), name="W")
    b = gc.constant(np.linspace(-1, 1, 5).astype(np.float32))
    h = x @ W
    return gc.function([x], [gc.relu(h + b), gc.sum(h)], updates=[(W, W * 0.5)],
                       name="small")


def example_models():
    """The MLP, LeNet and LSTM example models, small, on 8x8 single-channel images."""
    from graphc.models import lenet, lstm, mlp
    return {"mlp": mlp.build((1, 8, 8), hidden=32),
            "lenet": lenet.build((1, 8, 8)),
            "lstm": lstm.build((1, 8, 8), units=16)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, cl_device):
    """An export of a gc.function, the input fed and the outputs the in-process function
    gave after export."""
    root = tmp_path_factory.mktemp("exports")
    fn = small_function()
    x = np.random.default_rng(0).standard_normal((BATCH, 3)).astype(np.float32)
    fn(x)                                   # the export holds the updated W
    fn.export(root / "function")
    return root, {"function": ([x], fn(x))}


@pytest.fixture(scope="module")
def exported_models(tmp_path_factory, cl_device):
    """Exports of the MLP, LeNet and LSTM example models, the images fed and their
    model.predict outputs; and the models."""
    root = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    cases, models = {}, example_models()
    for name, model in models.items():
        images = rng.standard_normal((BATCH, 1, 8, 8)).astype(np.float32)
        model.export(root / name, batch_size=BATCH)
        cases[name] = ([images], [model.predict(images, batch_size=BATCH)])
    return root, cases, models


def run_in_a_fresh_process(root: Path, cases: dict, tmp_path: Path) -> None:
    """Load each export under `root` in a new interpreter with graphc.runtime alone, run it
    on the case's feeds, and compare with the case's outputs; no compiler module loaded."""
    feeds = {f"{name}/{i}": a for name, (xs, _) in cases.items() for i, a in enumerate(xs)}
    np.savez(tmp_path / "feeds.npz", **feeds)
    done = run_python(f"""
        import sys, numpy as np, graphc.runtime
        feeds = np.load({str(tmp_path / 'feeds.npz')!r})
        out = {{}}
        for name in {sorted(cases)!r}:
            fn = graphc.runtime.load({str(root)!r} + '/' + name)
            xs = [feeds[f'{{name}}/{{i}}'] for i in range(len(fn.inputs))]
            for i, value in enumerate(fn.run(xs)):
                out[f'{{name}}/{{i}}'] = value
        np.savez({str(tmp_path / 'out.npz')!r}, **out)
        print(' '.join(sorted(m for m in sys.modules if m.startswith('graphc'))))
        """)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert "graphc.runtime.loaded" in loaded
    for module in COMPILER_MODULES:
        assert not [m for m in loaded if m == module or m.startswith(module + ".")], module
    out = np.load(tmp_path / "out.npz")
    for name, (_, expected) in cases.items():
        assert len(out.files) >= len(expected)
        for i, value in enumerate(expected):
            np.testing.assert_allclose(out[f"{name}/{i}"], value, rtol=1e-6, atol=1e-6,
                                       err_msg=name)


def test_a_function_export_runs_in_a_new_process_without_the_compiler(exported, tmp_path):
    run_in_a_fresh_process(*exported, tmp_path)


@pytest.mark.slow
def test_example_model_exports_run_in_a_new_process_without_the_compiler(exported_models,
                                                                         tmp_path):
    root, cases, _ = exported_models
    run_in_a_fresh_process(root, cases, tmp_path)


def test_signature_names_shapes_and_dtypes(exported):
    root, _ = exported
    fn = load(root / "function")
    assert [(s.name, s.shape, s.dtype) for s in fn.inputs] == [("x", (BATCH, 3), "float32")]
    assert [(s.name, s.shape) for s in fn.outputs] == [("output_0", (BATCH, 5)),
                                                       ("output_1", ())]
    assert fn.batch_size is None and fn.name == "small"


def test_a_model_export_is_named_after_its_input_and_last_layer(tmp_path, cl_device):
    from graphc.models import mlp
    from graphc.nn.checks import output_names
    model = mlp.build((1, 8, 8), hidden=8)
    model.export(tmp_path / "mlp", batch_size=2)
    fn = load(tmp_path / "mlp")
    assert [(s.name, s.shape) for s in fn.inputs] == [(model.inputs[0].name, (2, 1, 8, 8))]
    assert [(s.name, s.shape) for s in fn.outputs] == [(output_names(model)[0], (2, 10))]
    assert fn.batch_size == 2 and fn.name == "mlp"
    images = np.random.default_rng(3).standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(fn(images)[0], model.predict(images, batch_size=2),
                               rtol=1e-6, atol=1e-6)
    manifest = json.loads((tmp_path / "mlp" / "manifest.json").read_text())
    assert manifest["format"] == "graphc-export" and manifest["format_version"] == 1
    assert set(manifest["backends"]) == {"opencl"}
    with pytest.raises(ExportError, match="batch_size must be a positive int, got 0"):
        model.export(tmp_path / "zero", batch_size=0)


def test_a_loaded_function_keeps_updating_its_own_variables(exported):
    root, _ = exported
    fn = load(root / "function")
    x = np.ones((BATCH, 3), np.float32)
    first = fn.variable("var:W")
    fn(x)
    np.testing.assert_allclose(fn.variable("var:W"), first * 0.5)


def test_random_ops_continue_from_the_exported_call_counter(tmp_path, cl_device):
    x = gc.placeholder((64,), gc.float32, name="x")
    fn = gc.function([x], gc.random.dropout(x, 0.5), name="drop")
    ones = np.ones(64, np.float32)
    fn(ones), fn(ones)
    fn.export(tmp_path / "drop")
    expected = [fn(ones), fn(ones)]
    loaded = load(tmp_path / "drop")
    got = [loaded(ones), loaded(ones)]
    assert not np.array_equal(expected[0], expected[1])
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have, want)


def test_feeds_are_checked_with_the_input_named(exported):
    root, _ = exported
    fn = load(root / "function")
    with pytest.raises(FeedError, match=r"input 'x' of export 'small' expects shape \(4, 3\), "
                                        r"got \(2, 3\)"):
        fn(np.ones((2, 3), np.float32))
    with pytest.raises(FeedError, match="input 'x' of export 'small' expects dtype float32, "
                                        "got complex128"):
        fn(np.ones((BATCH, 3), complex))
    with pytest.raises(FeedError, match=r"export 'small' takes 1 inputs \(x\), got 2"):
        fn(np.ones((BATCH, 3)), np.ones((BATCH, 3)))
    assert isinstance(FeedError("x"), gc.FeedError) and gc.ExportError is ExportError


def test_export_replaces_an_export_but_nothing_else(tmp_path, cl_device):
    fn = small_function()
    fn.export(tmp_path / "out")
    fn(np.ones((BATCH, 3), np.float32))
    fn.export(tmp_path / "out")             # replaced: the new W
    np.testing.assert_allclose(load(tmp_path / "out").variable("var:W"),
                               fn.executable.variables["var:W"].read())
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="exists and is not a graphc export: not replaced"):
        fn.export(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="exists and is not a folder"):
        fn.export(tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine", "out"]


def test_export_refuses_a_wrong_batch_and_duplicate_names(tmp_path, cl_device):
    fn = small_function()
    with pytest.raises(ExportError, match=r"'output_1' has shape \(\), whose first axis is "
                                          r"not the batch"):
        fn.export(tmp_path / "a", batch_size=BATCH)
    with pytest.raises(ExportError, match=r"output names \['y'\] are used more than once"):
        fn.export(tmp_path / "b", output_names=["y", "y"])
    assert not list(tmp_path.iterdir())


KILL_CHILD = """
    import os, signal, sys, numpy as np, graphc as gc
    from graphc.runtime import export_files
    x = gc.placeholder((4,), gc.float32, name='x')
    W = gc.variable(np.full(4, {first}, np.float32), name='W')
    fn = gc.function([x], x * W, updates=[(W, W + 1)])
    if {export_first}:
        fn.export({target!r})
    fn(np.ones(4, np.float32))
    calls = []
    def killing(original):
        def wrapper(*args, **kwargs):
            calls.append(1)
            if len(calls) == {at}:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)
        return wrapper
    if {where!r} == 'files':
        export_files.write_file = killing(export_files.write_file)
    else:
        export_files.os.rename = killing(export_files.os.rename)
    fn.export({target!r})
    print('not killed')
"""


@pytest.mark.parametrize("where,at,export_first", [
    ("files", 2, False),        # killed writing the first export's second file
    ("files", 3, True),         # killed writing a replacement
    ("rename", 2, True),        # killed between moving the old export aside and the rename
])
def test_sigkill_mid_export_leaves_no_half_export(tmp_path, cl_device, where, at, export_first):
    target = tmp_path / "model"
    done = run_python(KILL_CHILD.format(first=3.0, export_first=export_first,
                                        target=str(target), where=where, at=at))
    assert done.returncode == -9, done.stdout + done.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model"]
    assert leftovers and all(p.startswith(".model.") for p in leftovers)
    if where == "files" and export_first:
        np.testing.assert_array_equal(load(target).variable("var:W"), np.full(4, 3.0))
    else:
        assert not target.exists()
        hint = "left the previous one in" if where == "rename" else "no such folder"
        with pytest.raises(ExportError, match=hint):
            load(target)
    x = gc.placeholder((4,), gc.float32, name="x")
    gc.function([x], x * 2).export(target)      # the next export clears the leftovers
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    np.testing.assert_array_equal(load(target)(np.ones(4, np.float32)), np.full(4, 2.0))


BINARY_CHILD = """
    import json, sys, numpy as np
    if sys.argv[1] == 'export':
        import graphc as gc
        x = gc.placeholder((4, 3), gc.float32, name='x')
        W = gc.variable(np.arange(12, dtype=np.float32).reshape(3, 4), name='W')
        gc.function([x], gc.relu(x @ W - 5)).export(sys.argv[2])
    else:
        import graphc.runtime
        fn = graphc.runtime.load(sys.argv[2])
        out = fn(np.ones((4, 3), np.float32))
        print(json.dumps({'builds': [r.cache for r in fn.device.build_stats],
                          'out': out.tolist()}))
"""


def test_an_export_carries_its_binary_where_the_driver_keeps_none(tmp_path, cl_device):
    """With PoCL's own kernel cache off (and on drivers without one), the export holds the
    built program, which a load on the same device uses instead of compiling the source;
    an entry for another device or a damaged one is passed over for the source."""
    def child(*args: str, cache: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, POCL_KERNEL_CACHE="0", GRAPHC_CACHE_DIR=str(tmp_path / cache))
        return subprocess.run([sys.executable, "-c", textwrap.dedent(BINARY_CHILD), *args],
                              capture_output=True, text=True, timeout=240, env=env)

    target = tmp_path / "export"
    assert child("export", str(target), cache="a").returncode == 0
    binaries = json.loads((target / "manifest.json").read_text())["backends"]["opencl"][
        "binaries"]
    if not binaries:
        pytest.skip(f"the driver of {cl_device.describe()} gives no program binary")
    expected = np.maximum(np.ones((4, 3)) @ np.arange(12).reshape(3, 4) - 5, 0).tolist()
    loaded = child("load", str(target), cache="b")
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == {"builds": ["export", "memory"], "out": expected}

    from graphc.runtime import cache_entry
    entry = (target / binaries[0]).read_bytes()
    foreign = cache_entry.pack(b'{"device": "another GPU"}', entry[-1000:])
    for index, damaged in enumerate((foreign, entry[:-1] + bytes([entry[-1] ^ 1]))):
        (target / binaries[0]).write_bytes(damaged)
        manifest = json.loads((target / "manifest.json").read_text())
        manifest["files"][binaries[0]] = hashlib.sha256(damaged).hexdigest()
        (target / "manifest.json").write_text(json.dumps(manifest))
        loaded = child("load", str(target), cache=f"c{index}")
        assert loaded.returncode == 0, loaded.stderr
        assert json.loads(loaded.stdout) == {"builds": ["miss"], "out": expected}


def test_scalar_inputs_variables_and_outputs_keep_their_shape(tmp_path, cl_device):
    scale = gc.placeholder((), gc.float32, name="scale")
    x = gc.placeholder((3,), gc.float32, name="x")
    count = gc.variable(np.float32(2.0), name="count")
    fn = gc.function([scale, x], [gc.sum(x * scale * count), x * count],
                     updates=[(count, count + 1)])
    fn.export(tmp_path / "scalars")
    loaded = load(tmp_path / "scalars")
    assert loaded.variable("var:count").shape == ()
    total, scaled = loaded(np.float32(0.5), np.array([1, 2, 3], np.float32))
    assert total.shape == () and float(total) == 6.0
    np.testing.assert_array_equal(scaled, [2, 4, 6])
    assert float(loaded.variable("var:count")) == 3.0


@pytest.mark.slow
def test_an_export_built_on_one_driver_runs_on_another(exported, tmp_path):
    """Exported on the default device, loaded on Mesa's rusticl (llvmpipe) when present:
    the plan is portable OpenCL C, and the result is the same."""
    root, cases = exported
    (x,), expected = cases["function"]
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, RUSTICL_ENABLE="llvmpipe")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sys, numpy as np, graphc.runtime as rt
        if not [d for d in rt.devices() if d.platform_name == 'rusticl']:
            sys.exit(3)
        fn = rt.load({str(root / 'function')!r}, device='rusticl')
        print(fn.device.platform_name)
        np.savez({str(tmp_path / 'out.npz')!r}, *fn(np.load({str(tmp_path / 'x.npy')!r})))
        """)], capture_output=True, text=True, timeout=240, env=env)
    if done.returncode == 3:
        pytest.skip("no rusticl device (apt-get install mesa-opencl-icd)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "rusticl"
    out = np.load(tmp_path / "out.npz")
    for i, value in enumerate(expected):
        np.testing.assert_allclose(out[f"arr_{i}"], value, rtol=1e-5, atol=1e-5)
