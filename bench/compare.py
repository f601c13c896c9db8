"""Two graphc installs side by side: the training steps' speed in interleaved turns, and
whether they generate the same kernels.

    python bench/compare.py BEFORE_PYTHON AFTER_PYTHON [--only mlp,lenet,lstm]
                            [--turns 5] [--repeats 20]

Each PYTHON is the interpreter of an environment with graphc installed from a source
checkout (a `.venv/bin/python` of `make venv`); the workloads are read from that checkout's
bench/. Every turn runs each install once per workload in a fresh process (compile, 3 warm-up
steps, `repeats` timed steps), alternating which goes first. The table gives the median step
time of each over all turns, after / before, the launches per step, and whether the two
programs' kernel sources are byte-identical (`same source`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import hashlib, importlib, json, sys, time
from pathlib import Path
import graphc
sys.path.insert(0, str(Path(graphc.__file__).resolve().parents[1] / "bench"))
workload = importlib.import_module(sys.argv[1])
params, x, y = workload.init()
step = workload.graphc_step(params)
for _ in range(3):
    step(x, y)
times = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    step(x, y)
    times.append(time.perf_counter() - started)
plan = step.compiled.plan
print(json.dumps({"times": times, "launches": len(plan.launches),
                  "source": hashlib.sha256(plan.source.encode()).hexdigest(),
                  "graphc": graphc.__file__}))
"""


def run_once(python: str, workload: str, repeats: int) -> dict:
    done = subprocess.run([python, "-c", CHILD, workload, str(repeats)], capture_output=True,
                          text=True, timeout=900, cwd=tempfile.gettempdir())  # no checkout on sys.path
    if done.returncode != 0:
        raise SystemExit(f"{python} {workload}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(pythons: dict[str, str], workload: str, turns: int, repeats: int) -> dict:
    times = {label: [] for label in pythons}
    seen = {}
    for turn in range(turns):
        order = list(pythons) if turn % 2 == 0 else list(reversed(pythons))
        for label in order:
            result = run_once(pythons[label], workload, repeats)
            times[label] += result["times"]
            seen[label] = result
    medians = {label: statistics.median(t) * 1e3 for label, t in times.items()}
    return {"medians": medians, "seen": seen}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--only", default="mlp,lenet,lstm")
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    pythons = {"before": args.before, "after": args.after}
    print("| workload | before ms/step | after ms/step | after / before | launches before/after"
          " | same source |")
    print("|---|---:|---:|---:|---:|---|")
    for workload in args.only.split(","):
        result = compare(pythons, workload, args.turns, args.repeats)
        before, after = result["medians"]["before"], result["medians"]["after"]
        seen = result["seen"]
        same = "yes" if seen["before"]["source"] == seen["after"]["source"] else "no"
        print(f"| {workload} | {before:.2f} | {after:.2f} | {after / before:.3f} | "
              f"{seen['before']['launches']}/{seen['after']['launches']} | {same} |",
              flush=True)
    print(f"\nbefore: {seen['before']['graphc']}\nafter:  {seen['after']['graphc']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
