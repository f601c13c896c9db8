"""graphc serve: an export behind TensorFlow Serving's REST API (needs `graphc[serve]`).

    graphc serve mlp_export --name mlp --port 8501
    curl -d '{"instances": [[...784 floats...]]}' localhost:8501/v1/models/mlp:predict

Runs with the runtime alone (no compiler module is imported). uvicorn serves the starlette
app of graphc/serve/app.py; SIGTERM or Ctrl-C stops accepting connections, finishes the
requests in flight, then exits.
"""
from __future__ import annotations

import signal
import socket

from graphc.serve.errors import ServeError

INSTALL_HINT = "graphc serve needs the serve extra: pip install 'graphc[serve]'"
GRACE_SECONDS = 30


def serve(path, name: str | None = None, host: str = "127.0.0.1", port: int = 8501,
          device=None, batching: bool = True, max_delay_ms: float = 2.0,
          max_body_bytes: int | None = None, access_log: bool = False) -> None:
    """Load the export at `path` and serve it until SIGTERM/SIGINT."""
    try:
        import uvicorn

        from graphc.serve.app import MAX_BODY_BYTES, ModelServer
    except ImportError as err:
        raise ServeError(f"{INSTALL_HINT} ({err})") from None
    from graphc.runtime import load

    model = load(path, device)
    listener = _listen(host, port)
    bound = listener.getsockname()[1]
    server = ModelServer(model, name, batching, max_delay_ms, max_body_bytes or MAX_BODY_BYTES)
    url = f"http://{_url_host(host)}:{bound}/v1/models/{server.name}"

    def ready() -> None:
        batch = f"batches of {model.batch_size}" if model.batch_size else "whole tensors"
        how = f"dynamic batching within {max_delay_ms:g} ms" if batching and \
            model.batch_size else "no batching"
        print(f"graphc serve: {server.name} ({batch}, {how}) on {model.device.name} at {url}",
              flush=True)

    server.on_ready = ready
    config = uvicorn.Config(server.app(), log_level="warning", access_log=access_log,
                            timeout_graceful_shutdown=GRACE_SECONDS, lifespan="on")
    # uvicorn drains on SIGTERM/SIGINT, then raises the signal again for the handler found
    # before it ran; a no-op one there makes a drained shutdown a normal exit (status 0).
    previous = {sig: signal.signal(sig, _drained) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"graphc serve: {server.name} stopped after {server.batcher.calls} calls "
          f"({server.batcher.rows} rows)", flush=True)


def _drained(signum, frame) -> None:
    """The signal that stopped the server, raised again once it has drained: ignored."""


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it a keep-alive answer waits ~40 ms for the delayed ACK of its first segment
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as err:
        listener.close()
        raise ServeError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    listener.listen(2048)
    return listener


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def main_serve(args) -> int:
    """`graphc serve` (graphc/cli.py reports a GraphcError on one line, status 2)."""
    serve(args.path, args.name, args.host, args.port, args.device, not args.no_batching,
          args.max_delay_ms, int(args.max_body_mb * (1 << 20)), args.access_log)
    return 0
