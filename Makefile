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
EXTRAS := dev,progress,data,plot,distributed

# Exits 0 when pyopencl finds at least one device on any platform.
define HAS_OPENCL_DEVICE
import pyopencl as cl

def device_count(platform):
    try:
        return len(platform.get_devices())
    except cl.Error:
        return 0

try:
    count = sum(device_count(p) for p in cl.get_platforms())
except cl.Error:
    count = 0
raise SystemExit(0 if count else 1)
endef
export HAS_OPENCL_DEVICE

.PHONY: venv demo test bench clean

venv: $(STAMP)

# The mapped packages' __init__.py files are prerequisites so that a folder created
# after the first install gets mapped (setup.py skips folders that do not exist).
$(STAMP): pyproject.toml setup.py $(wildcard runtime/__init__.py models/__init__.py kernels_cl/__init__.py)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[$(EXTRAS)]'
# Only fall back to PoCL's pip wheel when no system OpenCL driver has a device:
# Debian's pocl-opencl-icd runs our kernels about 3x faster.
	$(VPY) -c "$$HAS_OPENCL_DEVICE" || $(VPY) -m pip install -q -e '.[$(EXTRAS),pocl]'
	touch $@

demo: venv
	$(VPY) -m graphc.models.demo

test: venv
	$(VPY) -m pytest

bench: venv
	$(VPY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
