"""The Vulkan column: MLP, LeNet and LSTM training steps on the first Vulkan device (Mesa's
lavapipe here) beside the default OpenCL device (PoCL) in the same run, the dispatch cost per
kernel, and the Vulkan MLP's cold and warm first step (empty caches, then the SPIR-V and
pipeline caches that run left).

    python bench/vulkan_column.py [--repeats 5] [--starts 1]

(Not bench/vulkan.py: that name would hide the `vulkan` package on bench/'s path.)

The issue's goals on this CPU: dispatch <= 40 us a kernel, warm start <= 5% of cold, an
MLP step on lavapipe <= 3x PoCL's.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

WORKLOADS = ("mlp", "lenet", "lstm")
DISPATCH_KERNELS = 64


def on_device(spec: str | None):
    """Set $GRAPHC_DEVICE (None: unset) for what is compiled next."""
    if spec is None:
        os.environ.pop("GRAPHC_DEVICE", None)
    else:
        os.environ["GRAPHC_DEVICE"] = spec


def step_rate(name: str, repeats: int) -> dict:
    """Samples/s (median of `repeats` timed steps after two warm-up steps) and kernels/step
    of one workload's training step on the current $GRAPHC_DEVICE."""
    import importlib
    workload = importlib.import_module(name)
    params, x, y = workload.init()
    step = common.graphc_step(workload, [p.copy() for p in params])
    step(x, y)
    step(x, y)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {"samples/s": workload.BATCH / seconds, "step ms": 1e3 * seconds,
            "kernels": step.kernel_count, "device": step.device.name}


def dispatch_cost(repeats: int = 20) -> float:
    """Seconds per extra kernel: a call of DISPATCH_KERNELS dependent tiny kernels against
    a call of one, on the current device."""
    import graphc as gc

    def chain(n):
        x = gc.placeholder((64,), "float32", name="x")
        y = x
        for _ in range(n):
            y = gc.sum(y * 1.0001, axis=0) + x      # a reduction: a kernel of its own
        fn = gc.function([x], [y])
        return fn, fn.kernel_count

    feed = np.ones(64, np.float32)
    timings = {}
    for n in (1, DISPATCH_KERNELS):
        fn, kernels = chain(n)
        fn(feed)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn(feed)
            times.append(time.perf_counter() - started)
        timings[kernels] = statistics.median(times)
    (k1, t1), (k2, t2) = sorted(timings.items())
    return (t2 - t1) / max(k2 - k1, 1)


def report(repeats: int, starts: int) -> list[str]:
    """The Vulkan section's lines (empty with a note when there is no Vulkan device)."""
    from graphc.runtime import devices
    if not any(d.backend == "vulkan" for d in devices()):
        return ["Vulkan: no Vulkan device (apt-get install libvulkan1 mesa-vulkan-drivers "
                "glslang-tools; pip install graphc[vulkan])"]
    saved = os.environ.get("GRAPHC_DEVICE")
    lines, goals = [], []
    try:
        rows = {}
        for name in WORKLOADS:
            rows[name] = {}
            for label, spec in (("opencl", saved), ("vulkan", "vulkan")):
                on_device(spec)
                rows[name][label] = step_rate(name, repeats)
        on_device(saved)
        cl_dispatch = dispatch_cost()
        on_device("vulkan")
        vk_dispatch = dispatch_cost()
        vk = rows["mlp"]["vulkan"]
        lines.append(f"Vulkan ({vk['device']}) beside OpenCL ({rows['mlp']['opencl']['device']}),"
                     f" {repeats} timed steps each (medians):")
        lines.append(f"  {'workload':<8} {'OpenCL samples/s':>17} {'Vulkan samples/s':>17} "
                     f"{'Vulkan/OpenCL step':>19} {'kernels CL / VK':>16}")
        for name, pair in rows.items():
            cl, vk = pair["opencl"], pair["vulkan"]
            lines.append(f"  {name:<8} {cl['samples/s']:>17,.0f} {vk['samples/s']:>17,.1f} "
                         f"{vk['step ms'] / cl['step ms']:>18.1f}x "
                         f"{cl['kernels']:>8} / {vk['kernels']:<6}")
        lines.append(f"  dispatch cost per kernel: Vulkan {1e6 * vk_dispatch:.1f} us, "
                     f"OpenCL {1e6 * cl_dispatch:.1f} us")
        ratio = rows["mlp"]["vulkan"]["step ms"] / rows["mlp"]["opencl"]["step ms"]
        goals.append(_goal("Vulkan dispatch <= 40 us per kernel", vk_dispatch <= 40e-6,
                           f"{1e6 * vk_dispatch:.1f} us"))
        goals.append(_goal("MLP step on Vulkan <= 3x OpenCL's", ratio <= 3, f"{ratio:.1f}x"))
        if starts:
            on_device("vulkan")
            first = common.cold_and_warm(HERE / "mlp.py", starts)
            cold, warm = first["cold"]["first_step"], first["warm"]["first_step"]
            cold_c, warm_c = first["cold"]["compile"], first["warm"]["compile"]
            lines.append(f"  Vulkan MLP first step: cold {cold:.2f} s (compile {cold_c:.2f} s),"
                         f" warm {warm:.2f} s (compile {warm_c:.2f} s)")
            goals.append(_goal("Vulkan warm compile <= 5% of cold", warm_c <= 0.05 * cold_c,
                               f"{100 * warm_c / cold_c:.1f}%"))
    finally:
        on_device(saved)
    return lines + ["  Goals:"] + ["  " + g for g in goals]


def _goal(text: str, met: bool, figure: str) -> str:
    return f"[{'met' if met else 'MISSED'}] {text}: {figure}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--starts", type=int, default=1)
    args = parser.parse_args(argv)
    print("\n".join(report(args.repeats, args.starts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
