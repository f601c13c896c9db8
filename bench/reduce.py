"""Reductions: GB/s of graphc's sum kernels against numpy, and their accuracy.

    python bench/reduce.py [--repeats 30] [--plain]

Rows (float32, the input a device-resident variable, so a call times the kernels, not a
copy to the device): the sum of 10^7 elements (split into partial sums, then their sum),
a row sum (4096 x 2048 over axis 1: a loop per output), a column sum (2048 x 4096 over
axis 0: 16 outputs per work item), and a few long rows (16 x 2^18 over axis 1: split).
GB/s = bytes of the input / median call time. The note gives graphc's relative error
against a float64 sum of the same data. `--plain` also times, in the same turns, the same
sums added up without compensation (one float32 accumulator per output, as before the
accurate sums of codegen/loops.py): the cost of the accuracy, measured under the same load.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402


@dataclass(frozen=True)
class Case:
    """One reduction: its title, input shape and axis."""

    title: str
    shape: tuple[int, ...]
    axis: int | None


CASES = (Case("sum of 10^7", (10_000_000,), None),
         Case("row sum 4096x2048, axis 1", (4096, 2048), 1),
         Case("column sum 2048x4096, axis 0", (2048, 4096), 0),
         Case("long rows 16x2^18, axis 1", (16, 1 << 18), 1))


def compiled_sum(data: np.ndarray, axis, plain: bool = False):
    """The compiled graphc sum of the device-resident `data` over `axis` (no inputs);
    `plain`: without compensated blocks."""
    import graphc as gc
    from graphc.codegen import loop_kernels
    x = gc.variable(data, name="x")
    compensated = loop_kernels._compensated
    if plain:
        loop_kernels._compensated = lambda t: False
    try:
        return gc.function([], [gc.sum(x, axis=axis)], name="reduce")
    finally:
        loop_kernels._compensated = compensated


def measure(case: Case, repeats: int, plain: bool = False) -> dict:
    """GB/s of graphc, numpy (and the plain sums), medians and fastest turns, and the
    relative errors of graphc's (and the plain) sums."""
    data = np.random.default_rng(0).random(case.shape, dtype=np.float32)
    steps = {"graphc": compiled_sum(data, case.axis),
             "numpy": lambda: data.sum(case.axis)}
    if plain:
        steps["plain"] = compiled_sum(data, case.axis, plain=True)
    rates = common.interleaved_rates(steps, data.nbytes * 1e-9, repeats)
    exact = data.astype(np.float64).sum(case.axis)
    errors = {name: common.relative_error(steps[name]()[0], exact)
              for name in ("graphc", "plain") if name in steps}
    return {**{name: rates[name] for name in steps}, "best": rates["best"],
            "error": errors["graphc"], "errors": errors,
            "kernels": steps["graphc"].kernel_count}


def rows(repeats: int, plain: bool = False) -> list:
    """One (title, measurement) per case."""
    return [(case.title, measure(case, repeats, plain)) for case in CASES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--plain", action="store_true",
                        help="also time the sums without compensation")
    args = parser.parse_args(argv)
    extra = " plain GB/s | graphc/plain | plain rel. error |" if args.plain else ""
    print(f"| reduction | graphc GB/s | numpy GB/s | graphc/numpy | kernels | rel. error |{extra}")
    print("|---|---|---|---|---|---|" + "---|---|---|" * args.plain)
    for title, r in rows(args.repeats, args.plain):
        line = (f"| {title} | {r['graphc']:.1f} ({r['best']['graphc']:.1f}) | {r['numpy']:.1f} "
                f"| {r['graphc'] / r['numpy']:.2f} | {r['kernels']} | {r['error']:.1e} |")
        if args.plain:
            line += (f" {r['plain']:.1f} ({r['best']['plain']:.1f}) | {r['graphc'] / r['plain']:.2f}"
                     f" ({r['best']['graphc'] / r['best']['plain']:.2f}) |"
                     f" {r['errors']['plain']:.1e} |")
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
