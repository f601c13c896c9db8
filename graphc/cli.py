"""The `graphc` command line."""

import argparse
import sys


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

    from graphc.data import DataError

    module = importlib.import_module(f"graphc.models.{args.model}")
    try:
        args = common.resolve_args(args, module.DEFAULTS)
        with common.ranks_of(args):
            module.train(args)
    except DataError as error:
        print(f"graphc train: {error}", file=sys.stderr)
        return 2
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
    from graphc.report import dump_script

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


def _cmd_tune(args):
    from graphc.codegen.gemm import GemmSpec
    from graphc.runtime import select_device
    from graphc.tune import tune_gemm

    device = select_device(args.device)
    for text in args.gemm:
        m, n, k = (int(d) for d in text.split("x")) if "x" in text else (int(text),) * 3
        trials = tune_gemm(device, GemmSpec(1, m, n, k, "float", False, False, 0, 0))
        for trial in trials:
            result = f"{trial.seconds * 1e3:8.3f} ms" if trial.rejected is None \
                else f"rejected: {trial.rejected}"
            print(f"{m}x{n}x{k}  {str(trial.tuning):<36} {result}")
    if args.script:
        import os
        import runpy
        import sys
        os.environ["GRAPHC_TUNE"] = "1"
        sys.argv = [args.script]
        runpy.run_path(args.script, run_name="__main__")
    return 0


def _add_tune(commands):
    tune = commands.add_parser(
        "tune", help="autotune GEMM kernels for this device and cache the winners",
        description="Time candidate GEMM tilings, reject any whose result is wrong, and cache "
                    "the fastest per device and driver. With SCRIPT, run it with "
                    "GRAPHC_TUNE=1 so every GEMM shape it compiles is tuned.")
    tune.add_argument("script", nargs="?", metavar="SCRIPT.py")
    tune.add_argument("--gemm", action="append", default=[], metavar="MxNxK",
                      help="a float32 GEMM shape to tune (repeatable; N alone means NxNxN)")
    tune.add_argument("--device", default=None, help="device index or name substring")
    tune.set_defaults(run=_cmd_tune)


def build_parser():
    parser = argparse.ArgumentParser(
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
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    return args.run(args)
