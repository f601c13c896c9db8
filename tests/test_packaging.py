"""The installed distribution: import names, package data and the command line."""

import importlib
import importlib.metadata
import importlib.resources
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MAPPED = ["graphc.runtime", "graphc.models"]


def _run_python(args, cwd):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("name", MAPPED)
def test_mapped_folder_imports_under_graphc(name):
    module = importlib.import_module(name)
    assert module.__name__ == name


@pytest.mark.parametrize("where", ["repo_root", "elsewhere"])
def test_mapped_folders_import_from_any_working_directory(where, tmp_path):
    # From the repo root, ./graphc is on sys.path ahead of the installed package.
    cwd = REPO_ROOT if where == "repo_root" else tmp_path
    result = _run_python(["-c", "import " + ", ".join(MAPPED)], cwd)
    assert result.returncode == 0, result.stderr


def _installed_distribution():
    # From the repo root, the build's graphc.egg-info would be found first; only an
    # installed distribution has a RECORD of the files it put in site-packages.
    for dist in importlib.metadata.distributions(name="graphc"):
        if dist.read_text("RECORD") is not None:
            return dist
    pytest.fail("graphc is not installed: run `make venv` (pip install -e .)")


def _top_level_names_in_files(dist):
    """First path component of each installed file, less the install machinery."""
    names = set()
    for file in dist.files or []:
        top = file.parts[0]
        if top == ".." or top.endswith(".dist-info") or top.startswith("__editable__"):
            continue  # scripts, metadata, and the editable-install finder
        if top == "__pycache__":
            continue
        names.add(top.removesuffix(".py").removesuffix(".pth"))
    return names


def test_graphc_is_the_only_top_level_name():
    dist = _installed_distribution()
    declared = (dist.read_text("top_level.txt") or "graphc").split()
    assert set(declared) == {"graphc"}
    assert _top_level_names_in_files(dist) <= {"graphc"}


def _cl_files_under(root):
    found = []
    for entry in root.iterdir():
        if entry.is_dir():
            found += [f"{entry.name}/{name}" for name in _cl_files_under(entry)]
        elif entry.name.endswith(".cl"):
            found.append(entry.name)
    return found


def test_opencl_templates_are_package_data():
    source = REPO_ROOT / "kernels_cl"
    in_repo = sorted(_cl_files_under(source)) if source.is_dir() else []
    if not in_repo:
        pytest.skip("kernels_cl/ has no .cl file yet")
    # As a namespace package, an editable install's path hook breaks importlib.resources.
    assert (source / "__init__.py").is_file(), "kernels_cl/__init__.py is needed"
    installed = importlib.resources.files("graphc.kernels_cl")
    assert sorted(_cl_files_under(installed)) == in_repo


def test_command_line_help(tmp_path):
    result = _run_python(["-m", "graphc", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "devices" in result.stdout
