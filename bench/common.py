"""Shared harness of the training-step benchmarks (bench/mlp.py, lenet.py, lstm.py).

A workload module defines NAME, TITLE, BATCH and:

    init(seed=0, batch=BATCH) -> (params, x, y)         numpy float32 weights and one batch
    build(params, batch) -> (x, y, loss, variables)     the graphc graph, from gc.nn layers
    numpy_grads(params, x, y) -> (loss, grads)          the same step by hand in numpy (or,
                                                        without it, reference_grads: the
                                                        float64 reference of --check)
    torch_step_fn(params) -> step(x, y) or None         torch eager, when torch imports

Everything else (the compiled SGD step, the numpy SGD step, interleaved timing, cold and
warm first steps in fresh processes, the `--check` self-test, the command line) is here.
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
from types import ModuleType
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
LR = 0.01
TORCH_THREADS = 2                    # bench/run.py --torch-threads sets it
Params = list[np.ndarray]


# ---- shared pieces of the three implementations ----

def graphc_loss(logits, y):
    """Mean sparse softmax cross-entropy of logits, as a graphc tensor."""
    import graphc as gc
    return gc.mean(gc.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))


def train_function(x, y, loss, variables, name: str):
    """gc.function of one SGD step: returns the loss, updates the variables in place."""
    import graphc as gc
    updates = gc.optim.SGD(LR).updates(loss, variables)
    return gc.function([x, y], loss, updates=updates, name=name)


def layers_graph(input_shape: tuple, layers: list, params: Params):
    """(x, y, loss, variables): `layers` applied in turn to a float32 placeholder x of
    `input_shape` (batch first), mean softmax cross-entropy against int32 labels y,
    `params` loaded into the layers' weights."""
    import graphc as gc
    x, logits, variables = layers_logits(input_shape, layers, params)
    y = gc.placeholder(input_shape[:1], gc.int32, name="y")
    return x, y, graphc_loss(logits, y), variables


def layers_logits(input_shape: tuple, layers: list, params: Params):
    """(x, logits, variables): `layers` applied in turn to a float32 placeholder x of
    `input_shape` (batch first), `params` loaded into the layers' weights."""
    import graphc as gc
    x = gc.placeholder(input_shape, gc.float32, name="x")
    h = x
    for layer in layers:
        h = layer(h)
    return x, h, set_layer_weights(layers, params)


def set_layer_weights(layers, params: Params) -> list:
    """Give built layers the numpy weights, in order; returns their variables."""
    variables, rest = [], list(params)
    for layer in layers:
        count = len(layer.weights)
        layer.set_weights(rest[:count])
        variables += layer.weights
        rest = rest[count:]
    assert not rest, f"{len(rest)} weights left over"
    return variables


def softmax_xent(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean sparse softmax cross-entropy and its gradient by the logits (numpy)."""
    rows = np.arange(len(y))
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    total = e.sum(1, keepdims=True)
    loss = float(np.mean(np.log(total[:, 0]) - z[rows, y]))
    grad = e / total
    grad[rows, y] -= 1
    grad /= len(y)
    return loss, grad


def sgd(params: Params, grads: Params) -> None:
    """p -= LR * g, in place."""
    for p, g in zip(params, grads):
        p -= LR * g


def numpy_step_fn(workload: ModuleType, params: Params) -> Callable:
    """step(x, y): one SGD step of `workload` in numpy on `params` (updated in place)."""
    def step(x: np.ndarray, y: np.ndarray) -> float:
        loss, grads = workload.numpy_grads(params, x, y)
        sgd(params, grads)
        return loss
    return step


_COMPILE_TORCH = [False]              # torch_compiled_step_fn sets it while it builds


def torch_sgd_step(forward: Callable, weights: list, to_params: Callable) -> Callable:
    """step(x, y) of torch eager: forward(x) -> logits, cross-entropy, backward, SGD; with
    torch.compile (torch_compiled_step_fn), the forward and loss compiled by inductor (its
    backward through AOTAutograd), the optimizer step eager.

    `step.params()` gives the weights back in graphc's layout (`to_params()`).
    """
    import torch
    opt = torch.optim.SGD(weights, lr=LR)

    def loss_of(x, y):
        return torch.nn.functional.cross_entropy(forward(x), y)
    if _COMPILE_TORCH[0]:
        loss_of = torch.compile(loss_of)

    def step(x: np.ndarray, y: np.ndarray) -> float:
        loss = loss_of(torch.from_numpy(x), torch.from_numpy(y).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()
    step.params = to_params
    step.forward = forward          # logits of a batch (bench/scaling.py's inference)
    return step


def torch_compiled_step_fn(workload: ModuleType, params: Params) -> Callable | None:
    """The workload's torch step with torch.compile, or None without torch."""
    _COMPILE_TORCH[0] = True
    try:
        return workload.torch_step_fn(params)
    finally:
        _COMPILE_TORCH[0] = False


def import_torch():
    """torch with TORCH_THREADS threads, or None when it is not importable."""
    try:
        import torch
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return None
    torch.set_num_threads(TORCH_THREADS)
    return torch


# ---- timing ----

def interleaved_rates(steps: dict[str, Callable[[], object]], batch: int, repeats: int,
                      rounds: int = 5, settle: float = 0.1) -> dict[str, float]:
    """Median samples/s of each step over `repeats` timed calls, taken in `rounds` turns.

    Each turn runs one implementation for an untimed call and then its share of timed calls,
    then sleeps `settle` seconds: OpenBLAS's, OpenMP's and PoCL's worker threads spin for a
    while after their work, and a step timed right after another library's would pay for
    that. Turns alternate, so the machine's noise reaches every implementation alike.
    Also "best": of each step, its fastest turn's median samples/s (a turn that no other
    job disturbed), since on a shared machine the overall median moves with the load.
    """
    turns: dict[str, list[list[float]]] = {name: [] for name in steps}
    per_turn = max(1, -(-repeats // rounds))
    for _ in range(rounds):
        for name, step in steps.items():
            step()
            turns[name].append([timed(step) for _ in range(per_turn)])
            time.sleep(settle)
    rates: dict = {name: batch / statistics.median(t for turn in ts for t in turn)
                   for name, ts in turns.items()}
    rates["best"] = {name: max(batch / statistics.median(turn) for turn in ts)
                     for name, ts in turns.items()}
    return rates


def timed(step: Callable[[], object]) -> float:
    """Seconds of one call."""
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def measure(workload: ModuleType, repeats: int = 30, torch_compile: bool = False,
            batch: int | None = None, numpy_step: bool = True) -> dict:
    """Samples/s of graphc, numpy and torch (when importable), kernels/step, the device,
    graphc's host overhead per step; with `torch_compile`, torch.compile's samples/s too
    ("torch.compile", and its first call's seconds, "torch.compile first s").

    loss_error: the relative difference of graphc's and numpy's losses over the first two
    steps (the second one sees the first one's updates), a check of the compiled step; a
    workload without a numpy step (has_numpy) is compared with torch's instead.
    """
    batch = batch or workload.BATCH
    params, x, y = workload.init(batch=batch)
    compiled = graphc_step(workload, [p.copy() for p in params], batch)
    torch_step = workload.torch_step_fn([p.copy() for p in params])
    steps = {"graphc": lambda: compiled(x, y)}
    if numpy_step and has_numpy(workload):
        by_hand = numpy_step_fn(workload, [p.copy() for p in params])
        steps["numpy"] = lambda: by_hand(x, y)
    elif torch_step is None:
        raise RuntimeError(f"{workload.NAME}: no numpy step, and torch is not importable")
    reference = steps.get("numpy") or (lambda: torch_step(x, y))
    losses = [(float(compiled(x, y)), float(reference())) for _ in range(2)]
    if torch_step is not None:
        steps["torch"] = lambda: torch_step(x, y)
    first = {}
    if torch_compile and torch_step is not None:
        inductor = torch_compiled_step_fn(workload, [p.copy() for p in params])
        first["torch.compile first s"] = timed(lambda: inductor(x, y))
        steps["torch.compile"] = lambda: inductor(x, y)
    result = interleaved_rates(steps, batch, repeats)
    result.update(first, kernels=compiled.kernel_count,
                  compile_in_process=compiled.compile_seconds,
                  device=compiled.device.name, platform=compiled.device.platform_version,
                  loss_error=max(abs(a - b) / abs(b) for a, b in losses),
                  **host_overhead(compiled, x, y))
    return result


def host_overhead(step, x: np.ndarray, y: np.ndarray, calls: int = 20) -> dict:
    """Medians over profiled calls of graphc's step: "host ms" (wall time the device was
    not busy with the call's commands: feed checks, enqueues, waking up to wait) and
    "device ms" (its transfers and kernels). Function.profile's StepTiming."""
    step(x, y)
    timings = []
    for _ in range(calls):
        step.profile(x, y)
        timings.append(step.last_timing)
    return {"host ms": 1e3 * statistics.median(t.host_seconds for t in timings),
            "device ms": 1e3 * statistics.median(t.device_seconds for t in timings)}


def has_numpy(workload: ModuleType) -> bool:
    """Does the workload implement its step in numpy (numpy_grads)?"""
    return getattr(workload, "numpy_grads", None) is not None


def graphc_step(workload: ModuleType, params: Params, batch: int | None = None):
    """The compiled training step of `workload` on `params`."""
    batch = batch or workload.BATCH
    return train_function(*workload.build(params, batch), name=f"{workload.NAME}_step")


# ---- cold and warm starts ----

def first_step(workload: ModuleType) -> dict:
    """Seconds from building the graph to the end of step 1, in this process (imports done)."""
    import graphc
    graphc.function     # noqa: B018 - the lazily imported public API too: imports are not timed
    params, x, y = workload.init()
    started = time.perf_counter()
    step = graphc_step(workload, params)
    step(x, y)
    first = time.perf_counter() - started
    return {"compile": step.compile_seconds, "first_step": first, "kernels": step.kernel_count,
            "builds": [getattr(r, "cache", None) for r in step.device.build_stats]}


def fresh_first_step(script: Path, cache_dir: str) -> dict:
    """first_step() in a fresh process whose graphc and PoCL caches live in `cache_dir`."""
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache_dir, POCL_CACHE_DIR=f"{cache_dir}/pocl")
    env.pop("GRAPHC_DEBUG", None)
    done = subprocess.run([sys.executable, str(script), "--first-step"], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{script.name} --first-step failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cold_and_warm(script: Path, pairs: int = 3) -> dict[str, dict[str, float]]:
    """Medians over `pairs` of a cold run (empty caches) and a warm one (the caches it left)."""
    runs: dict[str, list[dict]] = {"cold": [], "warm": []}
    for _ in range(pairs):
        with tempfile.TemporaryDirectory(prefix="graphc-bench-") as cache:
            runs["cold"].append(fresh_first_step(script, cache))
            runs["warm"].append(fresh_first_step(script, cache))
    return {kind: {key: statistics.median(r[key] for r in rs)
                   for key in ("compile", "first_step")} for kind, rs in runs.items()}


# ---- the self-check ----

def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|; the absolute error where the reference is
    zero up to rounding (a key bias's gradient through a softmax is 0 in exact arithmetic)."""
    scale = float(np.abs(reference).max())
    error = float(np.abs(np.asarray(ours, np.float64) - reference).max())
    return error / scale if scale > 1e-12 else error


def check(workload: ModuleType, batch: int = 4, tol: float = 1e-4) -> bool:
    """numpy (float64) loss and gradients vs gc.interpret, a device step and torch's step.

    A step's gradients are read back as (weights before - weights after) / LR, which loses
    float32 digits to cancellation: those rows get a 20x looser tolerance.
    """
    import graphc as gc
    params, x, y = workload.init(seed=1, batch=batch)
    reference = workload.numpy_grads if has_numpy(workload) else workload.reference_grads
    ref_loss, ref_grads = reference([p.astype(np.float64) for p in params],
                                    x.astype(np.float64), y)
    gx, gy, loss, variables = workload.build(params, batch)
    values = gc.interpret([loss] + gc.grad(loss, variables), {gx: x, gy: y})
    rows = compare("interpret", values[0], values[1:], ref_loss, ref_grads, tol)
    step = train_function(gx, gy, loss, variables, name=f"{workload.NAME}_check")
    device_loss = step(x, y)
    rows += compare("device", device_loss, step_grads(params, [v.get_value() for v in variables]),
                    ref_loss, ref_grads, 20 * tol)
    torch_step = workload.torch_step_fn([p.copy() for p in params])
    if torch_step is not None:
        torch_loss = torch_step(x, y)
        rows += compare("torch", torch_loss, step_grads(params, torch_step.params()),
                        ref_loss, ref_grads, 20 * tol)
    for name, error, limit in rows:
        print(f"{'ok ' if error <= limit else 'BAD'} {name:<28} rel.err {error:.1e}"
              f" (limit {limit:.0e})")
    return all(error <= limit for _, error, limit in rows)


def step_grads(before: Params, after: Params) -> Params:
    """The gradients an SGD step applied: (before - after) / LR, in float64."""
    return [(b.astype(np.float64) - a) / LR for b, a in zip(before, after)]


def compare(what: str, loss, grads, ref_loss: float, ref_grads: Params,
            tol: float) -> list[tuple[str, float, float]]:
    """(name, relative error, limit) of the loss and each gradient against the reference."""
    rows = [(f"{what} loss", relative_error(loss, np.float64(ref_loss)), min(tol, 1e-4))]
    return rows + [(f"{what} grad {i}", relative_error(g, r), tol)
                   for i, (g, r) in enumerate(zip(grads, ref_grads))]


# ---- the command line of a workload module ----

def format_row(workload: ModuleType, result: dict) -> str:
    """One line: samples/s of each implementation and kernels per step."""
    rates = ", ".join(f"{k} {result[k]:,.0f} (fastest turn {result['best'][k]:,.0f})"
                      for k in ("graphc", "numpy", "torch") if k in result)
    return f"{workload.TITLE}: samples/s {rates}; {result['kernels']} kernels/step"


def main(workload: ModuleType, argv: list[str] | None = None) -> int:
    """`--first-step` (JSON timings), `--check` (self-test), or a quick measurement."""
    parser = argparse.ArgumentParser(description=workload.__doc__.splitlines()[0])
    parser.add_argument("--first-step", action="store_true",
                        help="print JSON seconds of graph building to the end of step 1")
    parser.add_argument("--check", action="store_true",
                        help="numpy gradients vs gc.interpret and the device (tiny batch)")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    if args.first_step:
        print(json.dumps(first_step(workload)))
    elif args.check:
        return 0 if check(workload) else 1
    else:
        print(format_row(workload, measure(workload, args.repeats)))
    return 0
