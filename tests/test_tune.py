"""The autotuner: correct candidates are timed and the fastest cached; wrong ones never."""
import json

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.gemm import Epilogue, GemmSpec, gemm_kernel
from graphc.tune import cached_tuning, spec_key, tune_gemm, tuning_file

pytestmark = pytest.mark.opencl
SPEC = GemmSpec(1, 13, 17, 9, "float", False, True, 0, 0)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "kernels"))
    return tmp_path


def broken_generator(name, spec, info):
    """Test-only: the candidate {'broken': 1} stores acc + 1 instead of acc."""
    store = "C[{b} * {m} * {n} + {i} * {n} + {j}] = {acc}"
    if info.tuning.pop("broken", None):
        store += " + 1.0f"
    return gemm_kernel(name, spec, Epilogue(store=store + ";"), info)


def test_a_wrong_candidate_is_rejected_and_never_cached(cl_device, private_cache):
    trials = tune_gemm(cl_device, SPEC, candidates=[{"broken": 1}], generate=broken_generator)
    assert len(trials) == 1 and "wrong result" in trials[0].rejected
    assert cached_tuning(cl_device, SPEC) is None
    assert not tuning_file(cl_device).exists()


def test_the_fastest_correct_candidate_is_cached(cl_device, private_cache):
    candidates = [{"broken": 1}, {}, {"rows": 4}]
    trials = tune_gemm(cl_device, SPEC, candidates=candidates, generate=broken_generator)
    good = [t for t in trials if t.rejected is None]
    assert len(good) == 2 and good[0].seconds <= good[1].seconds
    assert [t.tuning for t in trials if t.rejected] == [{"broken": 1}]
    assert cached_tuning(cl_device, SPEC) == good[0].tuning
    stored = json.loads(tuning_file(cl_device).read_text())
    assert "broken" not in json.dumps(stored) and spec_key(SPEC) in stored


def test_graphc_tune_compiles_with_the_tuned_choice(cl_device, private_cache, monkeypatch):
    monkeypatch.setenv("GRAPHC_TUNE", "1")
    a, b = gc.placeholder((13, 9)), gc.placeholder((17, 9))
    f = gc.function([a, b], a @ b.T)
    av = np.random.rand(13, 9).astype(np.float32)
    bv = np.random.rand(17, 9).astype(np.float32)
    np.testing.assert_allclose(f(av, bv), av @ bv.T, rtol=1e-5)
    assert cached_tuning(cl_device, SPEC) is not None
