"""The gateway's own OpenAI-wire client: one pooled aiohttp session per process.

Usage::

    wire = OpenAIWire(); await wire.start()
    reply = await wire.complete(dep, body, timeout_s=30)
    stream = await wire.open_stream(dep, body, timeout_s=30)
    async for chunk in stream: ...
    await wire.close()

Measured here, aiohttp's client costs a fraction of httpx's per request and holds up
under concurrency, which is why the hot path does not go through litellm. Every
aiohttp/OS failure is mapped to :class:`AttemptError` in this module and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from yarl import URL

from gateway.providers.base import AttemptError, Deployment

__all__ = ["OpenAIWire", "parse_retry_after"]

#: The session's own timeouts. A plain call is bounded by the ``asyncio.timeout`` around
#: it (connecting, sending and reading, all within ``timeout_s``), so aiohttp's own total
#: timer, a second timer per request, is off; connecting a new socket keeps aiohttp's
#: 30 s bound.
_CALL_TIMEOUT = aiohttp.ClientTimeout(sock_connect=30)
#: A stream outlives its ``asyncio.timeout`` (which covers only opening it), so aiohttp
#: keeps bounding the whole stream, as its default does: 5 minutes in all.
_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=5 * 60, sock_connect=30)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        import time

        seconds = when.timestamp() - time.time()
    return max(0.0, seconds)


def _status_error(status: int, raw: bytes, retry_after: str | None) -> AttemptError:
    code = None
    message = f"HTTP {status} from the provider"
    try:
        data = orjson.loads(raw)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            code = err.get("code") if isinstance(err.get("code"), str) else err.get("type")
            if isinstance(err.get("message"), str):
                message = err["message"]
        elif isinstance(err, str):
            message = err
    except orjson.JSONDecodeError:
        pass
    return AttemptError(
        "status",
        message,
        status=status,
        code=code if isinstance(code, str) else None,
        retry_after=parse_retry_after(retry_after),
    )


class _SSEStream:
    """Server-sent events from an aiohttp response, parsed into chunk dicts."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._done = False

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._done:
            raise StopAsyncIteration
        content = self._response.content
        try:
            while True:
                line = await content.readline()
                if not line:
                    # The connection ended without [DONE]: a stream cut mid-way.
                    self._done = True
                    await self.aclose()
                    raise AttemptError("connect", "The provider's stream ended without [DONE]")
                line = line.strip()
                if not line or line.startswith(b":"):
                    continue
                if not line.startswith(b"data:"):
                    continue  # event:, id:, retry: fields carry nothing we use
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    self._done = True
                    await self.aclose()
                    raise StopAsyncIteration
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    raise AttemptError(
                        "malformed", "The provider sent an unparsable chunk"
                    ) from None
                if not isinstance(chunk, dict):
                    raise AttemptError(
                        "malformed", "The provider sent a chunk that is not an object"
                    )
                if "error" in chunk and "choices" not in chunk:
                    err = chunk["error"] if isinstance(chunk["error"], dict) else {}
                    raise AttemptError(
                        "status",
                        str(err.get("message") or "The provider reported an error mid-stream"),
                        status=502,
                        code=err.get("code") if isinstance(err.get("code"), str) else None,
                    )
                return chunk
        except (aiohttp.ClientError, ConnectionError) as exc:
            self._done = True
            await self.aclose()
            raise AttemptError(
                "connect", f"The provider's stream broke: {exc.__class__.__name__}"
            ) from None

    async def aclose(self) -> None:
        self._done = True
        if not self._response.closed:
            self._response.close()


class OpenAIWire:
    def __init__(self, *, limit: int = 256) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        # parsed once per deployment base, not on every request
        self._urls: dict[str, URL] = {}

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                # never read proxies, netrc or cookies from the environment: the
                # upstream URL is the configuration's, and nothing else's
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                timeout=_CALL_TIMEOUT,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("OpenAIWire.start() was not called")
        return self._session

    def _request_args(
        self, dep: Deployment, body: dict[str, Any]
    ) -> tuple[URL, dict[str, str], bytes]:
        base = dep.api_base or ""
        url = self._urls.get(base)
        if url is None:
            url = self._urls[base] = URL(f"{base}/chat/completions")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if dep.api_keys:
            headers["Authorization"] = f"Bearer {dep.api_keys[0]}"
        payload = dict(body)
        payload["model"] = dep.wire_model
        return url, headers, orjson.dumps(payload)

    async def complete(
        self, deployment: Deployment, body: dict[str, Any], *, timeout_s: float
    ) -> dict[str, Any]:
        url, headers, data = self._request_args(deployment, body)
        try:
            async with asyncio.timeout(timeout_s):
                async with self.session.post(url, data=data, headers=headers) as resp:
                    raw = await resp.read()
                    if resp.status >= 400:
                        raise _status_error(resp.status, raw, resp.headers.get("Retry-After"))
        except TimeoutError:
            raise AttemptError("timeout", f"No answer within {timeout_s:g}s") from None
        except (aiohttp.ClientError, ConnectionError, OSError) as exc:
            raise AttemptError("connect", f"Connection failed: {exc.__class__.__name__}") from None
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise AttemptError("malformed", "The provider's answer is not JSON") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("choices"), list):
            raise AttemptError("malformed", "The provider's answer has no choices")
        return reply

    async def open_stream(
        self, deployment: Deployment, body: dict[str, Any], *, timeout_s: float
    ) -> _SSEStream:
        url, headers, data = self._request_args(deployment, body)
        headers["Accept"] = "text/event-stream"
        resp: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(timeout_s):
                resp = await self.session.post(
                    url, data=data, headers=headers, timeout=_STREAM_TIMEOUT
                )
                if resp.status >= 400:
                    raw = await resp.read()
                    raise _status_error(resp.status, raw, resp.headers.get("Retry-After"))
        except TimeoutError:
            if resp is not None:
                resp.close()
            raise AttemptError("timeout", f"No answer within {timeout_s:g}s") from None
        except (aiohttp.ClientError, ConnectionError, OSError) as exc:
            if resp is not None:
                resp.close()
            raise AttemptError("connect", f"Connection failed: {exc.__class__.__name__}") from None
        except AttemptError:
            with contextlib.suppress(Exception):
                resp.close()  # type: ignore[union-attr]
            raise
        assert resp is not None
        ctype = resp.headers.get("Content-Type", "")
        if "text/event-stream" not in ctype:
            raw = await resp.read()
            resp.close()
            raise AttemptError("malformed", "The provider did not answer with an event stream")
        return _SSEStream(resp)
