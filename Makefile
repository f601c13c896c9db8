# graphc developer entry points: `make demo`, `make test`, `make bench`.
#
# Install mode: editable (`pip install -e .`). runtime/, models/ and kernels_cl/ are
# mapped to graphc.runtime, graphc.models and graphc.kernels_cl (see setup.py), so an
# editable install goes through setuptools' import finder, which maps each of those
# names to its folder by full name. That keeps working when the repo root is on
# sys.path (`python -m pytest`, `python -m graphc...` run here), where ./graphc is
# imported straight from disk: the finder still resolves graphc.runtime, because it
# looks the subpackage up by name rather than inside graphc.__path__.
# tests/test_packaging.py checks this from the repo root and from another folder.
# New subpackages of graphc/ need no reinstall; editing pyproject.toml or setup.py
# re-runs the install (the stamp below).

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.graphc-installed
EXTRAS := dev,progress,data,plot,serve,onnx,bench,distributed,vulkan

# Exits 0 when pyopencl finds a real device; simulators (the dev extra's Oclgrind, whose
# ICD pyopencl always finds) do not count. tests/test_packaging.py tests its logic.
PROBE := $(VPY) -m graphc.runtime.probe

# `make test`: the suite less the tests marked slow, on one pytest-xdist worker per CPU, each
# taking a whole file at a time (module fixtures build once); PYTEST_WORKERS=0: one process.
# `make test-slow`: the slow ones (Oclgrind's and rusticl's runs of the op suite in child
# processes), one at a time: each child already keeps the cores busy, and its time limit
# assumes it has them. `make test-all`: both (what .ci/run runs).
PYTEST_WORKERS ?= auto
PYTEST_ARGS := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: venv demo test test-slow test-all bench onnx-conformance torch clean

venv: $(STAMP)

# The mapped packages' __init__.py files are prerequisites so that a folder created
# after the first install gets mapped (setup.py skips folders that do not exist).
$(STAMP): pyproject.toml setup.py $(wildcard runtime/__init__.py models/__init__.py kernels_cl/__init__.py)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[$(EXTRAS)]'
# Only fall back to PoCL's pip wheel when no system OpenCL driver has a real device:
# Debian's pocl-opencl-icd runs our kernels about 3x faster.
	$(PROBE) || { echo "installing PoCL's pip wheel (pyopencl[pocl])"; \
	    $(VPY) -m pip install -q -e '.[$(EXTRAS),pocl]' || exit 1; \
	    $(PROBE) || echo "warning: still no real OpenCL device (see graphc devices)"; }
	touch $@

demo: venv
	$(VPY) -m graphc.models.demo

test: venv
	$(VPY) -m pytest $(PYTEST_ARGS) -m "not slow"

# exit status 5: no test is marked slow any more, which is no failure
test-slow: venv
	$(VPY) -m pytest -m slow || test $$? -eq 5

test-all: test test-slow

bench: venv
	$(VPY) bench/run.py

# ONNX's node test cases through graphc.onnx.backend on the OpenCL device (~30 min on
# 2 cores); the pass rate overall and per op. MODE=interpret checks the conversion alone.
onnx-conformance: venv
	$(VPY) -m graphc.onnx.conformance --mode $(or $(MODE),device) --failures

# torch, for the ONNX tests with real exported models and bench/onnx_import.py: pinned to
# the CPU build that lies on the machines' disk (an unpinned torch pulls a CUDA build).
torch: venv
	$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install -q torch==2.13.0

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
