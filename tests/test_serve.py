"""graphc serve: TensorFlow Serving's REST API over an export. Request cases run in-process
(starlette's TestClient); concurrency and SIGTERM run a real server in a subprocess on an
ephemeral loopback port, always stopped at the end."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
with warnings.catch_warnings():     # starlette asks for httpx2 where httpx is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from graphc.runtime import load  # noqa: E402
from graphc.serve.app import create_app  # noqa: E402

pytestmark = pytest.mark.opencl
BATCH = 4


@pytest.fixture(scope="module")
def mlp(tmp_path_factory, cl_device):
    """(export path, Keras model) of a small MLP exported for batches of 4."""
    from graphc.models import mlp as mlp_model
    model = mlp_model.build((1, 8, 8), hidden=8)
    path = tmp_path_factory.mktemp("serve") / "mlp"
    model.export(path, batch_size=BATCH)
    return path, model


@pytest.fixture(scope="module")
def two_io(tmp_path_factory, cl_device):
    """An export with inputs a (float32[3, 2]) and n (int32[3]) and outputs sum, scaled."""
    a = gc.placeholder((3, 2), gc.float32, name="a")
    n = gc.placeholder((3,), gc.int32, name="n")
    fn = gc.function([a, n], [gc.sum(a, axis=1) + gc.cast(n, gc.float32), a * 2.0])
    path = tmp_path_factory.mktemp("serve") / "two"
    fn.export(path, name="two", output_names=["sum", "scaled"], batch_size=3)
    return path


@pytest.fixture(scope="module")
def client(mlp):
    with TestClient(create_app(load(mlp[0]), max_body_bytes=1 << 16)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def two_client(two_io):
    with TestClient(create_app(load(two_io))) as test_client:
        yield test_client


def images(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 1, 8, 8)).astype(np.float32)


def predict(client, body, name: str = "mlp"):
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(f"/v1/models/{name}:predict", content=content)


def test_status(client):
    answer = client.get("/v1/models/mlp")
    assert answer.status_code == 200
    assert answer.json() == {"model_version_status": [{
        "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK",
                                                        "error_message": ""}}]}
    assert client.get("/v1/models/mlp/versions/1").json() == answer.json()


def test_metadata(client, mlp):
    meta = client.get("/v1/models/mlp/metadata").json()
    assert meta["model_spec"] == {"name": "mlp", "signature_name": "", "version": "1"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (name, spec), = signature["inputs"].items()
    assert name == mlp[1].inputs[0].name and spec["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in spec["tensor_shape"]["dim"]] == ["-1", "1", "8", "8"]
    (out, spec), = signature["outputs"].items()
    assert [d["size"] for d in spec["tensor_shape"]["dim"]] == ["-1", "10"]
    assert signature["method_name"] == "tensorflow/serving/predict"


@pytest.mark.parametrize("rows", [1, BATCH, 10])
def test_predict_row_format_splits_and_pads_to_the_batch(client, mlp, rows):
    x = images(rows, seed=rows)
    answer = predict(client, {"instances": x.tolist()})
    assert answer.status_code == 200, answer.text
    expected = mlp[1].predict(x, batch_size=BATCH)
    np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-5, atol=1e-6)


def test_predict_columnar_format(client, mlp):
    x = images(6, seed=7)
    answer = predict(client, {"inputs": x.tolist(), "signature_name": "serving_default"})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["outputs"], mlp[1].predict(x, batch_size=BATCH),
                               rtol=1e-5, atol=1e-6)


def test_single_input_by_name_in_both_formats(client, mlp):
    x, name = images(2, seed=3), mlp[1].inputs[0].name
    expected = mlp[1].predict(x, batch_size=BATCH)
    rows = predict(client, {"instances": [{name: row} for row in x.tolist()]}).json()
    columns = predict(client, {"inputs": {name: x.tolist()}}).json()
    np.testing.assert_allclose(rows["predictions"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(columns["outputs"], expected, rtol=1e-5, atol=1e-6)


def test_named_inputs_and_outputs(two_client):
    a = [[1.0, 2.0], [3.0, 4.0]]
    answer = predict(two_client, {"instances": [{"a": a[0], "n": 10}, {"a": a[1], "n": 20}]},
                     "two")
    assert answer.json() == {"predictions": [{"sum": 13.0, "scaled": [2.0, 4.0]},
                                             {"sum": 27.0, "scaled": [6.0, 8.0]}]}
    answer = predict(two_client, {"inputs": {"a": a, "n": [10, 20]}}, "two")
    assert answer.json() == {"outputs": {"sum": [13.0, 27.0],
                                         "scaled": [[2.0, 4.0], [6.0, 8.0]]}}


BAD_REQUESTS = [
    (b"{not json", 400, "malformed JSON"),
    (b"", 400, "empty request body"),
    (b"[1, 2]", 400, "the request must be a JSON object, not a list"),
    ({"rows": [1]}, 400, "unknown request fields ['rows']"),
    ({}, 400, "needs 'instances' (row format) or 'inputs' (columnar format), exactly one"),
    ({"instances": [], "inputs": []}, 400, "exactly one of them"),
    ({"instances": []}, 400, "'instances' must be a non-empty list of rows"),
    ({"instances": [[[1.0] * 8] * 8]}, 400, "expected shape (rows, 1, 8, 8), got (1, 8, 8)"),
    ({"inputs": [[[["x"] * 8] * 8]]}, 400, "expected float32 values, got strings"),
    ({"instances": [[[[1.0] * 8] * 8], [[[1.0] * 7] * 8]]}, 400, "not a regular nested list"),
    ({"instances": [{"other": 1}]}, 400, "instance 0 has inputs ['other'], the model takes"),
    ({"instances": [1], "signature_name": "classify"}, 400, "unknown signature_name"),
    ({"inputs": [[[[1e3] * 8] * 8]] * 5000}, 413, "over this server's limit of 65536 bytes"),
]


@pytest.mark.parametrize("body,status,message", BAD_REQUESTS)
def test_bad_requests_are_4xx_with_an_error_and_the_server_keeps_serving(client, body,
                                                                        status, message):
    answer = predict(client, body)
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert predict(client, {"instances": images(1).tolist()}).status_code == 200


def test_bad_dtypes_and_rows_of_named_inputs(two_client):
    answer = predict(two_client, {"inputs": {"a": [[1.0, 2.0]], "n": [1.5]}}, "two")
    assert answer.status_code == 400
    assert answer.json()["error"] == "input 'n': expected int32 values, got floats"
    answer = predict(two_client, {"inputs": {"a": [[1.0, 2.0]], "n": [1, 2]}}, "two")
    assert "inputs have different numbers of rows: {'a': 1, 'n': 2}" in answer.json()["error"]
    answer = predict(two_client, {"inputs": [[1.0, 2.0]]}, "two")
    assert "'inputs' must be an object naming them" in answer.json()["error"]


@pytest.mark.parametrize("method,path,status,message", [
    ("get", "/v1/models/nope", 404, "Servable not found for request: Latest(nope)"),
    ("get", "/v1/models/mlp/versions/2", 404, "Specific(mlp, 2)"),
    ("get", "/v1/models/mlp:predict", 405, "takes POST, not GET"),
    ("post", "/v1/models/mlp/metadata", 405, "takes GET, not POST"),
    ("post", "/v1/models/mlp:classify", 404, "'classify' is not served"),
    ("get", "/v2/elsewhere", 404, "no such resource: /v2/elsewhere"),
])
def test_bad_paths(client, method, path, status, message):
    answer = getattr(client, method)(path)
    assert answer.status_code == status and message in answer.json()["error"]


def test_an_oversized_body_is_refused_from_its_declared_length(client):
    answer = client.post("/v1/models/mlp:predict", content=b"x" * 10,
                         headers={"content-length": str(1 << 30)})
    assert answer.status_code == 413


# ---- a real server ----

@contextmanager
def running_server(path, *options: str):
    """`graphc serve PATH --port 0 ...` in a subprocess: yields (base URL, process)."""
    process = subprocess.Popen([sys.executable, "-m", "graphc", "serve", str(path),
                                "--port", "0", *options], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline() if ready else ""
        assert "graphc serve:" in line, line + process.stderr.read() if not ready else line
        url = line.rsplit(" at ", 1)[1].strip()
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


@pytest.mark.timeout(180)
def test_32_concurrent_clients_with_a_bad_request_among_them(mlp):
    path, model = mlp
    requests = [images(1 + i % 5, seed=100 + i) for i in range(32)]
    expected = [model.predict(x, batch_size=BATCH) for x in requests]
    answers: dict = {}
    with running_server(path) as (url, _):
        def send(i):
            body = b"{bad json" if i == 16 else json.dumps({"instances": requests[i].tolist()})
            answers[i] = httpx.post(f"{url}:predict", content=body, timeout=60)
        threads = [threading.Thread(target=send, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    assert sorted(answers) == list(range(32))
    assert answers[16].status_code == 400 and "malformed JSON" in answers[16].json()["error"]
    for i in set(range(32)) - {16}:
        assert answers[i].status_code == 200, answers[i].text
        np.testing.assert_allclose(answers[i].json()["predictions"], expected[i], rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.timeout(180)
def test_sigterm_finishes_the_requests_in_flight_then_exits(mlp):
    path, model = mlp
    x = images(1, seed=5)
    answers: list = []
    with running_server(path, "--max-delay-ms", "1500", "--name", "m") as (url, process):
        assert url.endswith("/v1/models/m")

        clients = [httpx.Client(timeout=60) for _ in range(2)]
        for client in clients:          # connections accepted before the requests go out
            assert client.get(url).status_code == 200

        def send(client):
            answers.append(client.post(f"{url}:predict", json={"instances": x.tolist()}))
        threads = [threading.Thread(target=send, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        time.sleep(0.7)                 # received, and waiting for their batch to fill
        os.kill(process.pid, signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        assert process.wait(timeout=60) == 0
        for client in clients:
            client.close()
    assert len(answers) == 2
    for answer in answers:
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["predictions"],
                                   model.predict(x, batch_size=BATCH), rtol=1e-5, atol=1e-6)


def test_nan_and_infinity_pass_as_tokens_both_ways(tmp_path, cl_device):
    x = gc.placeholder((2,), gc.float32, name="x")
    gc.function([x], gc.log(x), name="log").export(tmp_path / "log", batch_size=2)
    with TestClient(create_app(load(tmp_path / "log"))) as test_client:
        answer = predict(test_client, b'{"instances": [-1.0, Infinity, NaN]}', "log")
        assert answer.status_code == 200
        assert answer.text == '{"predictions":[NaN,Infinity,NaN]}'
        answer = predict(test_client, {"inputs": [1.0, 1.0]}, "log")
        assert answer.text == '{"outputs":[0.0,0.0]}'


def test_serving_a_bad_export_or_a_taken_port_is_one_line_and_status_2(mlp, tmp_path):
    done = subprocess.run([sys.executable, "-m", "graphc", "serve", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("none: no export there (no such folder)")
    assert "Traceback" not in done.stderr
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "graphc", "serve", str(mlp[0]), "--port",
                               str(port)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr


def test_an_export_without_a_batch_axis_takes_whole_tensors(tmp_path, cl_device):
    x = gc.placeholder((2, 2), gc.float32, name="m")
    gc.function([x], [gc.sum(x), x.T], name="whole").export(tmp_path / "whole")
    with TestClient(create_app(load(tmp_path / "whole"))) as test_client:
        meta = test_client.get("/v1/models/whole/metadata").json()
        signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert [d["size"] for d in signature["inputs"]["m"]["tensor_shape"]["dim"]] == ["2",
                                                                                        "2"]
        answer = predict(test_client, {"inputs": [[1, 2], [3, 4]]}, "whole")
        assert answer.json() == {"outputs": {"output_0": 10.0,
                                             "output_1": [[1.0, 3.0], [2.0, 4.0]]}}
        answer = predict(test_client, {"inputs": [[1, 2]]}, "whole")
        assert answer.status_code == 400
        assert answer.json()["error"] == "input 'm': expected shape (2, 2), got (1, 2)"


def test_a_model_name_that_cannot_be_in_a_url_is_refused(mlp):
    from graphc.serve import ServeError
    with pytest.raises(ServeError, match="model name 'a/b' cannot be part of a URL"):
        create_app(load(mlp[0]), name="a/b")
