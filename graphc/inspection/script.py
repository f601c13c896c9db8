"""`graphc dump SCRIPT`: run a script with GRAPHC_DUMP set, so every function it compiles
gets a report (graphc/inspection/report.py)."""
from __future__ import annotations

import contextlib
import os
import runpy
import sys
import weakref
from pathlib import Path

from graphc.inspection import report
from graphc.inspection.debug import compiled_functions


def dump_script(script, out="graphc_dump", argv=()) -> tuple[int, list[Path]]:
    """`graphc dump`: run `script` with GRAPHC_DUMP=out; (its exit status, the reports)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    before = weakref.WeakSet(compiled_functions())
    with _script_environment(script, out, argv):
        try:
            namespace = runpy.run_path(str(script), run_name="__main__")
            status = 0
        except SystemExit as exc:
            status, namespace = _exit_status(exc.code), {}
        for fn in compiled_functions():        # the ones the hooks did not report
            if fn not in before and not report.has_report(fn):
                report.write_function_report(fn, None, out)
        del namespace
    return status, [p for p in report.written_reports() if p.parent == out]


@contextlib.contextmanager
def _script_environment(script, out: Path, argv):
    """GRAPHC_DUMP, sys.argv and sys.path[0] as `python SCRIPT.py` would have them."""
    saved_env, saved_argv = os.environ.get("GRAPHC_DUMP"), sys.argv
    folder = str(Path(script).resolve().parent)
    os.environ["GRAPHC_DUMP"], sys.argv = str(out), [str(script), *argv]
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.argv = saved_argv
        if folder in sys.path:
            sys.path.remove(folder)
        if saved_env is None:
            os.environ.pop("GRAPHC_DUMP", None)
        else:
            os.environ["GRAPHC_DUMP"] = saved_env


def _exit_status(code) -> int:
    return code if isinstance(code, int) else 0 if code is None else 1
