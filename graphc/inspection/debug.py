"""The debugging modes' hooks into every Function (graphc.function.HOOKS), registered when this
module is imported (the package does, graphc/__init__.py): GRAPHC_DEBUG=1 prints a pipeline
summary per compiled function, 4 its program source; GRAPHC_CHECK_NUMERICS=1 and
GRAPHC_VALIDATE=1 run each call checked (graphc/inspection/checker.py); GRAPHC_DUMP=DIR
writes a report per function (graphc/inspection/report.py), timed at its first call.
`fn.dump()` and `fn.summary()` are the text views of graphc/inspection/text.py.
"""
from __future__ import annotations

import weakref

from graphc import config
from graphc.function import HOOKS
from graphc.inspection.checker import is_quiet, run_checked
from graphc.inspection.report import dump_dir, is_timed, write_function_report
from graphc.inspection.text import format_function, function_summary


def numerics_enabled() -> bool:
    """GRAPHC_CHECK_NUMERICS=1."""
    return config.flag("GRAPHC_CHECK_NUMERICS")


def validate_enabled() -> bool:
    """GRAPHC_VALIDATE=1."""
    return config.flag("GRAPHC_VALIDATE")


_compiled: list = []                        # weak references, in compile order


def compiled_functions() -> list:
    """The Functions compiled so far in this process that are still alive."""
    return [f for f in (ref() for ref in _compiled) if f is not None]


def on_function_compiled(fn) -> None:
    """Called at the end of Function.__init__: register it; with GRAPHC_DUMP, report it."""
    if is_quiet():
        return
    _compiled.append(weakref.ref(fn))
    if dump_dir():
        write_function_report(fn, None)


def on_function_called(fn, arrays) -> list | None:
    """Called by Function.__call__ with the checked feeds: the results when a debug mode ran
    the call (checked, or profiled for GRAPHC_DUMP's first report), else None."""
    if is_quiet():
        return None
    if numerics_enabled() or validate_enabled():
        return run_checked(fn, arrays, numerics_enabled(), validate_enabled())
    if dump_dir() and not is_timed(fn):
        results = fn.executable.run(arrays, profile=True)
        fn.last_profile = list(fn.executable.last_profile)
        write_function_report(fn, fn.last_profile)
        return results
    return None


def print_pipeline(fn) -> None:
    """GRAPHC_DEBUG=1: the pipeline summary of a compiled function; 4: its program source."""
    if config.debug_level() >= 1:
        print(function_summary(fn))
    if config.debug_level() >= 4:
        print(fn.compiled.plan.source)


HOOKS.compiled += [print_pipeline, on_function_compiled]
HOOKS.called.append(on_function_called)
HOOKS.views.update(dump=format_function, summary=function_summary)
