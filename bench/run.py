"""`make bench`: one table of graphc against references measured in the same run."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import mlp  # noqa: E402


def first_step(cache_dir: str) -> tuple[float, float]:
    """(compile seconds, seconds to build, compile and run step 1) in a fresh process."""
    # Both caches start empty for the cold run and are kept for the warm one: graphc's
    # program binaries and PoCL's own (it finishes kernels per launch geometry).
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache_dir, POCL_CACHE_DIR=f"{cache_dir}/pocl")
    out = subprocess.run([sys.executable, str(HERE / "mlp.py"), "--first-step"], env=env,
                         check=True, capture_output=True, text=True)
    compile_s, first_s = out.stdout.strip().splitlines()[-1].split()
    return float(compile_s), float(first_s)


def cold_and_warm(repeats: int = 3) -> dict:
    """Medians of cold (empty caches) and warm (second process, cached binaries) runs."""
    runs = {"cold": [], "warm": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            runs["cold"].append(first_step(cache))
            runs["warm"].append(first_step(cache))
    return {k: tuple(statistics.median(r[i] for r in v) for i in (0, 1))
            for k, v in runs.items()}


def main() -> None:
    result = mlp.measure()
    starts = cold_and_warm()
    (cold_compile, cold), (warm_compile, warm) = starts["cold"], starts["warm"]
    print(f"device: {result['device']} ({result['platform']})")
    print("| workload | graphc samples/s | numpy samples/s | torch samples/s | graphc/numpy"
          " | graphc/torch | kernels/step | compile s cold / warm | first step s cold / warm |")
    print("|---|---|---|---|---|---|---|---|---|")
    torch = result.get("torch")
    torch_text = f"{torch:,.0f}" if torch else "–"
    ratio_torch = f"{result['graphc'] / torch:.2f}" if torch else "–"
    print(f"| MLP 784-512-512-10 b128 SGD | {result['graphc']:,.0f} | {result['numpy']:,.0f} |"
          f" {torch_text} | {result['graphc'] / result['numpy']:.2f} | {ratio_torch} |"
          f" {result['kernels']} | {cold_compile:.2f} / {warm_compile:.3f}"
          f" ({warm_compile / cold_compile:.1%}) | {cold:.2f} / {warm:.2f} |")


if __name__ == "__main__":
    main()
