"""SGEMM GFLOP/s of graphc's generated kernel against numpy, measured in the same run.

Usage: python bench/gemm.py [--sizes 512,1024,2048,MxNxK] [--repeats 15] [--dtype float]
                            [--trans NN|NT|TN|TT] [--tune rows=8,mc=128,...] [--idle 0.9]

Kernel time comes from OpenCL profiling events (kernel only); numpy time is the wall time of
`a @ b` (its result buffer reused). The two are run alternately so that a noisy, shared machine
slows both alike (--idle waits for a quiet machine before each repeat); the table shows medians
and the best run of each.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graphc.codegen.gemm import (DeviceInfo, Epilogue, GemmSpec,  # noqa: E402
                                 device_info_from, gemm_kernel)
from graphc.runtime import select_device  # noqa: E402


def parse_tuning(text: str) -> dict[str, int | str]:
    """'rows=8,order=rows' -> {'rows': 8, 'order': 'rows'}."""
    tuning: dict[str, int | str] = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        tuning[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return tuning


def parse_size(text: str) -> tuple[int, int, int]:
    """'512' -> (512, 512, 512); '256x512x1000' -> (256, 512, 1000) as (m, n, k)."""
    dims = [int(d) for d in text.split("x")]
    return (dims[0],) * 3 if len(dims) == 1 else (dims[0], dims[1], dims[2])


def operands(size: tuple[int, int, int], dtype: str,
             trans: str) -> tuple[np.ndarray, np.ndarray]:
    """Random (m, k) and (k, n) operands, stored transposed where `trans` says."""
    m, n, k = size
    rng = np.random.default_rng(0)
    np_dtype = np.float32 if dtype == "float" else np.float64
    a = rng.standard_normal((m, k)).astype(np_dtype)
    b = rng.standard_normal((k, n)).astype(np_dtype)
    return (a.T.copy() if trans[0] == "T" else a), (b.T.copy() if trans[1] == "T" else b)


def numpy_product(a: np.ndarray, b: np.ndarray, trans: str):
    """A closure computing op(a) @ op(b) with numpy into a reused output."""
    left = a.T if trans[0] == "T" else a
    right = b.T if trans[1] == "T" else b
    out = np.empty((left.shape[0], right.shape[1]), a.dtype)
    return lambda: np.matmul(left, right, out=out)


class GraphcGemm:
    """One generated kernel with its buffers on the device, timed by profiling events."""

    def __init__(self, device, spec: GemmSpec, info: DeviceInfo, a: np.ndarray, b: np.ndarray):
        import pyopencl as cl

        self.cl, self.queue = cl, device.queue
        self.kernel = gemm_kernel("bench_gemm", spec, Epilogue(), info)
        start = time.perf_counter()
        program = device.build(self.kernel.source)
        self.build_seconds = time.perf_counter() - start
        flags = cl.mem_flags
        self.buffers = [cl.Buffer(device.context, flags.READ_ONLY | flags.COPY_HOST_PTR,
                                  hostbuf=x) for x in (a, b)]
        self.out = cl.Buffer(device.context, flags.READ_WRITE, spec.m * spec.n * a.itemsize)
        self.entry = getattr(program, "bench_gemm")
        self.entry.set_args(*self.buffers, self.out)
        self.shape = (spec.m, spec.n)

    def run(self) -> float:
        """Seconds of one kernel run."""
        event = self.cl.enqueue_nd_range_kernel(self.queue, self.entry, self.kernel.global_size,
                                                self.kernel.local_size)
        event.wait()
        return (event.profile.end - event.profile.start) * 1e-9

    def result(self, dtype) -> np.ndarray:
        """C, read back."""
        out = np.empty(self.shape, dtype)
        self.cl.enqueue_copy(self.queue, out, self.out)
        return out


def wall_seconds(fn) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def idle_fraction(interval: float = 0.1) -> float:
    """Share of CPU time spent idle machine-wide over `interval` seconds (Linux; else 1)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    try:
        idle0, total0 = sample()
        time.sleep(interval)
        idle1, total1 = sample()
    except OSError:
        return 1.0
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle(threshold: float, timeout: float = 120.0) -> bool:
    """Wait until the machine is at least `threshold` idle; False when it never was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if idle_fraction() >= threshold:
            return True
    return False


def measure(size: str, args: argparse.Namespace, device, info: DeviceInfo) -> dict:
    """Median and best GFLOP/s of graphc and numpy at one size, plus the relative error."""
    m, n, k = parse_size(size)
    a, b = operands((m, n, k), args.dtype, args.trans)
    spec = GemmSpec(1, m, n, k, args.dtype, args.trans[0] == "T", args.trans[1] == "T", 0, 0)
    gemm = GraphcGemm(device, spec, info, a, b)
    reference = numpy_product(a, b, args.trans)
    gemm.run(), reference()  # warm up: first-touch pages, thread pools
    ours, theirs, busy = [], [], 0
    for _ in range(args.repeats):
        busy += args.idle > 0 and not wait_for_idle(args.idle)
        # Best of a burst of 3: the first run after the other library may share the cores
        # with its worker threads, which spin for a while after each call.
        ours.append(min(gemm.run() for _ in range(3)))
        theirs.append(min(wall_seconds(reference) for _ in range(3)))
    expected = reference()
    error = float(np.abs(gemm.result(a.dtype) - expected).max() / np.abs(expected).max())
    gflop = spec.flops * 1e-9
    return dict(n=size, ours=gflop / statistics.median(ours), ours_best=gflop / min(ours),
                numpy=gflop / statistics.median(theirs), numpy_best=gflop / min(theirs),
                error=error, build=gemm.build_seconds, tiles=gemm.kernel.tiles, busy=busy)


def main() -> None:
    """Print the GFLOP/s table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", default="float", choices=("float", "double"))
    parser.add_argument("--trans", default="NN", choices=("NN", "NT", "TN", "TT"))
    parser.add_argument("--tune", default="", help="DeviceInfo.tuning overrides, k=v,...")
    parser.add_argument("--idle", type=float, default=0.0,
                        help="before each repeat wait (up to 2 min) until this share of the "
                             "CPUs is idle, e.g. 0.9 on a shared machine")
    args = parser.parse_args()
    device = select_device()
    info = device_info_from(device)
    info = dataclasses.replace(info, tuning=parse_tuning(args.tune))
    print(f"device: {device.name} ({device.platform_name} {device.platform_version})")
    print(f"{args.dtype} {args.trans}, {args.repeats} repeats of best-of-3 bursts, "
          f"alternating; GFLOP/s median (best)")
    print(f"{'n':>6} {'graphc':>15} {'numpy':>15} {'ratio':>6} {'rel.err':>8} {'build':>6}  tiles")
    for size in args.sizes.split(","):
        r = measure(size, args, device, info)
        print(f"{size:>6} {r['ours']:>7.1f} ({r['ours_best']:>5.1f}) "
              f"{r['numpy']:>7.1f} ({r['numpy_best']:>5.1f}) {r['ours'] / r['numpy']:>6.2f} "
              f"{r['error']:>8.1e} {r['build']:>5.2f}s  {r['tiles']}"
              + (f"  ({r['busy']} repeats on a busy machine)" if r["busy"] else ""), flush=True)


if __name__ == "__main__":
    main()
