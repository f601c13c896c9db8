"""graphc serve's dynamic batching (graphc/serve/batcher.py): rows of concurrent requests
share a device call, --no-batching makes one call per request, and --max-delay-ms bounds
how long a call waits for requests still being received.

The Batcher runs here on a recording stand-in for the loaded model (each call's rows and
time are kept, every row's answer is checked against its own request), so the counts are
exact; then a real `graphc serve` in a subprocess answers 24 concurrent 1-row requests and
reports its calls on SIGTERM ("stopped after N calls (R rows)").
"""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from graphc.serve.batcher import Batcher

BATCH = 4
WAIT = 60                       # seconds a future may take before the test gives up


class RecordingModel:
    """Doubles each row, like a loaded export of batch BATCH; keeps every call's real rows
    (rows are fed as their request number + 1, so padding rows are the zero ones)."""

    def __init__(self, gate: threading.Event | None = None):
        self.inputs = (SimpleNamespace(shape=(BATCH, 3), dtype=np.float32),)
        self.batch_size = BATCH
        self.gate = gate
        self.calls: list[tuple[float, list[int]]] = []

    def run(self, feeds):
        (x,) = feeds
        assert x.shape == (BATCH, 3), x.shape                   # padded to the batch
        self.calls.append((time.monotonic(), [int(v) - 1 for v in x[:, 0] if v]))
        if self.gate is not None:
            assert self.gate.wait(WAIT), "the test never opened the gate"
        return [x * 2]


def request(number: int, rows: int = 1) -> list[np.ndarray]:
    return [np.full((rows, 3), number + 1, np.float32)]


def answers_are_their_own(futures, numbers, rows: int = 1):
    """Every request's future holds twice its own rows, not another request's."""
    for number, parts in zip(numbers, futures):
        got = np.concatenate([f.result(WAIT)[0] for f in parts])
        np.testing.assert_array_equal(got, np.full((rows, 3), 2.0 * (number + 1)))


def run_while_held(batching: bool, count: int = 16):
    """The first request holds the model (its call waits on a gate) while `count - 1` more
    arrive; returns the model's record once all are answered."""
    gate = threading.Event()
    model = RecordingModel(gate)
    batcher = Batcher(model, BATCH, batching=batching, max_delay=0.0)
    batcher.start()
    try:
        futures = [batcher.submit(request(0), 1)]
        while not model.calls:                              # the first call has started
            time.sleep(0.001)
        futures += [batcher.submit(request(n), 1) for n in range(1, count)]
        gate.set()
        answers_are_their_own(futures, range(count))
    finally:
        gate.set()
        batcher.close()
    assert (batcher.calls, batcher.rows) == (len(model.calls), count)
    return [rows for _, rows in model.calls]


def test_requests_waiting_together_share_calls():
    calls = run_while_held(batching=True)
    # the first alone, then the 15 that queued behind it, in arrival order, 4 to a call
    assert calls == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15]]


def test_without_batching_every_request_is_a_call_of_its_own():
    assert run_while_held(batching=False) == [[n] for n in range(16)]


def test_a_request_of_many_rows_is_cut_to_the_batch_and_shares_its_last_call():
    gate = threading.Event()
    model = RecordingModel(gate)
    batcher = Batcher(model, BATCH, max_delay=0.0)
    batcher.start()
    try:
        first = batcher.submit(request(0), 1)
        while not model.calls:
            time.sleep(0.001)
        big = batcher.submit(request(1, rows=6), 6)               # chunks of 4 and 2 rows
        small = batcher.submit(request(2, rows=2), 2)
        gate.set()
        answers_are_their_own([first], [0])
        answers_are_their_own([big], [1], rows=6)
        answers_are_their_own([small], [2], rows=2)
    finally:
        gate.set()
        batcher.close()
    assert [rows for _, rows in model.calls] == [[0], [1] * 4, [1, 1, 2, 2]]


def _lone_request(max_delay: float, expecting: int, later: float | None = None):
    """One request submitted while `expecting` more are being received, and optionally a
    second one, the last received, `later` seconds after; returns (seconds to the first
    call, the calls)."""
    model = RecordingModel()
    receiving = [expecting]                 # as the server counts requests being read
    batcher = Batcher(model, BATCH, max_delay=max_delay, expecting=lambda: receiving[0])
    batcher.start()
    try:
        start = time.monotonic()
        futures = [batcher.submit(request(0), 1)]
        if later is not None:
            time.sleep(later)
            receiving[0] = 0
            futures.append(batcher.submit(request(1), 1))
        answers_are_their_own(futures, range(len(futures)))
    finally:
        batcher.close()
    return model.calls[0][0] - start, [rows for _, rows in model.calls]


def test_max_delay_waits_for_requests_being_received():
    waited, calls = _lone_request(max_delay=0.4, expecting=1)
    assert waited >= 0.4 and calls == [[0]]
    # a request that arrives within the delay joins the call, which then runs: nothing
    # more is being received
    waited, calls = _lone_request(max_delay=3.0, expecting=1, later=0.2)
    assert 0.2 <= waited < 3.0 and calls == [[0, 1]]


def test_max_delay_is_a_bound_not_a_wait_for_the_batch_to_fill():
    # past the delay the call runs without the late request, which gets a call of its own
    _, calls = _lone_request(max_delay=0.05, expecting=1, later=1.5)
    assert calls == [[0], [1]]
    # nothing on its way: a lone request runs at once, whatever the delay
    waited, calls = _lone_request(max_delay=30.0, expecting=0)
    assert waited < 15.0 and calls == [[0]]


def test_a_full_batch_does_not_wait_for_the_delay():
    model = RecordingModel()
    batcher = Batcher(model, BATCH, max_delay=30.0, expecting=lambda: 1)
    futures = [batcher.submit(request(n), 1) for n in range(BATCH)]   # queued before start
    start = time.monotonic()
    batcher.start()
    try:
        answers_are_their_own(futures, range(BATCH))
    finally:
        batcher.close()
    assert model.calls[0][0] - start < 15.0
    assert [rows for _, rows in model.calls] == [[0, 1, 2, 3]]


# ---- a real server ----

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
CLIENTS = 24
STOPPED = re.compile(r"stopped after (\d+) calls \((\d+) rows\)")


@pytest.fixture(scope="module")
def mlp(tmp_path_factory, cl_device):
    """(export path, Keras model) of a small MLP exported for batches of BATCH."""
    from graphc.models import mlp as mlp_model
    model = mlp_model.build((1, 8, 8), hidden=8)
    path = tmp_path_factory.mktemp("serve") / "mlp"
    model.export(path, batch_size=BATCH)
    return path, model


def serve_concurrently(path, *options: str):
    """CLIENTS 1-row requests released together at `graphc serve PATH options`; returns
    (the ready line, the answers in request order, calls, rows) from the SIGTERM report."""
    from test_serve import images, running_server
    rows = [images(1, seed=200 + i) for i in range(CLIENTS)]
    answers: list = [None] * CLIENTS
    with running_server(path, *options) as (url, process):
        clients = [httpx.Client(timeout=WAIT) for _ in range(CLIENTS)]
        for client in clients:              # connections open before the requests go out
            assert client.get(url).status_code == 200
        barrier = threading.Barrier(CLIENTS)

        def send(i):
            barrier.wait(WAIT)
            answers[i] = clients[i].post(f"{url}:predict",
                                         content=json.dumps({"instances": rows[i].tolist()}))
        threads = [threading.Thread(target=send, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        for client in clients:
            client.close()
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=WAIT) == 0, process.stderr.read()
        out = process.stdout.read()
    report = STOPPED.search(out)
    assert report, out
    return rows, answers, int(report[1]), int(report[2])


def _check_answers(model, rows, answers):
    for x, answer in zip(rows, answers):
        assert answer is not None and answer.status_code == 200, answer
        np.testing.assert_allclose(answer.json()["predictions"],
                                   model.predict(x, batch_size=BATCH), rtol=1e-5, atol=1e-6)


@pytest.mark.opencl
@pytest.mark.timeout(240)
def test_concurrent_requests_share_device_calls(mlp):
    path, model = mlp
    rows, answers, calls, served = serve_concurrently(path, "--max-delay-ms", "500")
    _check_answers(model, rows, answers)
    assert served == CLIENTS
    assert CLIENTS // BATCH <= calls < CLIENTS, f"{calls} calls for {CLIENTS} requests"


@pytest.mark.opencl
@pytest.mark.timeout(240)
def test_no_batching_makes_a_call_per_request(mlp):
    path, model = mlp
    rows, answers, calls, served = serve_concurrently(path, "--no-batching")
    _check_answers(model, rows, answers)
    assert (calls, served) == (CLIENTS, CLIENTS)
