"""Bad export directories: each is one ExportError naming the file (and the field), before
anything reaches the device; an extra unknown file is ignored."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import ExportError, load

pytestmark = pytest.mark.opencl


@pytest.fixture(scope="module")
def good(tmp_path_factory, cl_device) -> Path:
    """One good export of a small function with a variable."""
    root = tmp_path_factory.mktemp("good") / "export"
    x = gc.placeholder((2, 3), gc.float32, name="x")
    W = gc.variable(np.arange(12, dtype=np.float32).reshape(3, 4), name="W")
    gc.function([x], x @ W, name="matmul").export(root)
    return root


@pytest.fixture
def export(good, tmp_path) -> Path:
    """A fresh copy of the good export to damage."""
    return Path(shutil.copytree(good, tmp_path / "export"))


def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def write_manifest(root: Path, data: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(data))


def rewrite(root: Path, relative: str, content: bytes) -> None:
    """Replace a file and record its new sha256, so that deeper checks are reached."""
    (root / relative).write_bytes(content)
    data = manifest(root)
    data["files"][relative] = hashlib.sha256(content).hexdigest()
    write_manifest(root, data)


def edit_manifest(root: Path, change) -> None:
    data = manifest(root)
    change(data)
    write_manifest(root, data)


def edit_plan(root: Path, change) -> None:
    plan = json.loads((root / "opencl/plan.json").read_text())
    change(plan)
    rewrite(root, "opencl/plan.json", json.dumps(plan).encode())


def npy_bytes(array) -> bytes:
    import io
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


def expect(root: Path, *patterns: str) -> ExportError:
    with pytest.raises(ExportError) as info:
        load(root)
    for pattern in patterns:
        assert pattern in str(info.value), str(info.value)
    return info.value


def test_the_good_export_loads_and_runs(export):
    out = load(export)(np.ones((2, 3), np.float32))
    np.testing.assert_allclose(out, np.ones((2, 3)) @ np.arange(12).reshape(3, 4))


def test_an_extra_unknown_file_is_ignored(export):
    (export / "README.txt").write_text("notes")
    (export / "opencl" / "vulkan.spv").write_bytes(b"\x03\x02\x23\x07")
    assert load(export)(np.ones((2, 3), np.float32)).shape == (2, 4)


def test_no_folder(tmp_path):
    expect(tmp_path / "nothing", "nothing: no export there (no such folder)")
    (tmp_path / "file").write_text("x")
    expect(tmp_path / "file", "file: no export there (not a folder)")


def test_missing_manifest(export):
    (export / "manifest.json").unlink()
    expect(export, "has no manifest.json: not a graphc export")


def test_corrupt_manifest_json(export):
    (export / "manifest.json").write_text('{"format": "graphc-export", ')
    expect(export, "manifest.json: not valid JSON")


def test_nan_in_the_manifest_is_refused(export):
    text = (export / "manifest.json").read_text().replace('"format_version": 1',
                                                          '"format_version": NaN')
    (export / "manifest.json").write_text(text)
    expect(export, "manifest.json: not valid JSON", "NaN is not allowed")


def test_foreign_format(export):
    write_manifest(export, {"format": "saved_model", "version": 3})
    expect(export, "manifest.json: format 'saved_model' is not 'graphc-export': not a "
                   "graphc export")
    write_manifest(export, [1, 2])
    expect(export, "manifest.json: the top level must be a JSON object, got list")


def test_newer_format_version(export):
    edit_manifest(export, lambda m: m.update(format_version=2, graphc_version="9.0"))
    expect(export, "manifest.json: format version 2 is newer than this graphc reads (1); "
                   "exported by graphc '9.0': upgrade graphc")


def test_checksum_mismatch_names_the_file(export):
    path = export / "variables" / "0000.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    expect(export, "variables/0000.npy: its sha256 differs from the one in manifest.json")


def test_tampered_kernel_source(export):
    path = export / "opencl" / "program.cl"
    path.write_text(path.read_text().replace("__kernel", "__kernel /* evil */", 1))
    expect(export, "opencl/program.cl: its sha256 differs")


def test_missing_file(export):
    (export / "opencl" / "plan.json").unlink()
    expect(export, "file 'opencl/plan.json' is missing (the manifest lists it)")


def test_truncated_npy(export):
    data = (export / "variables" / "0000.npy").read_bytes()
    rewrite(export, "variables/0000.npy", data[:-8])
    expect(export, "variables/0000.npy", "bytes, but its header declares",
           "(truncated or padded)")


def test_npy_that_is_not_npy(export):
    rewrite(export, "variables/0000.npy", b"PK\x03\x04 not numpy")
    expect(export, "variables/0000.npy: not a readable .npy file")


def test_npy_of_another_shape_or_dtype(export):
    rewrite(export, "variables/0000.npy", npy_bytes(np.zeros((4, 3), np.float32)))
    expect(export, "variables/0000.npy: holds shape (4, 3), the manifest says (3, 4)")
    rewrite(export, "variables/0000.npy", npy_bytes(np.zeros((3, 4), np.float64)))
    expect(export, "variables/0000.npy: holds dtype '<f8', the manifest says float32")
    rewrite(export, "variables/0000.npy", npy_bytes(np.zeros((3, 4), np.float32, order="F")))
    expect(export, "in Fortran order")


def test_pickled_npy_is_never_loaded(export):
    rewrite(export, "variables/0000.npy", npy_bytes(np.array([{"a": 1}] * 12,
                                                             object).reshape(3, 4)))
    expect(export, "variables/0000.npy: holds dtype", "only plain numbers are allowed")


def test_a_file_outside_the_files_list(export):
    edit_manifest(export, lambda m: m["files"].pop("opencl/program.cl"))
    expect(export, "refers to 'opencl/program.cl', which is not among its files")


def test_paths_that_leave_the_export(export):
    edit_manifest(export, lambda m: m["variables"][0].update(file="../../etc/passwd"))
    expect(export, "field 'variables[0].file'", "is not a plain relative path inside the "
                                                "export")
    edit_manifest(export, lambda m: m["variables"][0].update(file="variables/0000.npy"))
    edit_manifest(export, lambda m: m["files"].update({"/etc/passwd": "0" * 64}))
    expect(export, "'/etc/passwd' is not a plain relative path")


def test_a_link_is_refused(export, tmp_path):
    outside = tmp_path / "outside.npy"
    shutil.copy(export / "variables" / "0000.npy", outside)
    (export / "variables" / "0000.npy").unlink()
    os.symlink(outside, export / "variables" / "0000.npy")
    expect(export, "'variables/0000.npy' is not a regular file (links and folders are refused)")


def test_a_wrongly_typed_manifest_field(export):
    edit_manifest(export, lambda m: m["signature"]["inputs"][0].update(shape="2x3"))
    expect(export, "manifest.json: field 'signature.inputs[0].shape' must be a shape",
           "got '2x3'")
    edit_manifest(export, lambda m: m["signature"]["inputs"][0].update(shape=[2, 3],
                                                                       dtype="object"))
    expect(export, "field 'signature.inputs[0].dtype' must be one of bool, float16")


def test_a_signature_that_is_not_the_plan(export):
    edit_manifest(export, lambda m: m["signature"]["inputs"][0].update(shape=[5, 3]))
    expect(export, "'in:x' is float32[5, 3] there, float32[2, 3] in the plan")
    edit_manifest(export, lambda m: m["signature"]["inputs"][0].update(shape=[2, 3],
                                                                       binding="in:y"))
    expect(export, "its inputs ['in:y'] are not the plan's ['in:x']")


def test_an_inconsistent_plan(export):
    edit_plan(export, lambda p: p["outputs"][0].update(buffer="nowhere"))
    expect(export, "opencl/plan.json: the plan is inconsistent",
           "output 'out0' names unknown buffer 'nowhere'")


def test_a_plan_with_a_bad_field(export):
    edit_plan(export, lambda p: p["launches"][0].update(name="k(); evil"))
    expect(export, "opencl/plan.json: field 'launches[0].name' must be a string matching")
    edit_plan(export, lambda p: p["launches"][0].update(name="k", global_size=[-1]))
    expect(export, "field 'launches[0].global_size' must be a list of 1 to 3 non-negative")


def test_no_plan_for_this_backend(export):
    edit_manifest(export, lambda m: m.update(backends={"vulkan": {"plan": "vulkan/plan.json"}}))
    expect(export, "no complete plan for backend 'opencl' (backends: vulkan)")


def test_an_oversized_json_file_is_not_read(export, monkeypatch):
    from graphc.runtime import export_files
    monkeypatch.setattr(export_files, "MAX_JSON_BYTES", 100)
    expect(export, "manifest.json:", "bytes, more than the 100 a graphc export's JSON file "
                                     "may have")
