"""Creation sites: the file:line of the user's code that built a node."""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import sys
from pathlib import Path

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_INTERNAL_PREFIXES = (_PACKAGE_DIR + os.sep,)


def _is_internal(filename: str) -> bool:
    if filename.startswith("<frozen"):
        return True
    cwd = "" if os.path.isabs(filename) else os.getcwd()
    return _absolute(filename, cwd).startswith(_INTERNAL_PREFIXES)


def _short(filename: str) -> str:
    """Path relative to the working directory when inside it, else as given."""
    cwd = os.getcwd()
    absolute = _absolute(filename, cwd)
    cwd += os.sep
    return absolute[len(cwd):] if absolute.startswith(cwd) else filename


@functools.lru_cache(maxsize=4096)
def _absolute(filename: str, cwd: str) -> str:
    """os.path.abspath(filename) run from `cwd` (any, for an absolute `filename`),
    remembered: every node built asks it for each frame of the stack above it."""
    return os.path.normpath(os.path.join(cwd, filename))


_forced_site: contextvars.ContextVar[str | None] = contextvars.ContextVar("site", default=None)
_scope: contextvars.ContextVar[str] = contextvars.ContextVar("scope", default="")


@contextlib.contextmanager
def site_of(site: str):
    """Attribute nodes built inside this block to `site` (autodiff: the forward op's line)."""
    token = _forced_site.set(site)
    try:
        yield
    finally:
        _forced_site.reset(token)


@contextlib.contextmanager
def name_scope(name: str, site: str):
    """Nodes built inside this block belong to `name` (nested scopes join as `outer/name`,
    as Keras/TF name scopes) and carry `site`, the user's line that made the layer: their
    site reads `model.py:12 in dense_3`. Yields the scope's full path."""
    outer = _scope.get()
    path = f"{outer}/{name}" if outer else name
    token = _scope.set(path)
    try:
        with site_of(f"{site} in {path}" if site else f"in {path}"):
            yield path
    finally:
        _scope.reset(token)


def creation_site(obj) -> str:
    """file:line of the user's code constructing `obj`: the first frame outside graphc and
    outside `obj`'s own __init__ methods (a user's subclass calling super().__init__)."""
    frame = sys._getframe(1)
    while frame is not None and (_is_internal(frame.f_code.co_filename) or (
            frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is obj)):
        frame = frame.f_back
    if frame is None:
        return ""
    return f"{_short(frame.f_code.co_filename)}:{frame.f_lineno}"


def user_site() -> str:
    """file:line of the innermost stack frame outside the graphc package."""
    forced = _forced_site.get()
    if forced is not None:
        return forced
    frame = sys._getframe(1)
    while frame is not None and _is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return ""
    return f"{_short(frame.f_code.co_filename)}:{frame.f_lineno}"


def user_stacklevel() -> int:
    """The warnings.warn stacklevel, counted from the caller, that names the user's line."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and _is_internal(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level
