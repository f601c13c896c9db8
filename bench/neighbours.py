"""Neighbourliness: does a graphc call leave the CPU to the user's code once it returns?

A user's numpy (or torch) code often runs between graphc steps in the same process. This
times numpy's 512x512 float32 GEMM right after a graphc training step (the MLP of
bench/mlp.py) against the same GEMM after an idle wait as long as the step ("alone"), in
interleaved turns, and measures the CPU the process burns while it sleeps 5 ms right after
a step (worker threads spinning) against the same after numpy's GEMM (OpenBLAS's threads):

    python bench/neighbours.py [--repeats 60]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import mlp  # noqa: E402

TITLE = "numpy 512² GEMM right after a graphc MLP step / after an idle wait"
GEMM = 512
PAUSE = 0.005           # seconds slept to see who keeps the CPU busy


def busy_cores_after(call, pause: float = PAUSE) -> float:
    """CPU seconds the process used per wall second while sleeping `pause` after `call()`."""
    call()
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(pause)
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


def measure(repeats: int = 60, rounds: int = 5) -> dict:
    """GEMM seconds after a step and alone (medians), their ratio, and the CPU busy after."""
    params, x, y = mlp.init()
    step = common.graphc_step(mlp, params)
    a = np.random.default_rng(0).standard_normal((GEMM, GEMM)).astype(np.float32)
    out = np.empty_like(a)
    for _ in range(3):
        step(x, y)
        np.matmul(a, a, out=out)
    step_seconds = statistics.median(common.timed(lambda: step(x, y)) for _ in range(5))
    times = {"after step": [], "alone": []}
    per_turn = max(1, repeats // rounds)
    for _ in range(rounds):
        for kind, before in (("after step", lambda: step(x, y)),
                             ("alone", lambda: time.sleep(step_seconds))):
            for _ in range(per_turn):
                before()
                times[kind].append(common.timed(lambda: np.matmul(a, a, out=out)))
            time.sleep(0.1)
    medians = {kind: statistics.median(ts) for kind, ts in times.items()}
    spin = {"graphc": statistics.median(busy_cores_after(lambda: step(x, y))
                                        for _ in range(20)),
            "numpy": statistics.median(busy_cores_after(lambda: np.matmul(a, a, out=out))
                                       for _ in range(20))}
    return {"ratio": medians["alone"] / medians["after step"], "gemm ms": medians,
            "busy after": spin, "step ms": 1e3 * step_seconds,
            "gflops": {k: 2 * GEMM ** 3 / v * 1e-9 for k, v in medians.items()}}


def describe(result: dict) -> str:
    """One paragraph: the ratio, the GEMM's GFLOP/s both ways, the CPU busy after each."""
    g, b = result["gflops"], result["busy after"]
    return (f"{TITLE}: {result['ratio']:.2f} (GEMM {g['after step']:.0f} GFLOP/s right after a"
            f" {result['step ms']:.1f} ms step, {g['alone']:.0f} GFLOP/s after as long an idle"
            f" wait); CPU cores busy while sleeping {PAUSE * 1e3:.0f} ms right after a graphc"
            f" step {b['graphc']:.2f}, after numpy's GEMM {b['numpy']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    print(describe(measure(parser.parse_args(argv).repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
