"""The `graphc` command line."""

import argparse


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
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    return args.run(args)
