"""Helpers that keep compiling fast without changing what it does: creation sites'
path handling, and the cycle collector paused (then restored) while gc.function compiles."""
from __future__ import annotations

import gc as collector
import importlib
import os

import numpy as np
import pytest

import graphc as gc
from graphc import sites

function_module = importlib.import_module("graphc.function")   # gc.function is the call


@pytest.mark.parametrize("filename", ["bench/lstm.py", "../a/b.py", "a//b/./c.py",
                                      "/tmp/../tmp/x.py", os.path.abspath("tests/x.py")])
def test_remembered_absolute_paths_match_abspath(filename, tmp_path, monkeypatch):
    assert sites._absolute(filename, os.getcwd()) == os.path.abspath(filename)
    monkeypatch.chdir(tmp_path)                 # a new working directory is a new answer
    assert sites._absolute(filename, os.getcwd()) == os.path.abspath(filename)
    assert sites._is_internal(filename) == os.path.abspath(filename).startswith(
        sites._INTERNAL_PREFIXES)


def test_short_names_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sites._short(str(tmp_path / "model.py")) == "model.py"
    assert sites._short("/elsewhere/model.py") == "/elsewhere/model.py"


@pytest.mark.opencl
@pytest.mark.parametrize("enabled", [True, False])
def test_collector_is_off_while_compiling_and_restored_after(cl_device, monkeypatch, enabled):
    seen = []
    compile_graph = function_module.compile_graph

    def spy(*args):
        seen.append(collector.isenabled())
        return compile_graph(*args)
    monkeypatch.setattr(function_module, "compile_graph", spy)
    x = gc.placeholder((3,), gc.float32, name="x")
    was = collector.isenabled()
    (collector.enable if enabled else collector.disable)()
    try:
        step = gc.function([x], x * 2.0)
        assert seen == [False] and collector.isenabled() is enabled
    finally:
        (collector.enable if was else collector.disable)()
    np.testing.assert_allclose(step(np.arange(3, dtype=np.float32)), [0, 2, 4])
