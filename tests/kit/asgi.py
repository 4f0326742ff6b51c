"""One HTTP request straight into an ASGI app, without a server.

Usage::

    status, headers, body, raised = await asgi_call(app, "POST", "/v1/chat/completions",
                                                    [(b"authorization", b"Bearer ...")], raw)

Shared by the in-process gateway tests and `bench/gateway/inproc.py` (which, like the
other benchmarks, runs from the repository and already starts `tests.kit.stub`).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["asgi_call"]


async def asgi_call(
    app: Any,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    catch: bool = True,
) -> tuple[int, dict[str, bytes], bytes, bool]:
    """One HTTP request straight into an ASGI app, as uvicorn hands it over (the client
    never disconnects): ``(status, response headers, body, whether the app raised)``.
    With ``catch=False`` an exception of the app propagates instead."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a disconnect never comes
        raise AssertionError

    status, response_headers, chunks = 0, {}, []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, response_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers = {k.decode(): v for k, v in message["headers"]}
        else:
            chunks.append(message.get("body", b""))

    raised = False
    try:
        await app(scope, receive, send)
    except Exception:
        if not catch:
            raise
        raised = True
    return status, response_headers, b"".join(chunks), raised
