"""The composition root: build the Starlette app from settings. No logic lives here.

Usage::

    app = create_app(settings, source="casegate.yaml")     # an ASGI app
    uvicorn.run("gateway.app:app_from_env", factory=True)  # what `casegate serve` does
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.admin import admin_routes
from gateway.api import (
    CHAT_PATH,
    JSONBytes,
    chat_completions,
    client_routes,
    gateway_error_response,
)
from gateway.console import console_routes
from gateway.drain import current as current_drain
from gateway.drain import grace_s
from gateway.errors import GatewayError, NotFound, error_body, error_type_for
from gateway.health import health_routes
from gateway.openapi import openapi_route
from gateway.runtime import Runtime
from gateway.settings import Settings

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger("casegate")
#: headers are metadata: a client sending more than this is refused with 431
MAX_HEADER_BYTES = 32 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """``X-Request-Id`` on every response (the client's, when it is sane), and the
    shortcut for chat calls.

    ``POST /v1/chat/completions``, the hot path, goes straight to its endpoint rather
    than through Starlette's two middlewares, its router and its route wrappers: those
    layers were a twentieth of a governed call's CPU (issue 10's profile). Errors are
    handled here as Starlette's layers handle them for every other route: a
    ``GatewayError`` becomes its error response, anything else the 500 of
    ``_unexpected`` and is raised again for the server to log, and an error after the
    response started is raised as it is. Every other request goes to ``app``.
    """

    def __init__(self, app: ASGIApp, *, starlette: Starlette | None = None) -> None:
        self.app = app
        self.starlette = starlette

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                rid = text if _REQUEST_ID.match(text) else None
                break
        rid = rid or f"req_{os.urandom(16).hex()}"  # (as uuid4().hex is, at a fraction)
        scope["casegate.request_id"] = rid
        scope["casegate.t0"] = time.monotonic()
        raw = rid.encode()
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            body = orjson.dumps(
                error_body(
                    f"The request headers are larger than {MAX_HEADER_BYTES} bytes",
                    "invalid_request_error",
                    "headers_too_large",
                    None,
                )
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 431,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-request-id", raw),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", raw))
                message["headers"] = headers
            await send(message)

        if (
            self.starlette is None
            or scope["path"] != CHAT_PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send_with_id)
            return
        scope["app"] = self.starlette  # what Starlette sets: ``request.app`` holds the runtime
        request = Request(scope, receive)
        try:
            try:
                response = await chat_completions(request)
                await response(scope, receive, send_with_id)
            except GatewayError as exc:
                if started:
                    raise RuntimeError(
                        "Caught handled exception, but response already started."
                    ) from exc
                await (await _gateway_error(request, exc))(scope, receive, send_with_id)
        except Exception as exc:
            if not started:
                await (await _unexpected(request, exc))(scope, receive, send_with_id)
            raise


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    span = request.scope.get("casegate.span")
    if span is not None:
        span.fail(exc.code)
        span.end(exc.status)
    log.log(exc.log_level, "%s %s -> %s %s", request.method, request.url.path, exc.status, exc.code)
    return gateway_error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        return gateway_error_response(NotFound(f"No such path: {request.url.path}"))
    code = {405: "method_not_allowed"}.get(status, "invalid_request")
    return JSONBytes(
        error_body(str(exc.detail), error_type_for(status), code, None),
        status_code=status,
        headers=dict(exc.headers or {}),
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONBytes(
        error_body(
            "The gateway failed to handle this request", "server_error", "internal_error", None
        ),
        status_code=500,
    )


def create_app(
    settings: Settings,
    *,
    source: str,
    environ: dict[str, str] | None = None,
    freeze_gc: bool = False,
) -> ASGIApp:
    """The ASGI app. `freeze_gc` (a worker process of its own, as `casegate serve` runs
    it): once started, everything alive is moved out of the cyclic garbage collector's
    reach (`gc.freeze`). The startup's objects live as long as the worker; the oldest
    generation's collections then skip them, and their pauses, which went to 40 ms with
    every module, bundle and pattern in them, drop to about a quarter."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt = await Runtime.start(settings, environ, source=source)
        app.state.runtime = rt
        if freeze_gc:
            gc.freeze()
        drain = current_drain()
        undo_drain = drain.install(grace_s(os.environ if environ is None else environ))
        try:
            yield
        finally:
            undo_drain()
            await drain.settle()  # end events of calls cut at the grace, before the store closes
            await rt.stop()

    routes: list[Route] = [
        *client_routes(),
        *admin_routes(),
        *console_routes(),
        *health_routes(),
        openapi_route(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    # Outermost, so that even the 500 of ServerErrorMiddleware carries X-Request-Id.
    return RequestIdMiddleware(app, starlette=app)


def app_from_env() -> Any:
    """The factory `casegate serve` hands to uvicorn (workers re-create it from env)."""
    from gateway.cli import settings_from_env

    settings, source = settings_from_env(os.environ)
    return create_app(settings, source=source, freeze_gc=True)
