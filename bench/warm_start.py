"""Cold vs warm start: seconds to compile the MLP 784-512-512-10 training step (bench/mlp.py)
in a fresh process with empty caches, then in a second fresh process with the caches the
first one left; the median of 3 pairs, and warm / cold (the target is at most 5%).

    python bench/warm_start.py [--repeats 3] [--no-pocl-cache]

"compile" is gc.function's own clock (graph passes, fusion, codegen, program build,
buffer allocation); "first step" adds the first call, where PoCL finishes each kernel for
its launch geometry. By default PoCL's kernel cache lives in the same temporary folder, so
it is empty for the cold run and kept for the warm one, as on a user's machine; graphc then
writes no binary of its own (PoCL's cache serves the warm build, reported as 'miss'), since
fetching one from PoCL compiles every kernel again. --no-pocl-cache sets POCL_KERNEL_CACHE=0
so that only graphc's disk cache is measured.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child() -> None:
    """Compile and run the step once; print one JSON line of timings."""
    started = time.perf_counter()
    sys.path.insert(0, str(HERE))
    import mlp
    params, x, y = mlp.init()
    step = mlp.graphc_step(params)
    step(x, y)
    first = time.perf_counter() - started
    print(json.dumps({"compile": step.compile_seconds, "first_step": first,
                      "builds": [r.cache for r in step.device.build_stats],
                      "kernels": step.kernel_count,
                      "device": f"{step.device.name} ({step.device.platform_name}, "
                                f"{step.device.platform_version})"}))


def fresh_process(cache: str, pocl_cache: bool) -> dict:
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache)
    env.pop("GRAPHC_DEBUG", None)
    if pocl_cache:
        env["POCL_CACHE_DIR"] = f"{cache}/pocl"
    else:
        env["POCL_KERNEL_CACHE"] = "0"
    done = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(repeats: int, pocl_cache: bool) -> dict:
    runs = {"cold": [], "warm": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            runs["cold"].append(fresh_process(cache, pocl_cache))
            runs["warm"].append(fresh_process(cache, pocl_cache))
    return runs


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(runs: dict, pocl_cache: bool) -> None:
    cold, warm = runs["cold"], runs["warm"]
    print(f"device: {cold[0]['device']}; kernels per step: {cold[0]['kernels']}; "
          f"PoCL kernel cache: {'kept for the warm run' if pocl_cache else 'off'}")
    print(f"program builds: cold {cold[0]['builds']}, warm {warm[0]['builds']}")
    for key in ("compile", "first_step"):
        c, w = median(cold, key), median(warm, key)
        samples = ", ".join(f"{r[key]:.3f}/{s[key]:.3f}" for r, s in zip(cold, warm))
        print(f"{key:>10}: cold {c:.3f} s, warm {w:.3f} s, warm/cold {w / c:.1%}"
              f"  (pairs: {samples})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pocl-cache", action="store_true")
    args = parser.parse_args()
    if args.child:
        child()
        return
    report(measure(args.repeats, not args.no_pocl_cache), not args.no_pocl_cache)


if __name__ == "__main__":
    main()
