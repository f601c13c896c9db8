"""graphc: a static computation-graph compiler for deep learning on any OpenCL device.

    import graphc as gc
    x = gc.placeholder((64, 784), gc.float32, name="x")
    ...
    gc.interpret([loss], {x: xb, y: yb})

The package imports lazily, so that `import graphc.runtime` and running an export
(`graphc.runtime.load`) import no compiler module. `import graphc` binds nothing yet; the
public names live in graphc/_api.py, which imports the whole compiler in one fixed order:
- the first `gc.<name>`, `dir(gc)` or `from graphc import *` imports it (PEP 562);
- so does the first import of any compiler module (`from graphc.passes import ...`), before
  that module, so that Tensor's operators and Function's inspection hooks, which _api.py
  installs, are there whatever a program imports first (a finder on sys.meta_path, removed
  once it has run).
graphc.runtime, graphc.serve, graphc.cli and graphc.kernels_cl load on their own.
"""
import importlib as _importlib
import importlib.abc as _abc
import importlib.machinery as _machinery
import sys as _sys
import types as _types

_API = "graphc._api"
_ON_THEIR_OWN = frozenset({"_api", "runtime", "serve", "cli", "__main__", "kernels_cl"})
# Public functions named like the module that defines them: importing graphc.function
# must not rebind gc.function (the function) to the module, in whatever order things load.
_SHADOWED = frozenset({"dump", "function", "gradcheck", "report", "verify"})
_MISSING = object()


class _Package(_types.ModuleType):
    """graphc's module type: keeps the public functions of _SHADOWED bound."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _SHADOWED and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


def _public_api() -> _types.ModuleType:
    """graphc._api, imported (once, the first time) and its public names bound here."""
    loaded = _sys.modules.get(_API)
    if loaded is not None and not getattr(loaded.__spec__, "_initializing", False):
        return loaded
    api = _importlib.import_module(_API)     # while it runs, returns the part bound so far
    if not getattr(api.__spec__, "_initializing", False):
        package = _sys.modules[__name__].__dict__
        package.update((k, v) for k, v in vars(api).items() if not k.startswith("_"))
        _sys.meta_path[:] = [f for f in _sys.meta_path if not isinstance(f, _ApiFirst)]
    return api


def __getattr__(name: str) -> object:
    if name == "__all__":
        _public_api()
        return sorted(k for k in globals() if not k.startswith("_"))
    if not name.startswith("_"):
        value = vars(_public_api()).get(name, _MISSING)
        if value is not _MISSING:
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    _public_api()
    return sorted(globals())


class _ApiFirst(_abc.MetaPathFinder, _abc.Loader):
    """Imports graphc._api before the first compiler module imported on its own."""

    def find_spec(self, name, path=None, target=None):
        parts = name.split(".")
        if parts[0] != __name__ or len(parts) < 2 or parts[1] in _ON_THEIR_OWN \
                or _API in _sys.modules:
            return None
        return _machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        # Hand the import back: drop the stand-in, load the API (which imports this module
        # in its turn, through the ordinary finders), and leave the real module in
        # sys.modules, which the import system then returns.
        name = module.__name__
        del _sys.modules[name]
        _public_api()
        _importlib.import_module(name)


_sys.modules[__name__].__class__ = _Package
_sys.meta_path.insert(0, _ApiFirst())
