"""Run ONNX's node test cases through graphc.onnx.backend and print the pass rate.

    python -m graphc.onnx.conformance [--mode device|interpret] [-j N] [--only Conv,Relu]
                                      [--json results.json] [--failures]

The cases come from `onnx.backend.test.case.node.collect_testcases(None)`: every node test
ONNX ships, generated in-process (the wheel has no data files), each with its model, inputs,
expected outputs and tolerances, compared as ONNX's own runner compares them (same dtype,
then assert_allclose with the case's rtol and atol). A case passes or is counted as
unsupported (refused at load: an op, attribute or dtype graphc does not import), failed
(a wrong value or shape) or error (anything else). Cases run in worker processes, each
with its own OpenCL context; the figure that counts is the device's.
"""
from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import re
import signal
import sys
import time
import warnings

import numpy as np

CASE_SECONDS = 300


def collect(only: set[str] | None = None) -> list[dict]:
    """Every node case as plain data: name, op, model bytes, inputs, outputs, tolerances."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases
        cases = collect_testcases(None)
    snake = _snake_names()
    found = []
    for case in cases:
        op = case_op(case.name, case.model, snake)
        if only and op not in only:
            continue
        inputs, outputs = (_arrays(v) for v in case.data_sets[0])
        found.append({"name": case.name, "op": op, "model": case.model.SerializeToString(),
                      "inputs": inputs, "outputs": outputs,
                      "rtol": case.rtol, "atol": case.atol})
    return found


def _arrays(values) -> list:
    """Test data as numpy arrays (some cases give TensorProtos)."""
    from onnx import TensorProto, numpy_helper
    return [numpy_helper.to_array(v) if isinstance(v, TensorProto) else v for v in values]


def _snake_names() -> dict[str, str]:
    import onnx
    names = {s.name for s in onnx.defs.get_all_schemas_with_history()}
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", n).lower(): n for n in names}


def case_op(name: str, model, snake: dict[str, str]) -> str:
    """The op a case tests: its only node's type, else the op whose name starts the case's
    (the function-expanded variants of an op's cases)."""
    ops = {n.op_type for n in model.graph.node}
    if len(model.graph.node) == 1:
        return ops.pop()
    stem = name[len("test_"):] if name.startswith("test_") else name
    stem_flat = stem.replace("_", "")
    best = ""
    for key, op in snake.items():
        if (stem.startswith(key) or stem_flat.startswith(op.lower())) and len(op) > len(best):
            best = op
    return best or "other"


def run_case(case: dict, mode: str) -> tuple[str, str]:
    """(status, detail) for one case: pass, unsupported, fail or error."""
    import onnx
    import graphc.onnx.backend as backend
    from graphc.onnx.errors import UnsupportedError
    model = onnx.load_from_string(case["model"])
    try:
        rep = backend.prepare(model, "CPU", mode=mode)
        outputs = rep.run(case["inputs"])
    except UnsupportedError as exc:
        return "unsupported", _first_line(exc)
    except Exception as exc:        # a crash of any kind is this case's result, not the run's
        return "error", f"{type(exc).__name__}: {_first_line(exc)}"
    return _compare(case, list(outputs))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _compare(case: dict, outputs: list) -> tuple[str, str]:
    expected = case["outputs"]
    if len(outputs) != len(expected):
        return "fail", f"{len(outputs)} outputs, expected {len(expected)}"
    for i, (want, got) in enumerate(zip(expected, outputs)):
        want, got = np.asarray(want), np.asarray(got)
        if want.dtype != got.dtype:
            return "fail", f"output {i}: dtype {got.dtype}, expected {want.dtype}"
        if want.dtype.kind == "V" or want.dtype.name.startswith(("float8", "bfloat", "float4",
                                                                   "int4", "uint4", "int2",
                                                                   "uint2")):
            want, got = want.astype(np.float32), got.astype(np.float32)   # ml_dtypes
        try:
            if want.dtype == object:
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=case["rtol"], atol=case["atol"])
        except AssertionError as exc:
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            return "fail", f"output {i}: " + " | ".join(lines[1:4])[:300]
    return "pass", ""


def _timeout(signum, frame):
    raise TimeoutError(f"case ran over {CASE_SECONDS} s")


def _worker(job):
    case, mode = job
    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(CASE_SECONDS)
    started = time.perf_counter()
    try:
        status, detail = run_case(case, mode)
    except TimeoutError as exc:
        status, detail = "error", str(exc)
    finally:
        signal.alarm(0)
    return case["name"], case["op"], status, detail, time.perf_counter() - started


def run_all(cases: list[dict], mode: str, jobs: int, progress=None) -> list[tuple]:
    """Each case in a worker process (a crashing driver takes one worker, not the run)."""
    results = []
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs, maxtasksperchild=200) as pool:
        for result in pool.imap_unordered(_worker, [(c, mode) for c in cases]):
            results.append(result)
            if progress:
                progress(len(results), len(cases), result)
    return sorted(results)


def summary(results: list[tuple]) -> str:
    """The pass rate overall and per op, then a count of the reasons cases did not pass."""
    per_op = collections.defaultdict(collections.Counter)
    for _, op, status, _, _ in results:
        per_op[op][status] += 1
    total = collections.Counter(status for _, _, status, _, _ in results)
    n = len(results)
    lines = [f"ONNX node conformance: {total['pass']} / {n} cases pass "
             f"({100.0 * total['pass'] / max(n, 1):.1f}%); unsupported {total['unsupported']}, "
             f"failed {total['fail']}, errors {total['error']}", "",
             f"{'op':32s} {'pass':>5s} {'cases':>5s}  rate"]
    for op in sorted(per_op):
        c = per_op[op]
        count = sum(c.values())
        lines.append(f"{op:32s} {c['pass']:5d} {count:5d}  {100.0 * c['pass'] / count:5.1f}%")
    return "\n".join(lines)


def failures(results: list[tuple]) -> str:
    return "\n".join(f"{status:11s} {name}: {detail}" for name, _, status, detail, _ in results
                     if status != "pass")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("device", "interpret"), default="device")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--only", help="comma-separated op types")
    parser.add_argument("--json", help="write every case's result here")
    parser.add_argument("--failures", action="store_true", help="list cases that did not pass")
    parser.add_argument("--min-rate", type=float, default=0.0,
                        help="exit 1 when fewer than this percentage of the cases pass")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    started = time.perf_counter()
    cases = collect(only)
    print(f"{len(cases)} cases collected in {time.perf_counter() - started:.0f} s; running on"
          f" the {args.mode} with {args.jobs} processes", flush=True)

    def progress(done, count, result):
        if done % 100 == 0 or done == count:
            print(f"  {done}/{count} ({time.perf_counter() - started:.0f} s)", flush=True)

    results = run_all(cases, args.mode, args.jobs, progress)
    if args.failures:
        print(failures(results))
    print(summary(results))
    print(f"mode {args.mode}, {time.perf_counter() - started:.0f} s in all")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dict(zip(("name", "op", "status", "detail", "seconds"), r))
                       for r in results], f, indent=1)
    rate = 100.0 * sum(r[2] == "pass" for r in results) / max(len(results), 1)
    if rate < args.min_rate:
        print(f"pass rate {rate:.1f}% is below --min-rate {args.min_rate:g}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
