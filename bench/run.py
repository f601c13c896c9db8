"""`make bench`: one Markdown table of graphc against numpy and torch, measured in one run.

    python bench/run.py [--only sgemm,reduce,mlp,lenet,lstm,lstm_primitives,vit,neighbours,
                        scaling,onnx] [--repeats 30] [--starts 3] [--torch-threads 2]
                        [--no-torch-compile] [--scaling-repeats 10] [--quick-scaling]
    python bench/run.py --only serve       bench/serve.py's load test of `graphc serve`

Rows: SGEMM at 256 to 4096, transposed and non-square (GFLOP/s of bench/gemm.py's kernel
and numpy's `a @ b`, wall time of each, timed in alternating turns), float32 sums (GB/s of
the input against numpy's sum, with graphc's relative error to a float64 sum;
bench/reduce.py), and the MLP, LeNet-5, LSTM (the layer, and written from primitives) and
ViT training steps (samples/s, medians of interleaved graphc/numpy/torch eager/torch.compile
steps; bench/mlp.py, lenet.py, lstm.py, lstm_primitives.py, vit.py; the ViT has no numpy
step and no torch.compile column), with graphc's host overhead per step (wall time the
device was not busy with the step's commands; Function.profile's StepTiming). Cold start: a
fresh process with empty GRAPHC_CACHE_DIR and POCL_CACHE_DIR, timed from graph building to
the end of the first step (imports excluded); warm: a second fresh process on the caches
the cold one left; medians over --starts pairs. Then numpy's GEMM right after a graphc step
against its speed alone (bench/neighbours.py), bench/warm_start.py's MLP report (which also
times the imports, and lists program-cache hits), and the cost curves (bench/scaling.py:
sweeps of batch, width and sequence length against torch eager, plotted to
bench/scaling.png; forward latency at batch 1 and throughput at batch 256). Each goal of the
performance issues is printed as met / not met with its figure.
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
import lstm_primitives  # noqa: E402
import mlp  # noqa: E402
import neighbours  # noqa: E402
import reduce  # noqa: E402
import vit  # noqa: E402

WORKLOADS = {"mlp": mlp, "lenet": lenet, "lstm": lstm, "lstm_primitives": lstm_primitives,
             "vit": vit}
TORCH_COMPILED = ("mlp", "lenet", "lstm", "lstm_primitives")     # torch.compile column
# (size, layout): square sizes, then transposed operands and non-square shapes (MxNxK)
SGEMM_CASES = (("256", "NN"), ("512", "NN"), ("1024", "NN"), ("2048", "NN"), ("4096", "NN"),
               ("1024", "NT"), ("1024", "TN"), ("128x512x784", "NN"), ("784x512x128", "TN"),
               ("4096x256x1024", "NN"))
SGEMM_GOAL = 0.90                    # of numpy's GFLOP/s
SUM_ERROR_GOAL = 1e-6                # float32 sums, relative to float64
WARM_GOAL = 0.5                      # seconds, every workload
HOST_GOAL_MS = 0.2                   # host overhead per MLP step
NEIGHBOUR_GOAL = 0.9                 # numpy's GEMM right after a graphc step / alone


@dataclass(frozen=True)
class StepGoals:
    """A training step's goals: graphc/torch eager and graphc/torch.compile samples/s, cold
    first step, kernels per step."""

    torch_ratio: float
    compiled_ratio: float | None
    cold_seconds: float
    kernels: int


STEP_GOALS = {"mlp": StepGoals(1.2, 1.0, 1.5, 11), "lenet": StepGoals(1.2, 1.0, 2.5, 24),
              "lstm": StepGoals(1.2, 1.0, 3.0, 92),
              "lstm_primitives": StepGoals(1.2, 1.0, 3.0, 92),
              "vit": StepGoals(1.0, None, 10.0, 150)}


@dataclass
class Row:
    """One line of the table."""

    name: str
    unit: str
    graphc: float
    numpy: float | None
    torch: float | None = None
    compiled: float | None = None                   # torch.compile
    kernels: int | None = None
    host_ms: float | None = None                    # graphc's host overhead per step
    starts: dict = field(default_factory=dict)      # {"cold"|"warm": {"compile", "first_step"}}
    best: dict = field(default_factory=dict)        # each implementation's fastest turn
    note: str = ""

    def best_ratio(self, other: str) -> float | None:
        """graphc / `other` of the fastest turns, or None when `other` did not run."""
        key = "torch.compile" if other == "compiled" else other
        return self.best["graphc"] / self.best[key] if key in self.best else None


# ---- measuring ----

def sgemm_rows(repeats: int) -> list[Row]:
    """GFLOP/s of graphc's GEMM kernel and numpy at each case, with bench/gemm.py's parts."""
    import gemm
    from graphc.runtime import select_device
    device = select_device()
    info = gemm.device_info_from(device)
    info = gemm.DeviceInfo(**{**info.__dict__, "tuning": gemm.parse_tuning("")})
    with warnings.catch_warnings():     # pyopencl: gemm.py looks its kernel up by name
        warnings.filterwarnings("ignore", message=".*retrieved more than once")
        return [sgemm_row(gemm, size, trans, repeats, device, info)
                for size, trans in SGEMM_CASES]


def sgemm_row(gemm, size: str, trans: str, repeats: int, device, info) -> Row:
    """One case: graphc's kernel (wall time of launch + wait) against numpy's `a @ b`.

    Timed in turns (common.interleaved_rates), not alternating call by call as
    `gemm.measure` does: OpenBLAS's threads spin after each product and took up to half of
    the cores from the kernel launched right after it.
    """
    m, n, k = gemm.parse_size(size)
    a, b = gemm.operands((m, n, k), "float", trans)
    spec = gemm.GemmSpec(1, m, n, k, "float", trans[0] == "T", trans[1] == "T", 0, 0)
    ours = gemm.GraphcGemm(device, spec, info, a, b)
    reference = gemm.numpy_product(a, b, trans)
    rates = common.interleaved_rates({"graphc": ours.run, "numpy": reference},
                                     spec.flops * 1e-9, repeats)
    expected = reference()
    error = common.relative_error(ours.result(a.dtype), expected)
    name = f"SGEMM {size}" + ("" if trans == "NN" else f" {trans}")
    return Row(name, "GFLOP/s", rates["graphc"], rates["numpy"], kernels=1,
               best=rates["best"],
               note=f"rel.err {error:.0e}, build {ours.build_seconds:.2f} s")


def reduce_rows(repeats: int) -> list[Row]:
    """GB/s of graphc's float32 sums and numpy's (bench/reduce.py), one row per form."""
    return [Row(title, "GB/s", r["graphc"], r["numpy"], kernels=r["kernels"], best=r["best"],
                note=f"rel.err {r['error']:.0e}")
            for title, r in reduce.rows(repeats)]


def step_row(name: str, repeats: int, pairs: int, torch_compile: bool) -> Row:
    """Samples/s, kernels per step, host overhead and cold/warm starts of one training step."""
    workload = WORKLOADS[name]
    result = common.measure(workload, repeats, torch_compile and name in TORCH_COMPILED)
    starts = common.cold_and_warm(HERE / f"{name}.py", pairs) if pairs else {}
    note = f"loss vs numpy {result['loss_error']:.0e}"
    if "numpy" not in result:
        note = f"loss vs torch {result['loss_error']:.0e}"
    if "torch.compile first s" in result:
        note += f"; torch.compile's first call {result['torch.compile first s']:.1f} s"
    return Row(workload.TITLE, "samples/s", result["graphc"], result.get("numpy"),
               result.get("torch"), result.get("torch.compile"), result["kernels"],
               result["host ms"], starts, result["best"], note)


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
    lines = ["| workload | unit | graphc | numpy | torch | torch.compile | graphc/numpy"
             " | graphc/torch | graphc/torch.compile | kernels/step | host ms/step"
             " | first step s, cold / warm | compile s, cold / warm | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        digits = 1 if r.unit in ("GFLOP/s", "GB/s") else 0
        lines.append(f"| {r.name} | {r.unit} | {fmt(r.graphc, digits)} | {fmt(r.numpy, digits)}"
                     f" | {fmt(r.torch, digits)} | {fmt(r.compiled, digits)}"
                     f" | {ratio_cell(r, 'numpy')} | {ratio_cell(r, 'torch')}"
                     f" | {ratio_cell(r, 'compiled')} | {fmt(r.kernels)}"
                     f" | {fmt(r.host_ms, 3)}"
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


SHORT_NAMES = {"lenet": "LeNet", "vit": "ViT", "lstm_primitives": "LSTM from primitives"}


def speed_goal(short: str, row: Row, other: str, label: str, target: float) -> str:
    """graphc's samples/s against `other` (a Row field) at `target` times its speed."""
    theirs = getattr(row, other)
    met = None if theirs is None else row.graphc >= target * theirs
    figure = (f"{label} not measured" if theirs is None else
              f"{row.graphc / theirs:.2f}× {label}; fastest turns {row.best_ratio(other):.2f}×")
    return goal(f"{short} samples/s ≥ {target:g}× {label}", met, figure)


def step_goals(name: str, row: Row) -> list[str]:
    """A training step's speed, host overhead, start-up and kernel-count goals."""
    g, short = STEP_GOALS[name], SHORT_NAMES.get(name, name.upper())
    lines = [speed_goal(short, row, "torch", "torch eager", g.torch_ratio)]
    if g.compiled_ratio is not None:
        lines.append(speed_goal(short, row, "compiled", "torch.compile", g.compiled_ratio))
    if name == "mlp":
        lines.append(goal(f"MLP host overhead per step ≤ {HOST_GOAL_MS} ms",
                          row.host_ms <= HOST_GOAL_MS, f"{row.host_ms:.3f} ms"))
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

DEFAULT_ONLY = ("sgemm,reduce,mlp,lenet,lstm,lstm_primitives,vit,onnx,neighbours,scaling,"
                "vulkan")
EXTRAS = ("sgemm", "reduce", "serve", "onnx", "neighbours", "scaling", "vulkan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """--only, --repeats, --starts, --torch-threads, --no-torch-compile, --scaling-repeats."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=DEFAULT_ONLY,
                        help=f"comma-separated subset of {DEFAULT_ONLY},serve")
    parser.add_argument("--repeats", type=int, default=30,
                        help="timed steps (products) per implementation")
    parser.add_argument("--starts", type=int, default=3,
                        help="cold/warm process pairs per workload (0: skip)")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--no-torch-compile", action="store_true",
                        help="leave out the torch.compile column (its first calls take ~15 s)")
    parser.add_argument("--scaling-repeats", type=int, default=10,
                        help="timed steps per implementation at each point of the sweep")
    parser.add_argument("--quick-scaling", action="store_true",
                        help="three points per curve of the sweep")
    args = parser.parse_args(argv)
    args.only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(args.only) - {*EXTRAS, *WORKLOADS}
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    return args


def neighbour_goal(repeats: int) -> tuple[str, str]:
    """bench/neighbours.py's paragraph and its goal line."""
    result = neighbours.measure(max(repeats, 30))
    return neighbours.describe(result), goal(
        f"numpy's GEMM right after a graphc step ≥ {NEIGHBOUR_GOAL:.0%} of its speed alone",
        result["ratio"] >= NEIGHBOUR_GOAL, f"{result['ratio']:.2f}")


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
            row = step_row(name, args.repeats, args.starts, not args.no_torch_compile)
            rows.append(row)
            goals += step_goals(name, row)
    details = []
    if "neighbours" in args.only:
        paragraph, line = neighbour_goal(args.repeats)
        goals.append(line)
        details += ["", paragraph]
    print("\n".join(lines + ([""] + table(rows) if rows else []) + details
                    + (["", "Goals:"] + goals if goals else [])))
    if "onnx" in args.only:
        import onnx_import
        print("\n" + onnx_import.report(list(onnx_import.GOALS) + ["lstm", "transformer"],
                                        args.repeats, args.torch_threads))
    if "mlp" in args.only and args.starts:
        print("\nbench/warm_start.py (MLP; its times include importing graphc):")
        print(warm_start_report(args.starts))
    if "scaling" in args.only:
        import scaling
        print("\nCost curves (bench/scaling.py; graphc vs torch eager, training samples/s):")
        training, inference = scaling.run(args.scaling_repeats, args.quick_scaling,
                                          HERE / "scaling.png")
        print("\n".join(training + ["", "Inference (forward only):"] + inference))
        print(f"plot: {HERE / 'scaling.png'}")
    if "vulkan" in args.only:
        import vulkan_column
        print("\nThe Vulkan column (bench/vulkan_column.py):")
        print("\n".join(vulkan_column.report(max(2, min(args.repeats, 5)), min(args.starts, 1))))
    if "serve" in args.only:
        import serve
        print(f"\n{serve.TITLE} (bench/serve.py):")
        serve.main([])
    print(f"\nload average at end {os.getloadavg()[0]:.1f}; whole run"
          f" {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
