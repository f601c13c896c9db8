"""`make bench`: one Markdown table of graphc against numpy and torch, measured in one run.

    python bench/run.py [--only sgemm,reduce,mlp,lenet,lstm,vit,onnx] [--repeats 30]
                        [--starts 3] [--torch-threads 2]
    python bench/run.py --only serve       bench/serve.py's load test of `graphc serve`

Rows: SGEMM 512/1024/2048 (GFLOP/s of bench/gemm.py's kernel and numpy's `a @ b`, wall
time of each, timed in alternating turns), float32 sums (GB/s of the input against numpy's
sum, with graphc's relative error to a float64 sum; bench/reduce.py), and the MLP, LeNet-5,
LSTM and ViT training steps (samples/s, medians of interleaved graphc/numpy/torch steps;
bench/mlp.py, lenet.py, lstm.py, vit.py; the ViT has no numpy step). Cold start: a fresh
process with empty GRAPHC_CACHE_DIR and POCL_CACHE_DIR, timed
from graph building to the end of the first step (imports excluded); warm: a second fresh
process on the caches the cold one left; medians over --starts pairs. bench/warm_start.py's
MLP report (which also times the imports, and lists program-cache hits) follows the table.
Each goal of the "Fast kernels" issue is printed as met / not met with its figure.
`onnx`: inference of torch models imported through graphc.onnx against onnxruntime
(bench/onnx_import.py), its own table after the main one.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import common  # noqa: E402
import lenet  # noqa: E402
import lstm  # noqa: E402
import mlp  # noqa: E402
import reduce  # noqa: E402
import vit  # noqa: E402

WORKLOADS = {"mlp": mlp, "lenet": lenet, "lstm": lstm, "vit": vit}
SGEMM_SIZES = ("512", "1024", "2048")
SGEMM_GOAL = 0.90                    # of numpy's GFLOP/s
SUM_ERROR_GOAL = 1e-6                # float32 sums, relative to float64
WARM_GOAL = 0.5                      # seconds, every workload


@dataclass(frozen=True)
class StepGoals:
    """A training step's goals: graphc/torch samples/s, cold first step, kernels per step."""

    torch_ratio: float
    cold_seconds: float
    kernels: int


STEP_GOALS = {"mlp": StepGoals(1.0, 3.0, 13), "lenet": StepGoals(1.0, 5.0, 25),
              "lstm": StepGoals(0.5, 10.0, 93), "vit": StepGoals(1.0, 10.0, 150)}


@dataclass
class Row:
    """One line of the table."""

    name: str
    unit: str
    graphc: float
    numpy: float | None
    torch: float | None = None
    kernels: int | None = None
    starts: dict = field(default_factory=dict)      # {"cold"|"warm": {"compile", "first_step"}}
    best: dict = field(default_factory=dict)        # each implementation's fastest turn
    note: str = ""

    def best_ratio(self, other: str) -> float | None:
        """graphc / `other` of the fastest turns, or None when `other` did not run."""
        return self.best["graphc"] / self.best[other] if other in self.best else None


# ---- measuring ----

def sgemm_rows(repeats: int) -> list[Row]:
    """GFLOP/s of graphc's GEMM kernel and numpy at each size, with bench/gemm.py's parts."""
    import gemm
    from graphc.runtime import select_device
    device = select_device()
    info = gemm.device_info_from(device)
    info = gemm.DeviceInfo(**{**info.__dict__, "tuning": gemm.parse_tuning("")})
    with warnings.catch_warnings():     # pyopencl: gemm.py looks its kernel up by name
        warnings.filterwarnings("ignore", message=".*retrieved more than once")
        return [sgemm_row(gemm, size, repeats, device, info) for size in SGEMM_SIZES]


def sgemm_row(gemm, size: str, repeats: int, device, info) -> Row:
    """One size: graphc's kernel (wall time of launch + wait) against numpy's `a @ b`.

    Timed in turns (common.interleaved_rates), not alternating call by call as
    `gemm.measure` does: OpenBLAS's threads spin after each product and took up to half of
    the cores from the kernel launched right after it.
    """
    m, n, k = gemm.parse_size(size)
    a, b = gemm.operands((m, n, k), "float", "NN")
    spec = gemm.GemmSpec(1, m, n, k, "float", False, False, 0, 0)
    ours = gemm.GraphcGemm(device, spec, info, a, b)
    reference = gemm.numpy_product(a, b, "NN")
    rates = common.interleaved_rates({"graphc": ours.run, "numpy": reference},
                                     spec.flops * 1e-9, repeats)
    expected = reference()
    error = common.relative_error(ours.result(a.dtype), expected)
    return Row(f"SGEMM {size}", "GFLOP/s", rates["graphc"], rates["numpy"], kernels=1,
               best=rates["best"],
               note=f"rel.err {error:.0e}, build {ours.build_seconds:.2f} s")


def reduce_rows(repeats: int) -> list[Row]:
    """GB/s of graphc's float32 sums and numpy's (bench/reduce.py), one row per form."""
    return [Row(title, "GB/s", r["graphc"], r["numpy"], kernels=r["kernels"], best=r["best"],
                note=f"rel.err {r['error']:.0e}")
            for title, r in reduce.rows(repeats)]


def step_row(name: str, repeats: int, pairs: int) -> Row:
    """Samples/s, kernels per step and cold/warm starts of one training step."""
    workload = WORKLOADS[name]
    result = common.measure(workload, repeats)
    starts = common.cold_and_warm(HERE / f"{name}.py", pairs) if pairs else {}
    note = f"loss vs numpy {result['loss_error']:.0e}"
    if "numpy" not in result:
        note = f"loss vs torch {result['loss_error']:.0e}"
    return Row(workload.TITLE, "samples/s", result["graphc"], result.get("numpy"),
               result.get("torch"), result["kernels"], starts, result["best"], note)


def warm_start_report(pairs: int) -> str:
    """bench/warm_start.py's MLP cold/warm report, captured."""
    import warm_start
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        warm_start.report(warm_start.measure(pairs, True), True)
    return out.getvalue().rstrip()


# ---- printing ----

def fmt(value: float | None, digits: int = 0) -> str:
    """A number with thousands separators, or a dash."""
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    """a / b to two places, or a dash."""
    return "–" if a is None or not b else f"{a / b:.2f}"


def ratio_cell(row: Row, other: str) -> str:
    """'median ratio (fastest turns' ratio)' of graphc to `other`, or a dash."""
    median = ratio(row.graphc, getattr(row, other))
    best = row.best_ratio(other)
    return median if best is None else f"{median} ({best:.2f})"


def starts_text(row: Row, key: str) -> str:
    """'cold / warm' seconds of one start measurement, or a dash."""
    if not row.starts:
        return "–"
    return f"{row.starts['cold'][key]:.2f} / {row.starts['warm'][key]:.2f}"


def table(rows: list[Row]) -> list[str]:
    """The Markdown table."""
    lines = ["| workload | unit | graphc | numpy | torch | graphc/numpy | graphc/torch"
             " | kernels/step | first step s, cold / warm | compile s, cold / warm | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        digits = 1 if r.unit in ("GFLOP/s", "GB/s") else 0
        lines.append(f"| {r.name} | {r.unit} | {fmt(r.graphc, digits)} | {fmt(r.numpy, digits)}"
                     f" | {fmt(r.torch, digits)} | {ratio_cell(r, 'numpy')}"
                     f" | {ratio_cell(r, 'torch')} | {fmt(r.kernels)}"
                     f" | {starts_text(r, 'first_step')} | {starts_text(r, 'compile')}"
                     f" | {r.note} |")
    return lines


def goal(text: str, met: bool | None, figure: str) -> str:
    """One goal line: met / not met (or not measured) with its figure."""
    verdict = "not measured" if met is None else ("met" if met else "not met")
    return f"- {text}: **{verdict}** ({figure})"


def sgemm_goals(rows: list[Row]) -> list[str]:
    """SGEMM at each size >= 90% of numpy."""
    return [goal(f"{r.name} ≥ {SGEMM_GOAL:.0%} of numpy", r.graphc >= SGEMM_GOAL * r.numpy,
                 f"{r.graphc / r.numpy:.0%}; fastest turns {r.best_ratio('numpy'):.0%}")
            for r in rows]


def reduce_goals(rows: list[Row]) -> list[str]:
    """Every float32 sum within SUM_ERROR_GOAL of float64."""
    worst = max(float(r.note.split()[-1]) for r in rows)
    return [goal(f"float32 sums within {SUM_ERROR_GOAL:.0e} of float64", worst <= SUM_ERROR_GOAL,
                 f"worst rel.err {worst:.0e}")]


def step_goals(name: str, row: Row) -> list[str]:
    """A training step's speed, start-up and kernel-count goals."""
    g, short = STEP_GOALS[name], {"lenet": "LeNet", "vit": "ViT"}.get(name, name.upper())
    lines = []
    target = "torch eager" if g.torch_ratio == 1 else f"{g.torch_ratio:.0%} of torch eager"
    speed = None if row.torch is None else row.graphc >= g.torch_ratio * row.torch
    lines.append(goal(f"{short} samples/s ≥ {target}", speed,
                      "torch not importable" if row.torch is None
                      else f"{row.graphc / row.torch:.2f}× torch; fastest turns"
                           f" {row.best_ratio('torch'):.2f}×"))
    if row.starts:
        cold, warm = row.starts["cold"]["first_step"], row.starts["warm"]["first_step"]
        lines.append(goal(f"{short} cold first step ≤ {g.cold_seconds:g} s",
                          cold <= g.cold_seconds, f"{cold:.2f} s"))
        lines.append(goal(f"{short} warm first step ≤ {WARM_GOAL:g} s", warm <= WARM_GOAL,
                          f"{warm:.2f} s"))
    lines.append(goal(f"{short} kernels/step ≤ {g.kernels}", row.kernels <= g.kernels,
                      f"{row.kernels}"))
    return lines


def header(repeats: int, pairs: int, torch_threads: int) -> list[str]:
    """Device, driver, library versions and the machine's load."""
    from graphc.runtime import select_device
    device = select_device()
    common.TORCH_THREADS = torch_threads
    torch = common.import_torch()
    torch_text = ("not importable" if torch is None
                  else f"{torch.__version__} eager, {torch.get_num_threads()} threads")
    return [f"device: {device.name} — {device.platform_name}, {device.platform_version}",
            f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs;"
            f" numpy {np.__version__}; torch {torch_text}",
            f"{repeats} interleaved steps per implementation in 5 turns: medians, and in"
            f" parentheses the ratio of the fastest turns; {pairs} cold/warm pairs;"
            f" load average at start {os.getloadavg()[0]:.1f}"]


# ---- main ----

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """--only, --repeats, --starts, --torch-threads."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="sgemm,reduce,mlp,lenet,lstm,vit,onnx",
                        help="comma-separated subset of sgemm,reduce,mlp,lenet,lstm,vit,onnx,"
                             "serve")
    parser.add_argument("--repeats", type=int, default=30,
                        help="timed steps (products) per implementation")
    parser.add_argument("--starts", type=int, default=3,
                        help="cold/warm process pairs per workload (0: skip)")
    parser.add_argument("--torch-threads", type=int, default=2)
    args = parser.parse_args(argv)
    args.only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(args.only) - {"sgemm", "reduce", "serve", "onnx", *WORKLOADS}
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure the selected workloads, print the table, the goals and the details."""
    args = parse_args(argv)
    started = time.perf_counter()
    lines = header(args.repeats, args.starts, args.torch_threads)
    rows, goals = [], []
    if "sgemm" in args.only:
        sgemm = sgemm_rows(args.repeats)
        rows += sgemm
        goals += sgemm_goals(sgemm)
    if "reduce" in args.only:
        sums = reduce_rows(args.repeats)
        rows += sums
        goals += reduce_goals(sums)
    for name in WORKLOADS:
        if name in args.only:
            row = step_row(name, args.repeats, args.starts)
            rows.append(row)
            goals += step_goals(name, row)
    print("\n".join(lines + ([""] + table(rows) + ["", "Goals:"] + goals if rows else [])))
    if "onnx" in args.only:
        import onnx_import
        print("\n" + onnx_import.report(list(onnx_import.GOALS) + ["lstm", "transformer"],
                                        args.repeats, args.torch_threads))
    if "mlp" in args.only and args.starts:
        print("\nbench/warm_start.py (MLP; its times include importing graphc):")
        print(warm_start_report(args.starts))
    if "serve" in args.only:
        import serve
        print(f"\n{serve.TITLE} (bench/serve.py):")
        serve.main([])
    print(f"\nload average at end {os.getloadavg()[0]:.1f}; whole run"
          f" {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
