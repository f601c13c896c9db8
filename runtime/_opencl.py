"""Optional pyopencl import, so graphc imports (and the interpreter runs) without OpenCL."""
from __future__ import annotations

from types import ModuleType

from .errors import DeviceError

cl: ModuleType | None
try:
    import pyopencl as cl
except (ImportError, OSError):  # OSError: pyopencl present but libOpenCL.so missing
    cl = None

INSTALL_HINT = (
    "install an OpenCL driver: `apt-get install ocl-icd-libopencl1 pocl-opencl-icd` "
    "(CPU device through PoCL) or `pip install graphc[pocl]`, or a GPU vendor's ICD"
)


def require_cl() -> ModuleType:
    """Return the pyopencl module, or raise DeviceError when it is not installed."""
    if cl is None:
        raise DeviceError(f"pyopencl is not installed; `pip install pyopencl` and {INSTALL_HINT}")
    return cl
