"""Shared pytest fixtures and session setup for the graphc test suite."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CACHE_ENV = "GRAPHC_CACHE_DIR"


def pytest_configure(config: pytest.Config) -> None:
    """Register the `opencl` marker and keep kernel binaries cached across test runs."""
    config.addinivalue_line("markers", "opencl: needs an OpenCL device (skipped without one)")
    if not os.environ.get(CACHE_ENV):
        os.environ[CACHE_ENV] = str(_kernel_cache_dir(config))
    # no cold-start helper process per compiled function (tests/test_prewarm.py tests it)
    os.environ.setdefault("GRAPHC_PREWARM", "0")


def _kernel_cache_dir(config: pytest.Config) -> Path:
    """A stable folder under the pytest cache, so binaries survive between runs."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return cache.mkdir("graphc-kernels")
    return Path(config.rootpath) / ".pytest_cache" / "graphc-kernels"


@pytest.fixture(scope="session")
def cl_device():
    """The OpenCL device tests run on (select_device()), or a skip when there is none."""
    from graphc.runtime import devices, select_device

    if not devices():
        pytest.skip("no OpenCL device")
    return select_device()


@pytest.fixture(autouse=True)
def no_vulkan_validation_messages():
    """Under $GRAPHC_VULKAN_VALIDATION (test_vulkan_suite.py's child runs) any message of the
    Vulkan validation layer during a test fails it."""
    if not os.environ.get("GRAPHC_VULKAN_VALIDATION"):
        yield
        return
    from graphc.runtime.vulkan_api import clear_validation_messages, validation_messages
    clear_validation_messages()
    yield
    messages = validation_messages()
    assert not messages, "Vulkan validation messages:\n" + "\n".join(messages[:5])


@pytest.fixture(autouse=True)
def fresh_random_seed():
    """Every test starts from graphc's default global seed and op counter."""
    import graphc as gc
    gc.random.set_seed(gc.random.DEFAULT_GLOBAL_SEED)
    yield
