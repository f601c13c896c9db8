"""The `graphc` command line.

Ordinary mistakes (a bad option, a missing file, a device that is not there, data that cannot
be read) end with one line on stderr, `graphc COMMAND: error: ...`, and exit status 2, as
argparse's own errors do; only bugs show a traceback.
"""

import argparse
import os
import sys
from pathlib import Path

USAGE_STATUS = 2
# The OSErrors a user's mistake raises (a path that is not there or not theirs); others are bugs.
EXPECTED_OS_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


class UsageError(Exception):
    """A command line that names something missing or asks for nothing."""


class _Parser(argparse.ArgumentParser):
    """argparse with each error on one line, pointing at --help instead of the usage text."""

    def error(self, message):
        self.exit(USAGE_STATUS, f"{self.prog}: error: {one_line(message)} "
                                f"(see {self.prog} --help)\n")


def one_line(text: str) -> str:
    """A multi-line message on one line: 'a:\\n  b\\n  c' -> 'a: b; c'."""
    parts = [line.strip() for line in str(text).splitlines() if line.strip()]
    joined = parts[:1]
    for part in parts[1:]:
        joined.append((" " if joined[-1].endswith(":") else "; ") + part)
    return "".join(joined)


def _os_error_text(error: OSError) -> str:
    """'PATH: No such file or directory' rather than '[Errno 2] ...'."""
    if error.filename is None:
        return str(error)
    return f"{error.filename}: {error.strerror or error}"


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("graphc")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _cmd_devices(args):
    # Imported here so `graphc --help` works without touching OpenCL.
    from graphc.runtime.device import format_device_table

    print(format_device_table())
    return 0


def _cmd_train(args):
    # Imported here so `graphc --help` stays quick and needs no model dependencies.
    import importlib

    from graphc.models import common

    module = importlib.import_module(f"graphc.models.{args.model}")
    if args.device not in (None, "interpret"):
        from graphc.runtime import select_device
        select_device(args.device)         # a device that is not there: say so before training
    args = common.resolve_args(args, module.DEFAULTS)
    with common.ranks_of(args):
        module.train(args)
    return 0


def _add_train(commands):
    from graphc.models.common import MODELS, add_training_args

    train = commands.add_parser(
        "train", help="train an example model (graphc.models) and save its plots",
        description="Train one of graphc's example models; prints metrics, saves plots.",
    )
    train.add_argument("model", choices=MODELS, metavar="NAME",
                       help="one of: " + ", ".join(MODELS))
    add_training_args(train)
    train.set_defaults(run=_cmd_train)


def _cmd_dump(args):
    from graphc.inspection.script import dump_script

    _check_script(args.script)
    out, script_args = _dump_options(args.out, list(args.script_args))
    status, paths = dump_script(args.script, out, script_args)
    for path in paths:
        print(path)
    print(f"graphc dump: {len(paths)} report(s) in {out}")
    return status


def _dump_options(out, rest):
    """`--out DIR` may also follow SCRIPT.py; the script gets the rest (after `--`, if any)."""
    while rest and (rest[0] == "--out" and len(rest) > 1 or rest[0].startswith("--out=")):
        out = rest[1] if rest[0] == "--out" else rest[0].split("=", 1)[1]
        rest = rest[2:] if rest[0] == "--out" else rest[1:]
    return out, rest[1:] if rest[:1] == ["--"] else rest


def _add_dump(commands):
    dump = commands.add_parser(
        "dump", help="run a script and write an HTML report per function it compiles",
        description="Run SCRIPT with GRAPHC_DUMP=DIR: one HTML report (graph, kernels, "
                    "times, sources, passes, memory) and one text dump per compiled function.",
    )
    dump.add_argument("script", metavar="SCRIPT.py")
    dump.add_argument("--out", default="graphc_dump", metavar="DIR",
                      help="folder for the reports (default: graphc_dump)")
    dump.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS",
                      help="arguments passed to the script")
    dump.set_defaults(run=_cmd_dump)


def _check_script(path: str) -> None:
    if not Path(path).is_file():
        what = "is a folder, not a script" if Path(path).is_dir() else "no such file"
        raise UsageError(f"{path}: {what}")


def gemm_shape(text: str) -> tuple[int, int, int]:
    """--gemm's value: 'MxNxK', or 'N' for NxNxN; positive integers."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 3) or not all(p.isascii() and p.isdigit() and int(p) > 0
                                           for p in parts):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a GEMM shape: expected MxNxK or N, positive integers "
            "(e.g. 512x256x128, or 1024 for 1024x1024x1024)")
    dims = tuple(int(p) for p in parts)
    return dims * 3 if len(dims) == 1 else dims


def _tiling_text(tuning: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tuning.items())) or "default tiling"


def _tune_shape(device, shape: tuple[int, int, int]) -> int:
    """Tune one float32 GEMM shape; print every trial, then the winner and where it went."""
    from graphc.codegen.gemm import GemmSpec
    from graphc.tune import tune_gemm, tuning_file

    name = "x".join(str(d) for d in shape)
    trials = tune_gemm(device, GemmSpec(1, *shape, "float", False, False, 0, 0))
    for trial in trials:
        result = f"{trial.seconds * 1e3:8.3f} ms" if trial.rejected is None \
            else f"rejected: {trial.rejected}"
        print(f"{name}  {_tiling_text(trial.tuning):<28} {result}")
    best = trials[0] if trials and trials[0].rejected is None else None
    if best is None:
        print(f"{name}: every candidate was rejected; nothing saved", file=sys.stderr)
        return 1
    print(f"{name}: best {_tiling_text(best.tuning)} ({best.seconds * 1e3:.3f} ms) on "
          f"{device.name}, saved to {tuning_file(device)}")
    return 0


def _tune_script(script: str, device, chosen: bool) -> None:
    """Run SCRIPT with GRAPHC_TUNE=1 (on the chosen device), then say where the choices are."""
    import runpy

    from graphc.tune import tuning_file

    os.environ["GRAPHC_TUNE"] = "1"
    if chosen:
        os.environ["GRAPHC_DEVICE"] = str(device.index)
    saved_argv, sys.argv = sys.argv, [script]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        sys.argv = saved_argv
    path = tuning_file(device)
    print(f"graphc tune: GEMM choices for {device.name} are in {path}" if path.exists()
          else f"graphc tune: {script} compiled no GEMM on {device.name}; nothing saved")


def _cmd_tune(args):
    from graphc.runtime import select_device

    if not args.gemm and not args.script:
        raise UsageError("nothing to tune: give --gemm MxNxK (repeatable), or SCRIPT.py to "
                         "tune every GEMM it compiles")
    if args.script:
        _check_script(args.script)
    device = select_device(args.device)
    status = max([_tune_shape(device, shape) for shape in args.gemm], default=0)
    if args.script:
        _tune_script(args.script, device, args.device is not None)
    return status


def _add_tune(commands):
    tune = commands.add_parser(
        "tune", help="autotune GEMM kernels for this device and cache the winners",
        description="Time candidate GEMM tilings, reject any whose result is wrong, and cache "
                    "the fastest per device and driver (under $GRAPHC_CACHE_DIR/tuning). "
                    "With SCRIPT, run it with GRAPHC_TUNE=1 so every GEMM shape it compiles "
                    "is tuned.")
    tune.add_argument("script", nargs="?", metavar="SCRIPT.py")
    tune.add_argument("--gemm", action="append", default=[], metavar="MxNxK", type=gemm_shape,
                      help="a float32 GEMM shape to tune (repeatable; N alone means NxNxN)")
    tune.add_argument("--device", default=None, help="device index or name substring")
    tune.set_defaults(run=_cmd_tune)


def bench_script() -> Path:
    """bench/run.py of the source checkout graphc runs from (an editable install's repo).

    The benchmarks stay in bench/, outside the package: they need torch and time the
    repository's own scripts in fresh processes, and `make bench` runs them from there.
    """
    return Path(__file__).resolve().parents[1] / "bench" / "run.py"


def _cmd_bench(args):
    script = bench_script()
    if not script.is_file():
        raise UsageError(f"the benchmark table is bench/run.py of a source checkout, and there "
                         f"is none at {script}: clone graphc and `make venv` (pip install -e .)")
    import runpy

    saved_argv, sys.argv = sys.argv, [str(script), *args.bench_args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    finally:
        sys.argv = saved_argv
    return 0


def _add_bench(commands):
    bench = commands.add_parser(
        "bench", add_help=False, help="measure the benchmark table (bench/run.py; "
        "graphc bench --help for its options)",
        description="Run bench/run.py of this source checkout; its options pass through.")
    bench.set_defaults(run=_cmd_bench)


def _add_serve(commands):
    serve = commands.add_parser(
        "serve", help="serve an export over TensorFlow Serving's REST API",
        description="Serve an export (fn.export / model.export) at /v1/models/NAME: status, "
                    "metadata and predict, as TensorFlow Serving's REST API. Needs "
                    "graphc[serve]. SIGTERM finishes the requests in flight, then exits.")
    serve.add_argument("path", metavar="PATH", help="the export folder")
    serve.add_argument("--name", default=None, help="model name in URLs (default: the export's)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8501, help="port (default 8501; 0: any)")
    serve.add_argument("--device", default=None, help="device index or name substring")
    serve.add_argument("--no-batching", action="store_true",
                       help="run each request on its own, not batched with concurrent ones")
    serve.add_argument("--max-delay-ms", type=float, default=2.0,
                       help="how long a batch waits for more rows (default 2 ms)")
    serve.add_argument("--max-body-mb", type=float, default=32.0,
                       help="largest request body accepted, in MiB (default 32)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(run=_cmd_serve)


def _cmd_serve(args):
    from graphc.serve import main_serve

    return main_serve(args)


def build_parser():
    parser = _Parser(
        prog="graphc",
        description="graphc: a static computation-graph compiler for OpenCL devices.",
    )
    parser.add_argument("--version", action="version", version=f"graphc {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    devices = commands.add_parser(
        "devices", help="list every OpenCL device of every platform"
    )
    devices.set_defaults(run=_cmd_devices)
    _add_train(commands)
    _add_dump(commands)
    _add_tune(commands)
    _add_bench(commands)
    _add_serve(commands)
    return parser


def _fail(args, message: str) -> int:
    print(f"graphc {args.command}: error: {one_line(message)}", file=sys.stderr)
    return USAGE_STATUS


def main(argv=None):
    from graphc.errors import GraphcError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = extra            # bench/run.py parses its own options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except (UsageError, GraphcError) as error:
        return _fail(args, str(error))
    except EXPECTED_OS_ERRORS as error:
        return _fail(args, _os_error_text(error))
