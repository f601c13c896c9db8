"""The lazy top-level package: `import graphc.runtime` imports no compiler module, and every
public `gc.*` name still works, from whichever module a program imports first."""
from __future__ import annotations

import subprocess
import sys
import types

import pytest

import graphc as gc

COMPILER_MODULES = ("graphc.compiler", "graphc.passes", "graphc.codegen", "graphc.autodiff",
                    "graphc.nn", "graphc._api")
SHADOWED = ("dump", "function", "gradcheck", "report", "verify")


def run_python(code: str) -> str:
    """Run `code` in a fresh interpreter; its stdout (the test fails on a non-zero exit)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_runtime_imports_no_compiler_module():
    out = run_python("import sys, graphc.runtime\n"
                     "print(' '.join(sorted(m for m in sys.modules if m.startswith('graphc'))))")
    loaded = out.split()
    assert "graphc.runtime.executable" in loaded
    for name in COMPILER_MODULES:
        assert not [m for m in loaded if m == name or m.startswith(name + ".")], name


def test_every_public_name_of_the_api_is_a_package_attribute():
    gc.float32  # noqa: B018  (loads the API)
    api = sys.modules["graphc._api"]
    public = [name for name in vars(api) if not name.startswith("_")]
    assert len(public) > 100
    listed = dir(gc)
    star: dict = {}
    exec("from graphc import *", star)  # noqa: S102
    for name in public:
        assert getattr(gc, name) is vars(api)[name], name
        assert name in listed, name
        assert star[name] is vars(api)[name], name


def test_functions_named_like_their_modules_stay_functions():
    for name in SHADOWED:
        assert not isinstance(getattr(gc, name), types.ModuleType), name
        assert callable(getattr(gc, name)), name


@pytest.mark.parametrize("first", ["from graphc.passes.fuse import make_groups",
                                   "import graphc.function",
                                   "from graphc.compiler import compile_graph",
                                   "import graphc.nn"])
def test_a_compiler_module_imported_first_loads_the_whole_api(first):
    out = run_python(
        f"{first}\nimport types, numpy as np, graphc as gc\n"
        "x = gc.placeholder((2,), gc.float32, name='x')\n"
        "print(gc.interpret([x * 2], {x: np.ones(2, np.float32)})[0].tolist())\n"
        f"print([n for n in {SHADOWED!r} if isinstance(getattr(gc, n), types.ModuleType)])")
    assert out.split("\n")[:2] == ["[2.0, 2.0]", "[]"]


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'graphc' has no attribute 'no_such_op'"):
        gc.no_such_op  # noqa: B018
