"""The client API over HTTP: translate requests to the pipeline and back.

Usage::

    routes = client_routes()      # mounted by gateway.app.create_app

``POST /v1/chat/completions``, ``GET /v1/models``, and the OpenAI paths Casegate does
not serve (answered with an OpenAI-shaped 404 ``not_supported``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.errors import GatewayError, NotFound, RequestTooLarge
from gateway.pipeline import After, run_after, run_chat
from gateway.runtime import Runtime
from tracing import attributes as attr

__all__ = ["CHAT_PATH", "JSONBytes", "chat_completions", "client_routes", "read_body"]

CHAT_PATH = "/v1/chat/completions"


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _Answer(JSONBytes):
    """A chat answer: once it is sent (or could not be), the call's queued telemetry runs
    and its span ends (see `gateway.pipeline.After`)."""

    def __init__(
        self, content: Any, headers: Mapping[str, str], after: After | None, span: Any
    ) -> None:
        super().__init__(content, headers=headers)
        self._after = after
        self._span = span

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            run_after(self._after)
            self._span.end(200)


class EventStream(Response):
    """A ``text/event-stream`` response from an async iterator of bytes that stops when
    the client goes.

    Starlette's StreamingResponse watches for the disconnect with an anyio task group
    (a task, a cancel scope, and a cancellation delivered at the end of every stream):
    a tenth of a stream's CPU in the gateway. Here the body is sent from the request's
    own task and one plain task waits on ``receive()``; if the client goes before the
    last chunk, that task cancels the request's task, which ends the body iterator
    where it waits (its ``finally`` records the call) and then returns quietly. A
    cancellation from anyone else still propagates.
    """

    media_type = "text/event-stream"

    def __init__(self, chunks: AsyncIterator[bytes], headers: Mapping[str, str]) -> None:
        self.body_iterator = chunks
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        me = asyncio.current_task()
        assert me is not None
        finished = gone = False

        async def listen() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            if not finished:
                gone = True
                me.cancel()

        listener = asyncio.get_running_loop().create_task(listen())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone or me.uncancel() > 0:
                raise
        finally:
            listener.cancel()
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()  # a no-op once it ended; else its cleanup runs now


def plain_headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """A request's headers as a plain dict (ASGI names are lower case), the first of a
    repeated name winning as in Starlette's ``Headers``: one pass, where each lookup
    in ``Headers`` scans the list (and a missing name raises and catches a KeyError)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(raw)}


async def read_body(
    request: Request, limit: int, headers: Mapping[str, str] | None = None
) -> bytes:
    """The body, 413 past `limit` bytes (declared or read): read from the ASGI
    ``http.request`` messages directly, as ``Request.stream()`` reads them but without
    its async generator (a tenth of the chat path's reading and parsing). A client
    that goes first raises Starlette's ``ClientDisconnect``, as there."""
    declared = (request.headers if headers is None else headers).get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes")
    receive = request.receive
    chunks = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise RequestTooLarge(f"The request body is larger than {limit} bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif kind == "http.disconnect":
            raise ClientDisconnect()


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def chat_completions(request: Request) -> Response:
    rt = runtime(request)
    request_id: str = request.scope["casegate.request_id"]
    span = rt.telemetry.server_span(
        "POST /v1/chat/completions", request.scope["headers"], {"http.request.method": "POST"}
    )
    request.scope["casegate.span"] = span
    headers = plain_headers(request.scope["headers"])
    client = rt.directory.client_for(headers.get("authorization"))
    span.set(attr.CASEGATE_CLIENT, client.name)
    body_error: RequestTooLarge | None = None
    try:
        raw = await read_body(request, rt.settings.limits.max_body_bytes, headers)
    except RequestTooLarge as exc:
        raw, body_error = b"", exc  # refused in the pipeline, so the call has its record
    result = await run_chat(
        rt,
        client,
        raw,
        headers,
        request_id=request_id,
        span=span,
        started_mono=request.scope.get("casegate.t0"),
        body_error=body_error,
    )
    if result.stream is not None:
        return EventStream(
            _ending(result.stream, span),
            headers={**result.headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return _Answer(result.body, result.headers, result.after, span)


async def _ending(stream: AsyncIterator[bytes], span: Any) -> AsyncIterator[bytes]:
    try:
        async for piece in stream:
            yield piece
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        span.end(200)


async def list_models(request: Request) -> Response:
    rt = runtime(request)
    client = rt.directory.client_for(request.headers.get("authorization"))
    policy = rt.policy
    routes = sorted(
        {
            uc.route
            for name, uc in policy.loaded.policy.use_cases.items()
            if name in client.use_cases
        }
    )
    created = int(rt.started_at)
    return JSONBytes(
        {
            "object": "list",
            "data": [
                {"id": r, "object": "model", "created": created, "owned_by": "casegate"}
                for r in routes
            ],
        }
    )


async def get_draft(request: Request) -> Response:
    """``GET /v1/drafts/{id}``: the calling client's own draft (another's is 404)."""
    rt = runtime(request)
    client = rt.directory.client_for(request.headers.get("authorization"))
    return JSONBytes(await rt.drafts.for_client(request.path_params["draft_id"], client.name))


async def release_keys(request: Request) -> Response:
    """``GET /.well-known/casegate-release-keys``: the JWKS that verifies release tokens."""
    return JSONBytes(runtime(request).keys.public_jwks(), headers={"Cache-Control": "max-age=300"})


async def record_outcome(request: Request) -> Response:
    """``POST /v1/lineage/{id}/outcome``: one outcome per record, by the calling client."""
    from pydantic import ValidationError

    from gateway.errors import InvalidRequest
    from gateway.records import OutcomeBody
    from gateway.records import record_outcome as record

    rt = runtime(request)
    client = rt.directory.client_for(request.headers.get("authorization"))
    raw = await read_body(request, rt.settings.limits.max_body_bytes)
    try:
        body = OutcomeBody.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or None
        msg = f"Invalid outcome: {where or 'body'}: {err['msg']}"
        raise InvalidRequest(msg, param=where) from None
    out = await record(
        rt.store, rt.lineage, client=client.name, lineage_id=request.path_params["id"], body=body
    )
    return JSONBytes(out)


async def not_supported(request: Request) -> Response:
    raise NotFound(
        f"{request.method} {request.url.path} is not supported by Casegate: "
        "it serves /v1/chat/completions and /v1/models",
        code="not_supported",
    )


def client_routes() -> list[Route]:
    return [
        Route(CHAT_PATH, chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/drafts/{draft_id}", get_draft, methods=["GET"]),
        Route("/.well-known/casegate-release-keys", release_keys, methods=["GET"]),
        Route("/v1/lineage/{id}/outcome", record_outcome, methods=["POST"]),
        Route("/v1/{rest:path}", not_supported, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]


def gateway_error_response(exc: GatewayError) -> Response:
    return JSONBytes(exc.body(), status_code=exc.status, headers=exc.response_headers())
