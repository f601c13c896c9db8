"""Load test of `graphc serve`: rows/s and latency of concurrent clients on loopback.

    python bench/serve.py [--clients 1,8,32] [--rows 1] [--seconds 4] [--batch 32]

The example MLP (graphc.models.mlp: 784-512-512-10 on 1x28x28 images) is exported for
batches of --batch and served by `graphc serve` in a subprocess on 127.0.0.1 (an ephemeral
port), once with dynamic batching and once without. For each number of clients, that many
concurrent clients (one asyncio loop in this process, keep-alive connections) send
predict requests of --rows rows in the row format, request bodies encoded in advance, each
client sending its next request when its answer arrives, for --seconds (and at most
--max-requests requests). The clients are httpx.AsyncClient's, and a minimal HTTP/1.1
client on asyncio streams ("raw"): httpx costs ~2 ms of CPU per request here, more than
the server, on the same cores. Rows/s counts answered rows; latency is per request, sent to
answered. The ceiling is the in-process throughput of the same export: `model.predict` on
many rows, and the loaded function's calls on full batches. Some answers are checked
against in-process outputs. The clients share the machine's cores with the server.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TITLE = "graphc serve, MLP 784-512-512-10"
THROUGHPUT_GOAL = 0.5       # of in-process predict rows/s, at 32 clients
LATENCY_GOAL_MS = 20.0      # p99 of a 1-row request


def build_export(folder: Path, batch: int):
    """The example MLP, exported to folder/mlp; returns the model."""
    from graphc.models import mlp
    model = mlp.build((1, 28, 28))
    model.export(folder / "mlp", batch_size=batch)
    return model


def in_process_rates(model, path: Path, batch: int, seconds: float) -> dict:
    """Rows/s of model.predict on many rows, and of the loaded export on full batches."""
    from graphc.runtime import load
    x = np.random.default_rng(0).standard_normal((batch * 16, 1, 28, 28)).astype(np.float32)
    model.predict(x[:batch], batch_size=batch)
    predict_rate = _rate(lambda: model.predict(x, batch_size=batch), len(x), seconds)
    loaded = load(path)
    loaded.run([x[:batch]])
    call_rate = _rate(lambda: loaded.run([x[:batch]]), batch, seconds)
    return {"predict": predict_rate, "loaded": call_rate}


def _rate(step, rows: int, seconds: float) -> float:
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        step()
        done += rows
    return done / (time.perf_counter() - started)


class Server:
    """`graphc serve` in a subprocess on an ephemeral loopback port."""

    def __init__(self, path: Path, options: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "graphc", "serve", str(path), "--port", "0", *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        ready, _, _ = select.select([self.process.stdout], [], [], 120)
        line = self.process.stdout.readline() if ready else ""
        if " at " not in line:
            self.stop()
            raise RuntimeError(f"graphc serve did not start: {line}{self.process.stderr.read()}")
        self.url = line.rsplit(" at ", 1)[1].strip()

    def stop(self) -> str:
        """SIGTERM (drain), then the server's last line."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return out.strip().splitlines()[-1] if out.strip() else ""


async def load_test(url: str, bodies: list[bytes], rows: int, clients: int, seconds: float,
                    max_requests: int, kind: str) -> dict:
    """`clients` concurrent clients for `seconds`; rows/s and latency percentiles."""
    latencies: list[float] = []
    statuses: list[int] = []
    deadline = time.perf_counter() + seconds
    opened = await (_httpx_posts if kind == "httpx" else _raw_posts)(url, clients)
    post, close = opened
    await post(0, bodies[0])                        # a warm connection and server

    async def client(index: int) -> None:
        sent = index
        while time.perf_counter() < deadline and len(latencies) < max_requests:
            started = time.perf_counter()
            statuses.append(await post(index, bodies[sent % len(bodies)]))
            latencies.append(time.perf_counter() - started)
            sent += clients

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(i) for i in range(clients)))
    finally:
        elapsed = time.perf_counter() - started
        await close()
    ms = sorted(1e3 * t for t in latencies)
    failures = sum(status != 200 for status in statuses)
    return {"clients": clients, "requests": len(ms), "failures": failures,
            "rows_per_s": len(ms) * rows / elapsed, "p50": _percentile(ms, 50),
            "p99": _percentile(ms, 99)}


async def _httpx_posts(url: str, clients: int):
    """post(client, body) -> status over one httpx.AsyncClient (TCP_NODELAY, as curl)."""
    import socket

    import httpx
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    transport = httpx.AsyncHTTPTransport(
        limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    session = httpx.AsyncClient(transport=transport, timeout=60)

    async def post(index: int, body: bytes) -> int:
        return (await session.post(f"{url}:predict", content=body)).status_code
    return post, session.aclose


async def _raw_posts(url: str, clients: int):
    """post(client, body) -> status over one keep-alive connection per client, HTTP/1.1
    written and read by hand: a client that costs the shared CPU next to nothing."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    path = "/" + url.split("//", 1)[1].split("/", 1)[1] + ":predict"
    streams = [await asyncio.open_connection(host, int(port)) for _ in range(clients)]

    async def post(index: int, body: bytes) -> int:
        reader, writer = streams[index]
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                     f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in head
                      if line.lower().startswith("content-length:"))
        await reader.readexactly(length)
        return int(head[0].split()[1])

    async def close() -> None:
        for _, writer in streams:
            writer.close()
    return post, close


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def check_answers(url: str, model, x: np.ndarray, batch: int) -> float:
    """Largest difference between served and in-process predictions for rows `x`."""
    import httpx
    answer = httpx.post(f"{url}:predict", json={"instances": x.tolist()}, timeout=60)
    answer.raise_for_status()
    served = np.array(answer.json()["predictions"])
    return float(np.abs(served - model.predict(x, batch_size=batch)).max())


def measure(args: argparse.Namespace) -> dict:
    """Every measurement of the report."""
    results: dict = {"load_start": os.getloadavg()[0], "runs": []}
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((64, args.rows, 1, 28, 28)).astype(np.float32)
    bodies = [json.dumps({"instances": r.tolist()}).encode() for r in rows]
    with tempfile.TemporaryDirectory() as folder:
        model = build_export(Path(folder), args.batch)
        path = Path(folder) / "mlp"
        results["ceiling"] = in_process_rates(model, path, args.batch, args.seconds)
        for batching in (True, False):
            options = ["--max-delay-ms", str(args.max_delay_ms)] if batching \
                else ["--no-batching"]
            server = Server(path, options)
            try:
                results.setdefault("error", check_answers(server.url, model, rows[0],
                                                          args.batch))
                for kind in args.client:
                    for clients in args.clients:
                        run = asyncio.run(load_test(server.url, bodies, args.rows, clients,
                                                    args.seconds, args.max_requests, kind))
                        results["runs"].append(dict(run, batching=batching, client=kind))
            finally:
                results.setdefault("server_lines", []).append(server.stop())
    results["load_end"] = os.getloadavg()[0]
    return results


def report(results: dict, args: argparse.Namespace) -> list[str]:
    """The Markdown table and the goals."""
    ceiling = results["ceiling"]["predict"]
    lines = [f"{TITLE}: export batch {args.batch}, {args.rows}-row requests, "
             f"{args.seconds:g} s per run, dynamic batching within {args.max_delay_ms:g} ms; "
             f"load average {results['load_start']:.1f} at start, {results['load_end']:.1f} "
             f"at end (2 cores shared with the clients and other work)",
             f"in-process: model.predict {ceiling:,.0f} rows/s; the loaded export on full "
             f"batches {results['ceiling']['loaded']:,.0f} rows/s; served = in-process "
             f"within {results['error']:.1e}", "",
             "| client | clients | batching | requests | rows/s | of in-process predict | "
             "p50 ms | p99 ms | failed |", "|---|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        lines.append(f"| {run['client']} | {run['clients']} | "
                     f"{'on' if run['batching'] else 'off'} | "
                     f"{run['requests']:,} | {run['rows_per_s']:,.0f} | "
                     f"{run['rows_per_s'] / ceiling:.0%} | {run['p50']:.1f} | "
                     f"{run['p99']:.1f} | {run['failures']} |")
    lines += ["", "Goals:"] + goals(results, args)
    return lines


def goals(results: dict, args: argparse.Namespace) -> list[str]:
    """The issue's two goals, per client kind, with batching on."""
    ceiling = results["ceiling"]["predict"]
    lines = []
    for kind in args.client:
        runs = [r for r in results["runs"] if r["batching"] and r["client"] == kind]
        most = max(runs, key=lambda r: r["clients"])
        single = min(runs, key=lambda r: r["clients"])
        share = most["rows_per_s"] / ceiling
        met = "met" if share >= THROUGHPUT_GOAL else "not met"
        lines.append(f"- {kind} clients: {most['clients']} clients ≥ {THROUGHPUT_GOAL:.0%} of "
                     f"in-process predict rows/s: **{met}** ({share:.0%})")
        if args.rows == 1:
            p99 = single["p99"]
            verdict = "met" if p99 <= LATENCY_GOAL_MS else "not met"
            lines.append(f"- {kind} clients: p99 of a 1-row request ≤ {LATENCY_GOAL_MS:g} ms "
                         f"({single['clients']} client): **{verdict}** ({p99:.1f} ms)")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,32",
                        help="comma-separated numbers of concurrent clients")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--client", default="httpx,raw",
                        help="load generators: httpx (httpx.AsyncClient) and/or raw (HTTP/1.1 "
                             "by hand on asyncio streams, nearly free of CPU)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per run")
    parser.add_argument("--max-requests", type=int, default=20000,
                        help="at most this many requests per run")
    parser.add_argument("--batch", type=int, default=32, help="the export's batch size")
    parser.add_argument("--max-delay-ms", type=float, default=2.0,
                        help="the server's batching latency bound")
    args = parser.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    args.client = [c.strip() for c in args.client.split(",") if c.strip()]
    if set(args.client) - {"httpx", "raw"}:
        parser.error("--client takes httpx and/or raw")
    return args


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    args = parse_args(argv)
    print("\n".join(report(measure(args), args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
