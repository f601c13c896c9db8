"""Inference of torch models imported through graphc.onnx, against onnxruntime (CPU).

    python bench/onnx_import.py [--only mlp,cnn,lstm,transformer] [--repeats 30] [--threads 2]

Each model is built in torch (seeded), exported to ONNX once (tests/onnx_models.py), then
run at batch 64 by graphc (graphc.onnx.load, compiled for the batch, called like a
function: numpy in, numpy out) and by an onnxruntime CPUExecutionProvider session with
`--threads` intra-op threads, in interleaved turns (common.interleaved_rates). Rows give
samples/s, graphc / onnxruntime (median, and of the fastest turns), kernels per call,
graphc's compile time and the largest difference between the two outputs relative to
their scale. Needs torch (to export) and onnxruntime; a missing one is said in the row.
(Not named onnx.py: bench/ is on sys.path, where that name would hide the onnx package.)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

import common  # noqa: E402

BATCH = 64
GOALS = {"mlp": 1.0, "cnn": 1.0}            # graphc / onnxruntime samples/s


def _models():
    import onnx_models as m
    return {   # name: (title, builder, input shape without the batch)
        "mlp": ("MLP 784-512-512-10", m.mlp, (784,)),
        "cnn": ("CNN LeNet-5, 1x28x28", m.lenet, (1, 28, 28)),
        "lstm": ("LSTM seq 28, in 28, hidden 128, +fc", m.lstm, (28, 28)),
        "transformer": ("Transformer encoder layer d128 h4 ff256 GELU, seq 32",
                        lambda: m.encoder(128, 4, 256), (32, 128)),
    }


def measure(name: str, repeats: int, threads: int) -> dict:
    """One model: samples/s of graphc and onnxruntime, kernels, compile time, difference."""
    import onnx_models
    import torch
    import graphc.onnx
    title, build, shape = _models()[name]
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((BATCH,) + shape).astype(np.float32)
    proto = onnx_models.export(build(), x)
    started = time.perf_counter()
    model = graphc.onnx.load(proto, input_shapes={"x": x.shape})
    ours = model(x)[0]
    compile_seconds = time.perf_counter() - started
    session = _session(proto, threads)
    theirs = session.run(None, {"x": x})[0]
    rates = common.interleaved_rates({"graphc": lambda: model(x),
                                      "onnxruntime": lambda: session.run(None, {"x": x})},
                                     BATCH, repeats)
    spec = model.specializations[-1]
    return {"name": name, "title": title, "graphc": rates["graphc"],
            "onnxruntime": rates["onnxruntime"], "best": rates["best"],
            "kernels": spec.function.kernel_count, "compile": compile_seconds,
            "difference": float(np.abs(ours - theirs).max() / np.abs(theirs).max())}


def _session(proto: bytes, threads: int):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"])


def missing_dependency() -> str | None:
    for module in ("torch", "onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            return module
    return None


def table(results: list[dict]) -> list[str]:
    lines = ["| imported model, batch 64 | graphc samples/s | onnxruntime samples/s | graphc /"
             " onnxruntime | kernels/call | compile s | max difference |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        best = r["best"]["graphc"] / r["best"]["onnxruntime"]
        lines.append(f"| {r['title']} | {r['graphc']:,.0f} | {r['onnxruntime']:,.0f} | "
                     f"{r['graphc'] / r['onnxruntime']:.2f} ({best:.2f}) | {r['kernels']} | "
                     f"{r['compile']:.1f} | {r['difference']:.0e} |")
    return lines


def goals(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        ratio = r["graphc"] / r["onnxruntime"]
        wanted = GOALS.get(r["name"])
        verdict = "reported" if wanted is None else ("met" if ratio >= wanted else "not met")
        target = "" if wanted is None else f" ≥ {wanted:.1f}× onnxruntime"
        lines.append(f"- imported {r['name']}{target}: **{verdict}** ({ratio:.2f}×; fastest "
                     f"turns {r['best']['graphc'] / r['best']['onnxruntime']:.2f}×)")
    return lines


def report(names: list[str], repeats: int, threads: int) -> str:
    """The table and the goals, as text (bench/run.py prints it)."""
    missing = missing_dependency()
    if missing:
        return f"ONNX inference: skipped ({missing} is not importable)"
    import onnxruntime
    results = [measure(n, repeats, threads) for n in names]
    head = [f"ONNX inference (onnxruntime {onnxruntime.__version__}, CPUExecutionProvider, "
            f"{threads} intra-op threads)", ""]
    return "\n".join(head + table(results) + ["", "Goals:"] + goals(results))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(_models()))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(report([n for n in args.only.split(",") if n], args.repeats, args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
