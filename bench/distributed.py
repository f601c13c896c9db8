"""Data-parallel training on MPI: samples/s of one and two processes at the same batch per
process, the time spent in collectives, and the scaling efficiency.

    python bench/distributed.py [--model mlp|lenet] [--batch N] [--steps N] [--rounds N]

Each configuration is `mpirun -n P python bench/distributed.py --worker ...` with PoCL
limited to one thread per process (POCL_MAX_PTHREAD_COUNT=1, which Debian's PoCL 3.1
honours; POCL_CPU_MAX_CU_COUNT came with PoCL 4) and Open MPI binding each process to a
core of its own, so two processes use two cores and one process one. A step is the
workload's SGD step (bench/mlp.py, bench/lenet.py) with gc.distributed.DistributedOptimizer:
its gradients are averaged in one bucketed allreduce on two processes, and not at all on
one. Rounds alternate the two configurations, so a busy machine slows both alike.

Columns: samples/s over all processes (processes x batch / median step time); ms per step
in collectives (rank 0's time in its host steps' MPI calls, from its inputs being ready to
its result, waiting for the other rank included; the runtime's Executable.last_host_seconds)
and the step's time over one process's (what the collectives, the copies around them and
the load they add cost, overlap included); speed-up and efficiency (speed-up / processes)
against one process. Goal: two processes at >= 1.6x one process's samples/s.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
GOAL = 1.6


def worker(model: str, batch: int, steps: int) -> dict:
    """On every rank: build and time the step; rank 0 returns the figures."""
    import importlib

    import graphc as gc
    gc.distributed.init()
    workload = importlib.import_module(model)
    params, x, y = workload.init(seed=0, batch=batch)
    xp, yp, loss, variables = workload.build(params, batch)
    optimizer = gc.distributed.DistributedOptimizer(gc.optim.SGD(0.01))
    step = gc.function([xp, yp], loss, updates=optimizer.updates(loss, variables),
                       name=f"{model}_step")
    rng = np.random.default_rng(gc.distributed.rank())
    x = x + 0.01 * rng.standard_normal(x.shape).astype(np.float32)   # each rank its batch
    for _ in range(3):
        step(x, y)
    gc.distributed.reset_stats()
    times, in_host = [], []
    for _ in range(steps):
        started = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - started)
        in_host.append(step.executable.last_host_seconds)
    stats = gc.distributed.stats()
    size = gc.distributed.size()
    return {"processes": size, "batch": batch, "step_ms": 1e3 * statistics.median(times),
            "samples_per_s": size * batch / statistics.median(times),
            "collective_ms": 1e3 * statistics.median(in_host),
            "collectives_per_step": stats["calls"] / steps,
            "bytes_per_step": stats["bytes"] / steps,
            "kernels": step.kernel_count, "host_calls": len(step.compiled.plan.host_calls)}


def launch(processes: int, args) -> dict:
    """One configuration, in a fresh mpirun; rank 0's figures."""
    command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "core",
               "-n", str(processes), sys.executable, str(Path(__file__).resolve()),
               "--worker", "--model", args.model, "--batch", str(args.batch),
               "--steps", str(args.steps)]
    env = {**os.environ, "POCL_MAX_PTHREAD_COUNT": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise SystemExit(f"mpirun -n {processes} failed:\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def _median_runs(runs: list[dict]) -> dict:
    """Per key, the median over rounds (counts are equal in every round)."""
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def table(runs: dict, args) -> str:
    one, two = _median_runs(runs[1]), _median_runs(runs[2])
    speedup = two["samples_per_s"] / one["samples_per_s"]
    fastest = {p: max(r["samples_per_s"] for r in runs[p]) for p in runs}
    rows = [f"data-parallel {args.model}, batch {args.batch} per process, "
            f"{args.steps} timed steps x {args.rounds} rounds (medians), PoCL 1 thread "
            f"per process",
            "",
            "| processes | samples/s | step ms | in collectives ms/step | step - 1 process's "
            "ms | collectives/step | MB/step | speed-up | efficiency |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in (one, two):
        s = r["samples_per_s"] / one["samples_per_s"]
        rows.append(f"| {r['processes']:.0f} | {r['samples_per_s']:.0f} | {r['step_ms']:.2f} | "
                    f"{r['collective_ms']:.2f} | {r['step_ms'] - one['step_ms']:+.2f} | "
                    f"{r['collectives_per_step']:.0f} | {r['bytes_per_step'] / 2**20:.2f} | "
                    f"{s:.2f}x | {s / r['processes']:.0%} |")
    verdict = "met" if speedup >= GOAL else "not met"
    rows += ["", f"goal: two processes >= {GOAL}x one process's samples/s: {verdict} "
                 f"({speedup:.2f}x of the medians; of each configuration's fastest round: "
                 f"{fastest[1]:.0f} and {fastest[2]:.0f} samples/s, "
                 f"{fastest[2] / fastest[1]:.2f}x)"]
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=("mlp", "lenet"))
    parser.add_argument("--batch", type=int, default=None, help="examples per process")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch is None:
        args.batch = 128 if args.model == "mlp" else 64
    if args.worker:
        figures = worker(args.model, args.batch, args.steps)
        import graphc as gc
        if gc.distributed.rank() == 0:
            print(json.dumps(figures), flush=True)
        return 0
    if shutil.which("mpirun") is None:
        raise SystemExit("needs Open MPI's mpirun (apt-get install openmpi-bin) and mpi4py "
                         "(pip install graphc[distributed])")
    load = os.getloadavg()
    runs: dict[int, list] = {1: [], 2: []}
    for _ in range(args.rounds):
        for processes in (1, 2):
            runs[processes].append(launch(processes, args))
    print(table(runs, args))
    print(f"\nload average (1 min) at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
