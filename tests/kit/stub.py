"""An OpenAI-compatible upstream stub for tests, benchmarks and demos.

The stub is a real HTTP server (aiohttp.web) bound to 127.0.0.1 on a free port. It runs
on its own event loop in a background thread, so synchronous tests, async tests (on any
loop) and the gateway under test can all talk to it over real sockets::

    from tests.kit.stub import Reply, UpstreamStub

    with UpstreamStub() as stub:                     # or stub.start() ... stub.stop()
        stub.script(Reply.text("hello"), Reply.error(429, retry_after=1))
        stub.set_default(Reply.error(500), model="dead-model")   # sticky
        ...                                          # point a route at stub.url
        req = stub.wait_for_requests(1)[0]           # RecordedRequest
        assert req.json["messages"][0]["content"] == "hi"

Endpoints: ``POST /v1/chat/completions`` (stream and non-stream) and ``GET /v1/models``.
Anything else answers an OpenAI-shaped 404. Every request is recorded.

Which reply a chat completion gets, first match wins:

1. the queue scripted for the request's ``model`` (``script(..., model=m)``), FIFO;
2. the sticky default for that model (``set_default(r, model=m)``);
3. the queue scripted for any model (``script(...)``), FIFO;
4. the sticky default for any model (``set_default(r)``);
5. the built-in reply: ``"stub reply"``, usage 10/5/15, ``finish_reason="stop"``.

Whether a reply streams follows the request's ``stream`` flag: text, tool-call and
chunk replies render as SSE when the request asked to stream, as JSON otherwise. In a
stream, a "chunk" is one ``data:`` event carrying a ``chat.completion.chunk`` (the
usage chunk and the finish chunk count; ``[DONE]`` does not). The first chunk carries
``role: "assistant"`` together with the first delta.

A test-suite fixture (e.g. in ``tests/conftest.py``): one stub per session, wiped per
test::

    @pytest.fixture(scope="session")
    def upstream_server() -> Iterator[UpstreamStub]:
        with UpstreamStub() as stub:
            yield stub

    @pytest.fixture
    def upstream(upstream_server: UpstreamStub) -> UpstreamStub:
        upstream_server.clear()
        return upstream_server

Run as a process (benchmarks, the README demo)::

    python -m tests.kit.stub --port 9000 [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

__all__ = ["RecordedRequest", "Reply", "ToolCall", "UpstreamStub"]

DEFAULT_CONTENT = "stub reply"
DEFAULT_USAGE = (10, 5)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

_WORDS = re.compile(r"\s*\S+|\s+$")


def _split_words(content: str) -> tuple[str, ...]:
    """Split text into deltas the way a model streams it: ``"a b"`` -> ``("a", " b")``."""
    parts = tuple(_WORDS.findall(content))
    return parts or (content,)


def _split_fixed(text: str, size: int) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(text[i : i + size] for i in range(0, len(text), size))


def _error_type(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "server_error" if status >= 500 else "api_error"


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stub received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes
    json: Any | None  # parsed body, or None when empty / not JSON
    at: float  # time.monotonic() when the request was received

    @property
    def model(self) -> str | None:
        """The body's ``model`` field, if any."""
        if isinstance(self.json, dict):
            model = self.json.get("model")
            return model if isinstance(model, str) else None
        return None

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class ToolCall:
    """A tool call in a reply. ``fragments`` is how the arguments are streamed."""

    id: str
    name: str
    fragments: tuple[str, ...]

    @property
    def arguments(self) -> str:
        return "".join(self.fragments)


ReplyKind = Literal[
    "completion",
    "error",
    "slow",
    "slow_first_chunk",
    "stall",
    "cut",
    "malformed",
    "reset",
    "hang",
    "stream_error",
]


@dataclass(frozen=True)
class Reply:
    """What the stub answers to one chat completion. Build with the classmethods."""

    kind: ReplyKind
    # completion
    deltas: tuple[str, ...] = ()
    content_null: bool = False  # non-stream message.content is null (tool calls only)
    calls: tuple[ToolCall, ...] = ()
    interleave: bool = False
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = DEFAULT_USAGE
    model: str | None = None
    chunk_delay_s: float = 0.0
    # error / malformed
    status: int = 200
    code: str | None = None
    message: str = ""
    retry_after: float | str | None = None
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # wrappers
    inner: Reply | None = None
    delay_s: float = 0.0
    after_chunks: int = 0

    # -- completions -----------------------------------------------------------------

    @classmethod
    def text(
        cls,
        content: str,
        *,
        finish_reason: str = "stop",
        usage: tuple[int, int] | None = DEFAULT_USAGE,
        model: str | None = None,
    ) -> Reply:
        """A text answer; streamed as one delta per word (``"a b"`` -> ``"a"``, ``" b"``).

        ``usage`` is ``(prompt_tokens, completion_tokens)``; ``None`` omits usage.
        ``model`` overrides the echoed request model in the response.
        """
        return cls(
            "completion",
            deltas=_split_words(content),
            finish_reason=finish_reason,
            usage=usage,
            model=model,
        )

    @classmethod
    def tool_calls(
        cls,
        calls: Sequence[Mapping[str, Any]],
        content: str | None = None,
        *,
        finish_reason: str = "tool_calls",
        usage: tuple[int, int] | None = DEFAULT_USAGE,
        model: str | None = None,
        fragment_size: int = 8,
        interleave: bool = False,
    ) -> Reply:
        """One or several (parallel) tool calls.

        Each call is ``{"name": str, "arguments": str | dict | list[str], "id": str?}``.
        A dict is JSON-encoded; a list of strings gives the exact stream fragments;
        a string is streamed in ``fragment_size`` pieces. Ids default to
        ``call_stub_<i>``. ``interleave=True`` streams the argument fragments of
        parallel calls round-robin instead of call after call.
        """
        return cls(
            "completion",
            deltas=_split_words(content) if content is not None else (),
            content_null=content is None,
            calls=_tool_calls(calls, fragment_size),
            interleave=interleave,
            finish_reason=finish_reason,
            usage=usage,
            model=model,
        )

    @classmethod
    def chunks(
        cls,
        deltas: Iterable[str],
        *,
        tool_calls: Sequence[Mapping[str, Any]] = (),
        finish_reason: str | None = None,
        usage: tuple[int, int] | None = DEFAULT_USAGE,
        model: str | None = None,
        fragment_size: int = 8,
        interleave: bool = False,
        delay_s: float = 0.0,
    ) -> Reply:
        """Exactly these text deltas (one chunk each), then the given tool calls.

        ``delay_s`` sleeps between chunks. ``finish_reason`` defaults to
        ``"tool_calls"`` when there are tool calls, else ``"stop"``. Rendered as one
        joined message when the request does not stream.
        """
        calls = _tool_calls(tool_calls, fragment_size)
        deltas = tuple(deltas)
        return cls(
            "completion",
            deltas=deltas,
            content_null=bool(calls) and not deltas,
            calls=calls,
            interleave=interleave,
            finish_reason=finish_reason or ("tool_calls" if calls else "stop"),
            usage=usage,
            model=model,
            chunk_delay_s=delay_s,
        )

    # -- failures ----------------------------------------------------------------------

    @classmethod
    def error(
        cls,
        status: int,
        *,
        code: str | None = None,
        message: str = "stub error",
        retry_after: float | str | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An HTTP error: OpenAI-shaped JSON (``{"error": {...}}``) unless ``body`` given.

        ``retry_after`` sets the ``Retry-After`` header (numbers rendered as seconds,
        strings verbatim). Errors are JSON even when the request asked to stream.
        """
        return cls(
            "error",
            status=status,
            code=code,
            message=message,
            retry_after=retry_after,
            body=body,
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def malformed(cls, body: bytes | None = None) -> Reply:
        """200 with a body that is not valid JSON (for a stream: a broken ``data:`` line)."""
        return cls("malformed", body=body)

    @classmethod
    def reset(cls) -> Reply:
        """Close the TCP connection without sending any response."""
        return cls("reset")

    @classmethod
    def hang(cls) -> Reply:
        """Never respond; the handler ends when the client goes away or the stub stops."""
        return cls("hang")

    # -- timing wrappers -----------------------------------------------------------

    @classmethod
    def slow(cls, reply: Reply, delay_s: float) -> Reply:
        """Wait ``delay_s`` before sending anything (status line included)."""
        return cls("slow", inner=reply, delay_s=delay_s)

    @classmethod
    def slow_first_chunk(cls, reply: Reply, delay_s: float) -> Reply:
        """Stream: send status and headers at once, wait ``delay_s``, then the chunks.

        For a non-streaming request this is the same as ``slow``.
        """
        return cls("slow_first_chunk", inner=reply, delay_s=delay_s)

    @classmethod
    def stream_stall(cls, after_chunks: int = 1, reply: Reply | None = None) -> Reply:
        """Send ``after_chunks`` chunks of ``reply`` (default: the built-in text), then
        hang until the client goes away. Non-streaming request: status, headers and
        half of the JSON body, then hang."""
        return cls("stall", inner=reply, after_chunks=after_chunks)

    @classmethod
    def stream_cut(cls, after_chunks: int = 1, reply: Reply | None = None) -> Reply:
        """Send ``after_chunks`` chunks of ``reply`` (default: the built-in text), then
        drop the connection without ``[DONE]`` or the terminating HTTP chunk.
        Non-streaming request: half of a Content-Length body, then drop."""
        return cls("cut", inner=reply, after_chunks=after_chunks)

    @classmethod
    def stream_error(
        cls,
        after_chunks: int = 1,
        *,
        status: int = 500,
        code: str | None = None,
        message: str = "stub stream error",
        reply: Reply | None = None,
    ) -> Reply:
        """Send ``after_chunks`` chunks of ``reply`` (default: the built-in text), then an
        in-band ``data: {"error": {...}}`` event, and end the response (no ``[DONE]``).
        The openai SDK raises ``APIError`` on it. Non-streaming request: a plain HTTP
        error with ``status``."""
        return cls(
            "stream_error",
            inner=reply,
            after_chunks=after_chunks,
            status=status,
            code=code,
            message=message,
        )


def _tool_calls(calls: Sequence[Mapping[str, Any]], fragment_size: int) -> tuple[ToolCall, ...]:
    out = []
    for i, call in enumerate(calls):
        args = call.get("arguments", "")
        if isinstance(args, str):
            fragments = _split_fixed(args, max(1, fragment_size))
        elif isinstance(args, Mapping):
            fragments = _split_fixed(json.dumps(args), max(1, fragment_size))
        else:
            fragments = tuple(str(part) for part in args)
        out.append(ToolCall(str(call.get("id") or f"call_stub_{i}"), str(call["name"]), fragments))
    return tuple(out)


_DEFAULT_REPLY = Reply.text(DEFAULT_CONTENT)


# --------------------------------------------------------------------------- rendering


@dataclass
class _Ctx:
    """Per-request rendering context."""

    request: web.Request
    model: str
    stream: bool
    include_usage: bool
    stopping: asyncio.Event
    completion_id: str
    created: int = field(default_factory=lambda: int(time.time()))


def _completion_body(reply: Reply, ctx: _Ctx) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if reply.content_null else "".join(reply.deltas),
        "refusal": None,
    }
    if reply.calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in reply.calls
        ]
    body: dict[str, Any] = {
        "id": ctx.completion_id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": reply.model or ctx.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
    }
    if reply.usage is not None:
        body["usage"] = _usage(reply.usage)
    return body


def _usage(usage: tuple[int, int]) -> dict[str, int]:
    prompt, completion = usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _chunk_deltas(reply: Reply) -> list[dict[str, Any]]:
    """The ``delta`` objects of a streamed completion, before the finish chunk."""
    deltas: list[dict[str, Any]] = [{"content": text} for text in reply.deltas]
    if reply.calls:
        per_call: list[list[dict[str, Any]]] = []
        for index, call in enumerate(reply.calls):
            events = [
                {
                    "index": index,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
            ]
            events += [{"index": index, "function": {"arguments": f}} for f in call.fragments]
            per_call.append(events)
        if reply.interleave:
            ordered = [
                e for group in itertools.zip_longest(*per_call) for e in group if e is not None
            ]
        else:
            ordered = [e for events in per_call for e in events]
        deltas += [{"tool_calls": [event]} for event in ordered]
    if not deltas:
        deltas.append({"content": ""})
    first = deltas[0]
    head: dict[str, Any] = {"role": "assistant"}
    if "content" not in first:
        head["content"] = None
    deltas[0] = {**head, **first}
    return deltas


def _chunk_events(reply: Reply, ctx: _Ctx) -> list[dict[str, Any]]:
    """Every ``chat.completion.chunk`` object of a streamed completion, in order."""
    model = reply.model or ctx.model

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": ctx.completion_id,
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if ctx.include_usage:
            obj["usage"] = None
        return obj

    events = [
        chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])
        for delta in _chunk_deltas(reply)
    ]
    events.append(
        chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reply.finish_reason}])
    )
    if ctx.include_usage and reply.usage is not None:
        final = chunk([])
        final["usage"] = _usage(reply.usage)
        events.append(final)
    return events


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


_DONE = b"data: [DONE]\n\n"


async def _wait_or_stop(ctx: _Ctx, delay_s: float | None) -> None:
    """Sleep ``delay_s`` (forever when None); return early when the stub stops."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.stopping.wait(), delay_s)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


async def _dead(request: web.Request, ctx: _Ctx) -> web.StreamResponse:
    """Drop the connection and end the handler quietly (it is cancelled by aiohttp once
    the connection is lost; the stop event covers the rest)."""
    _abort(request)
    await _wait_or_stop(ctx, None)
    raise asyncio.CancelledError


async def _start_sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        status=200,
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
    )
    await resp.prepare(request)
    return resp


async def _render(reply: Reply, ctx: _Ctx) -> web.StreamResponse:
    request = ctx.request
    kind = reply.kind
    if kind == "slow" or (kind == "slow_first_chunk" and not ctx.stream):
        await _wait_or_stop(ctx, reply.delay_s)
        return await _render(reply.inner or _DEFAULT_REPLY, ctx)
    if kind == "slow_first_chunk":
        inner = reply.inner or _DEFAULT_REPLY
        if inner.kind != "completion":
            await _wait_or_stop(ctx, reply.delay_s)
            return await _render(inner, ctx)
        resp = await _start_sse(request)
        await _wait_or_stop(ctx, reply.delay_s)
        return await _stream(resp, inner, ctx)
    if kind == "completion":
        if not ctx.stream:
            return web.json_response(_completion_body(reply, ctx))
        return await _stream(await _start_sse(request), reply, ctx)
    if kind == "error":
        headers = dict(reply.headers)
        if reply.retry_after is not None:
            ra = reply.retry_after
            headers["Retry-After"] = (
                str(int(ra)) if isinstance(ra, float) and ra.is_integer() else str(ra)
            )
        if reply.body is not None:
            headers.setdefault("Content-Type", "application/json")
            return web.Response(status=reply.status, body=reply.body, headers=headers)
        error = _error_body(reply.status, reply.code, reply.message)
        return web.json_response(error, status=reply.status, headers=headers)
    if kind == "malformed":
        if ctx.stream:
            resp = await _start_sse(request)
            await resp.write(reply.body or b'data: {"id": "chatcmpl-broken", "choices": [\n\n')
            await resp.write(_DONE)
            await resp.write_eof()
            return resp
        return web.Response(
            status=200,
            body=reply.body or b'{"id": "chatcmpl-broken", "object": "chat.comp',
            content_type="application/json",
        )
    if kind == "reset":
        return await _dead(request, ctx)
    if kind == "hang":
        await _wait_or_stop(ctx, None)
        return await _dead(request, ctx)
    if kind == "stream_error":
        if not ctx.stream:
            return await _render(replace(reply, kind="error"), ctx)
        inner = reply.inner or _DEFAULT_REPLY
        resp = await _start_sse(request)
        for event in _chunk_events(inner, ctx)[: max(0, reply.after_chunks)]:
            await resp.write(_sse(event))
        await resp.write(_sse(_error_body(reply.status, reply.code, reply.message)))
        await resp.write_eof()
        return resp
    if kind in ("stall", "cut"):
        inner = reply.inner or _DEFAULT_REPLY
        if ctx.stream:
            resp = await _start_sse(request)
            for event in _chunk_events(inner, ctx)[: max(0, reply.after_chunks)]:
                await resp.write(_sse(event))
                if inner.chunk_delay_s:
                    await _wait_or_stop(ctx, inner.chunk_delay_s)
        else:
            payload = json.dumps(_completion_body(inner, ctx)).encode()
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            resp.content_length = len(payload)
            await resp.prepare(request)
            await resp.write(payload[: len(payload) // 2])
        if kind == "stall":
            await _wait_or_stop(ctx, None)
        return await _dead(request, ctx)
    raise AssertionError(f"unknown reply kind {kind!r}")


async def _stream(resp: web.StreamResponse, reply: Reply, ctx: _Ctx) -> web.StreamResponse:
    for i, event in enumerate(_chunk_events(reply, ctx)):
        if i and reply.chunk_delay_s:
            await _wait_or_stop(ctx, reply.chunk_delay_s)
        await resp.write(_sse(event))
    await resp.write(_DONE)
    await resp.write_eof()
    return resp


# --------------------------------------------------------------------------- server


class UpstreamStub:
    """A scriptable OpenAI-compatible server on its own loop and thread.

    All public methods are thread-safe and may be called from any thread or loop.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = ("stub-model",),
        record: bool = True,
        max_records: int | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port = 0
        self._models = tuple(models)
        self._record = record
        self._lock = threading.Condition()
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)
        self._queue: deque[Reply] = deque()
        self._model_queues: dict[str, deque[Reply]] = {}
        self._default: Reply | None = None
        self._model_defaults: dict[str, Reply] = {}
        self._counter = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``"""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the OpenAI ``base_url``."""
        return f"{self.base}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("stub already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(sock))
            except BaseException as exc:  # surfaced to start()
                failure.append(exc)
                sock.close()
            finally:
                ready.set()
                loop.run_forever()  # until stop(); then drain and close
                self._drain(loop)

        thread = threading.Thread(target=run, name=f"upstream-stub-{self.port}")
        thread.daemon = True
        self._thread = thread
        thread.start()
        ready.wait()
        if failure:
            self.stop()
            raise RuntimeError("upstream stub failed to start") from failure[0]
        return self

    async def _serve(self, sock: socket.socket) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._wrap(self._chat))
        app.router.add_get("/v1/models", self._wrap(self._list_models))
        app.router.add_route("*", "/{tail:.*}", self._wrap(self._not_found))
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        self._runner = runner
        site = web.SockSite(runner, sock)
        await site.start()

    def stop(self) -> None:
        """Stop serving: hung handlers end, connections close, the thread is joined."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None

    async def _shutdown(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=1.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def _drain(loop: asyncio.AbstractEventLoop) -> None:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting -----------------------------------------------------------------

    def script(self, *replies: Reply, model: str | None = None) -> None:
        """Queue replies, consumed in order by chat completions (for ``model`` only, if
        given: matched exactly against the request body's ``model``)."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"expected a Reply, got {type(reply).__name__}")
        with self._lock:
            if model is None:
                self._queue.extend(replies)
            else:
                self._model_queues.setdefault(model, deque()).extend(replies)

    def set_default(self, reply: Reply | None, model: str | None = None) -> None:
        """Set (``None``: remove) the sticky reply used when no scripted one is queued."""
        with self._lock:
            if model is None:
                self._default = reply
            elif reply is None:
                self._model_defaults.pop(model, None)
            else:
                self._model_defaults[model] = reply

    def pending(self, model: str | None = None) -> int:
        """How many scripted replies are still queued (for ``model``, or in total)."""
        with self._lock:
            if model is not None:
                return len(self._model_queues.get(model, ()))
            return len(self._queue) + sum(len(q) for q in self._model_queues.values())

    def clear(self) -> None:
        """Forget records, queued replies and sticky defaults."""
        with self._lock:
            self._records.clear()
            self._queue.clear()
            self._model_queues.clear()
            self._default = None
            self._model_defaults.clear()

    def _next_reply(self, model: str | None) -> Reply:
        with self._lock:
            if model is not None:
                queue = self._model_queues.get(model)
                if queue:
                    return queue.popleft()
                if model in self._model_defaults:
                    return self._model_defaults[model]
            if self._queue:
                return self._queue.popleft()
            return self._default or _DEFAULT_REPLY

    # -- records ---------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every recorded request, oldest first."""
        with self._lock:
            return list(self._records)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Recorded ``POST /v1/chat/completions`` requests."""
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    @property
    def last(self) -> RecordedRequest:
        with self._lock:
            if not self._records:
                raise LookupError("no request recorded")
            return self._records[-1]

    def wait_for_requests(
        self, n: int, timeout: float = 5.0, *, path: str | None = None
    ) -> list[RecordedRequest]:
        """Block until at least ``n`` requests (to ``path``, if given) are recorded."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [r for r in self._records if path is None or r.path == path]
                if len(found) >= n:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"stub saw {len(found)} request(s){' to ' + path if path else ''}, "
                        f"wanted {n} within {timeout}s"
                    )
                self._lock.wait(left)

    async def wait_for_requests_async(
        self, n: int, timeout: float = 5.0, *, path: str | None = None
    ) -> list[RecordedRequest]:
        """``wait_for_requests`` for async tests: never blocks the caller's loop."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.requests if path is None or r.path == path]
            if len(found) >= n:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"stub saw {len(found)} request(s), wanted {n}")
            await asyncio.sleep(0.005)

    @property
    def in_flight(self) -> int:
        """How many requests the stub is handling right now (hung ones included)."""
        return len(self._handlers)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block until no request is in flight, e.g. to check that a client (the gateway)
        really dropped an upstream connection that was stalled or hung."""
        deadline = time.monotonic() + timeout
        while self._handlers:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(self._handlers)} request(s) still in flight")
            time.sleep(0.005)

    # -- handlers --------------------------------------------------------------------

    def _wrap(
        self, handler: Callable[[web.Request, Any], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            task = asyncio.current_task()
            if task is not None:
                self._handlers.add(task)
            try:
                body = await request.read()
                parsed: Any | None = None
                if body:
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        parsed = None
                if self._record:
                    headers: dict[str, str] = {}
                    for name, value in request.headers.items():
                        key = name.lower()
                        headers[key] = f"{headers[key]}, {value}" if key in headers else value
                    rec = RecordedRequest(
                        request.method, request.path, headers, body, parsed, time.monotonic()
                    )
                    with self._lock:
                        self._records.append(rec)
                        self._lock.notify_all()
                return await handler(request, parsed)
            except (ConnectionResetError, ConnectionError):
                # the client went away mid-response: nothing left to say
                raise asyncio.CancelledError from None
            finally:
                if task is not None:
                    self._handlers.discard(task)

        return wrapped

    async def _chat(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not isinstance(body, dict):
            return _openai_error(400, "invalid_request", "body is not a JSON object")
        model = body.get("model")
        if not isinstance(model, str):
            return _openai_error(400, "invalid_request", "missing model", param="model")
        stream = body.get("stream") is True
        options = body.get("stream_options")
        include_usage = (
            stream and isinstance(options, dict) and options.get("include_usage") is True
        )
        assert self._stopping is not None
        ctx = _Ctx(
            request=request,
            model=model,
            stream=stream,
            include_usage=include_usage,
            stopping=self._stopping,
            completion_id=f"chatcmpl-stub{next(self._counter)}",
        )
        return await _render(self._next_reply(model), ctx)

    async def _list_models(self, request: web.Request, body: Any) -> web.StreamResponse:
        with self._lock:
            names = dict.fromkeys([*self._models, *self._model_queues, *self._model_defaults])
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "casegate-stub"}
            for name in names
        ]
        return web.json_response({"object": "list", "data": data})

    async def _not_found(self, request: web.Request, body: Any) -> web.StreamResponse:
        return _openai_error(404, "not_found", f"no route {request.method} {request.path}")


def _error_body(
    status: int, code: str | None, message: str, param: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _error_type(status),
            "param": param,
            "code": code,
        }
    }


def _openai_error(
    status: int, code: str, message: str, *, param: str | None = None
) -> web.Response:
    return web.json_response(_error_body(status, code, message, param), status=status)


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.kit.stub",
        description="Serve an OpenAI-compatible upstream stub until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay every reply")
    parser.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="delay between stream chunks"
    )
    parser.add_argument("--content", default=DEFAULT_CONTENT, help="the reply text")
    parser.add_argument(
        "--model", action="append", default=None, help="a model /v1/models lists (repeatable)"
    )
    args = parser.parse_args(argv)

    stub = UpstreamStub(
        host=args.host,
        port=args.port,
        models=args.model or ("stub-model",),
        record=False,
    )
    reply = replace(Reply.text(args.content), chunk_delay_s=args.chunk_delay_ms / 1000)
    if args.latency_ms > 0:
        reply = Reply.slow(reply, args.latency_ms / 1000)
    stub.set_default(reply)

    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with stub:
        print(stub.url, flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
