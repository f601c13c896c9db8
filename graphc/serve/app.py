"""The ASGI application (starlette) answering TensorFlow Serving's REST API for one export.

    GET  /v1/models/NAME[/versions/1]             model status
    GET  /v1/models/NAME[/versions/1]/metadata    signature
    POST /v1/models/NAME[/versions/1]:predict     {"instances": ...} or {"inputs": ...}

Errors are {"error": "..."} with a 4xx status (5xx when the device fails), and the server
goes on serving. The model runs in one worker thread (graphc/serve/batcher.py), started and
drained with the application's lifespan.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphc.serve.batcher import Batcher
from graphc.serve.rest import (RequestError, encode, metadata_response, parse_predict,
                               predict_response, status_response)

VERSION = "1"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")
MAX_BODY_BYTES = 32 << 20
_PATH = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)"
                   r"|/labels/(?P<label>[^/:]+))?(?P<what>/metadata|:[A-Za-z]+)?")


def json_response(content: object, status: int = 200) -> Response:
    """JSON as TensorFlow Serving writes it (NaN and Infinity as tokens)."""
    return Response(encode(content), status, media_type="application/json")


def error_response(message: str, status: int) -> Response:
    return json_response({"error": message}, status)


class ModelServer:
    """One loaded export behind the REST API."""

    def __init__(self, model, name: str | None = None, batching: bool = True,
                 max_delay_ms: float = 2.0, max_body_bytes: int = MAX_BODY_BYTES,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.model = model
        self.name = name or model.name
        if not _NAME.fullmatch(self.name):
            from graphc.serve.errors import ServeError
            raise ServeError(f"model name {self.name!r} cannot be part of a URL: name it with "
                             f"letters, digits, '.', '_' or '-' (--name)")
        self.batched = _batch_axis(model) is not None
        self.receiving = 0          # predict requests read or parsed, not yet submitted
        self.batcher = Batcher(model, _batch_axis(model), batching, max_delay_ms / 1000,
                               lambda: self.receiving)
        self.max_body_bytes = max_body_bytes
        self.on_ready = on_ready

    def app(self) -> Starlette:
        """The starlette application."""
        routes = [Route("/v1/models/{rest:path}", self.endpoint, methods=["GET", "POST"])]
        return Starlette(routes=routes, lifespan=self.lifespan,
                         exception_handlers={404: self._not_found, 405: self._not_allowed})

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.batcher.start()
        if self.on_ready:
            self.on_ready()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, self.batcher.close)

    async def endpoint(self, request: Request) -> Response:
        try:
            what = self._route(request)
            if what == ":predict":
                return await self._predict(request)
            if what == "/metadata":
                return json_response(metadata_response(self.name, VERSION, self.model.inputs,
                                                       self.model.outputs, self.batched))
            return json_response(status_response(VERSION))
        except RequestError as err:
            return error_response(str(err), err.status)

    def _route(self, request: Request) -> str:
        """'' (status), '/metadata' or ':predict' for a path of this model, else an error."""
        match = _PATH.fullmatch(request.path_params["rest"])
        if match is None:
            raise RequestError(f"no such resource: {request.url.path}", 404)
        if match["name"] != self.name or match["label"] is not None or \
                match["version"] not in (None, VERSION):
            raise RequestError(f"Servable not found for request: {_servable(match)}", 404)
        what = match["what"] or ""
        if what not in ("", "/metadata", ":predict"):
            raise RequestError(f"{what[1:]!r} is not served: this server answers predict, "
                               f"status and metadata", 404)
        method = "POST" if what == ":predict" else "GET"
        if request.method != method:
            raise RequestError(f"{request.url.path} takes {method}, not {request.method}", 405)
        return what

    async def _predict(self, request: Request) -> Response:
        self.receiving += 1
        try:
            body = await self._body(request)
            parsed = parse_predict(body, self.model.inputs, self.batched)
        finally:
            self.receiving -= 1
        try:
            futures = self.batcher.submit(parsed.arrays, parsed.rows)
        except RuntimeError as err:
            return error_response(str(err), 503)
        try:
            parts = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        except Exception as err:        # the device failed: say so, keep serving
            return error_response(f"the model failed: {type(err).__name__}: {err}", 500)
        outputs = parts[0] if len(parts) == 1 else \
            [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
        return json_response(predict_response(outputs, self.model.outputs, parsed.columnar))

    async def _body(self, request: Request) -> bytes:
        """The request body, refused (413) once it is over the limit, before it is read."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise RequestError(self._too_large(int(declared)), 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RequestError(self._too_large(size), 413)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, size: int) -> str:
        return (f"request body of {size} bytes or more is over this server's limit of "
                f"{self.max_body_bytes} bytes: send fewer rows per request")

    async def _not_found(self, request: Request, exc) -> Response:
        return error_response(f"no such resource: {request.url.path} (the API is under "
                              f"/v1/models/{self.name})", 404)

    async def _not_allowed(self, request: Request, exc) -> Response:
        return error_response(f"{request.url.path} does not take {request.method}", 405)


def _batch_axis(model) -> int | None:
    """The batch size requests are split and padded to, or None (whole tensors only)."""
    return model.batch_size


def _servable(match: re.Match) -> str:
    if match["version"]:
        return f"Specific({match['name']}, {match['version']})"
    if match["label"]:
        return f"Label({match['name']}, {match['label']})"
    return f"Latest({match['name']})"


def create_app(model, **options) -> Starlette:
    """The ASGI app serving `model` (a graphc.runtime.LoadedFunction); options as
    ModelServer's."""
    return ModelServer(model, **options).app()
