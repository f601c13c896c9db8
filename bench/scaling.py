"""Cost curves: graphc against torch eager as the problem grows, plotted and tabulated.

Training steps (samples/s, medians of interleaved turns, bench/common.py's harness):
batch 16 -> 1024 for the MLP and LeNet-5, hidden width 256 -> 4096 for the MLP (batch
128), sequence length 7 -> 112 for the LSTM layer and the LSTM from primitives (batch 64).
Inference: the forward pass (a gc.function of the logits, and Model.predict) at batch 1
(latency) and batch 256 (throughput) against torch eager's forward under no_grad.

    python bench/scaling.py [--repeats 10] [--quick] [--plot bench/scaling.png]

Writes the plot (matplotlib) and prints two Markdown tables. --quick takes three points a
curve. Each point compiles its own step (new shapes), so a full sweep takes minutes.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import lenet  # noqa: E402
import lstm  # noqa: E402
import lstm_primitives  # noqa: E402
import mlp  # noqa: E402

BATCHES = (16, 32, 64, 128, 256, 512, 1024)
WIDTHS = (256, 512, 1024, 2048, 4096)
LENGTHS = (7, 14, 28, 56, 112)


@dataclass(frozen=True)
class Curve:
    """One swept quantity of one workload: `setting(value)` sizes the workload."""

    name: str
    axis: str
    workload: object
    values: tuple[int, ...]
    setting: object             # value -> (batch, {module global: value})


CURVES = (
    Curve("MLP 784-512-512-10", "batch", mlp, BATCHES, lambda b: (b, {})),
    Curve("LeNet-5", "batch", lenet, BATCHES, lambda b: (b, {})),
    Curve("MLP 784-h-h-10, batch 128", "hidden width h", mlp, WIDTHS,
          lambda h: (128, {(mlp, "SIZES"): (784, h, h, 10)})),
    Curve("LSTM layer h128, batch 64", "sequence length", lstm, LENGTHS,
          lambda t: (64, {(lstm, "SEQ"): t})),
    Curve("LSTM from primitives h128, batch 64", "sequence length", lstm_primitives, LENGTHS,
          lambda t: (64, {(lstm, "SEQ"): t})),
)
INFERENCE = ((mlp, "MLP 784-512-512-10"), (lenet, "LeNet-5"), (lstm, "LSTM seq 28 h128"))


@contextlib.contextmanager
def sized(changes: dict):
    """Module globals set to the point's sizes for the duration of its measurement."""
    saved = {key: getattr(*key) for key in changes}
    for (module, name), value in changes.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


def train_point(curve: Curve, value: int, repeats: int) -> dict:
    """graphc's and torch eager's samples/s (and graphc's kernels, host ms) at one point."""
    batch, changes = curve.setting(value)
    with sized(changes):
        result = common.measure(curve.workload, repeats, batch=batch, numpy_step=False)
    return {"curve": curve.name, "axis": curve.axis, "x": value, "graphc": result["graphc"],
            "torch": result.get("torch"), "kernels": result["kernels"],
            "host ms": result["host ms"], "device ms": result["device ms"]}


# ---- inference ----

def graphc_forward(workload, params, batch: int):
    """A gc.function of the logits of `batch` examples, and a Model.predict closure."""
    import graphc as gc
    _, x_all, _ = workload.init(batch=batch)
    layers = workload.layers()
    x, logits, _ = common.layers_logits((batch,) + x_all.shape[1:], layers, params)
    forward = gc.function([x], logits, name=f"{workload.NAME}_forward")
    model = gc.nn.Sequential([gc.nn.Input(x_all.shape[1:])] + workload.layers())
    model.set_weights(params)
    return forward, (lambda data: model.predict(data, batch_size=batch, verbose=0)), x_all


def inference_row(workload, title: str, batch: int, repeats: int) -> dict:
    """Samples/s of graphc's forward function, Model.predict and torch eager's forward."""
    import torch
    params, _, _ = workload.init()
    forward, predict, x = graphc_forward(workload, params, batch)
    torch_step = workload.torch_step_fn([p.copy() for p in params])
    steps = {"graphc": lambda: forward(x), "predict": lambda: predict(x)}
    if torch_step is not None:
        tx = torch.from_numpy(x)

        def torch_forward():
            with torch.no_grad():
                return torch_step.forward(tx)
        steps["torch"] = torch_forward
        expected = torch_forward().numpy()
        np.testing.assert_allclose(forward(x), expected, rtol=1e-3, atol=1e-4)
    rates = common.interleaved_rates(steps, batch, repeats)
    return {"model": title, "batch": batch, **{k: rates[k] for k in steps}}


# ---- output ----

def ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}"


def training_table(points: list[dict]) -> list[str]:
    lines = ["| curve | swept | value | graphc samples/s | torch eager | graphc/torch"
             " | kernels/step | graphc host ms/step | graphc device ms/step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        torch_text = "–" if p["torch"] is None else f"{p['torch']:,.0f}"
        lines.append(f"| {p['curve']} | {p['axis']} | {p['x']} | {p['graphc']:,.0f}"
                     f" | {torch_text} | {ratio(p['graphc'], p['torch'])} | {p['kernels']}"
                     f" | {p['host ms']:.3f} | {p['device ms']:.2f} |")
    return lines


def inference_table(rows: list[dict]) -> list[str]:
    lines = ["| model | batch | graphc function | Model.predict | torch eager | graphc/torch"
             " | latency ms: graphc / predict / torch |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        torch = r.get("torch")
        latency = " / ".join("–" if r.get(k) is None else f"{1e3 * r['batch'] / r[k]:.3f}"
                             for k in ("graphc", "predict", "torch"))
        lines.append(f"| {r['model']} | {r['batch']} | {r['graphc']:,.0f} | {r['predict']:,.0f}"
                     f" | {'–' if torch is None else f'{torch:,.0f}'}"
                     f" | {ratio(r['graphc'], torch)} | {latency} |")
    return lines


def plot(points: list[dict], path: Path) -> None:
    """One panel per curve: samples/s of graphc and torch eager, log-log."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    curves = list(dict.fromkeys(p["curve"] for p in points))
    columns = min(3, len(curves))
    rows = -(-len(curves) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.9 * rows), squeeze=False)
    for ax in axes.flat[len(curves):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, curves):
        mine = [p for p in points if p["curve"] == name]
        xs = [p["x"] for p in mine]
        ax.plot(xs, [p["graphc"] for p in mine], "o-", label="graphc (PoCL)")
        if all(p["torch"] is not None for p in mine):
            ax.plot(xs, [p["torch"] for p in mine], "s--", label="torch eager")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(mine[0]["axis"])
        ax.set_ylabel("training samples/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(repeats: int, quick: bool, plot_path: Path | None) -> tuple[list[str], list[str]]:
    """Measure every point and the inference rows; plot; the two tables."""
    points = []
    for curve in CURVES:
        values = curve.values[::3] if quick else curve.values
        for value in values:
            started = time.perf_counter()
            points.append(train_point(curve, value, repeats))
            print(f"  {curve.name} {curve.axis} {value}: {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
    rows = [inference_row(w, title, batch, repeats)
            for w, title in INFERENCE for batch in (1, 256)]
    if plot_path is not None:
        plot(points, plot_path)
    return training_table(points), inference_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--plot", type=Path, default=HERE / "scaling.png")
    args = parser.parse_args(argv)
    common.import_torch()
    training, inference = run(args.repeats, args.quick, args.plot)
    print("\n".join(training + [""] + inference))
    print(f"\nplot: {args.plot}; load average {statistics.mean(os_load()):.1f}")
    return 0


def os_load() -> tuple[float, ...]:
    import os
    return os.getloadavg()


if __name__ == "__main__":
    raise SystemExit(main())
