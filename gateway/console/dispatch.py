"""Call the operator API in-process, as a console session's operator.

Usage::

    res = await call_admin(request, session.operator, "GET", "/admin/kill-switches")
    res.status, res.data            # the JSON the endpoint answered (errors included)
    res.error_message               # the OpenAI-shaped error's message, or None

The console has no logic of its own for switches, drafts, lineage or the scorecard: it
sends an ASGI request through the very app that serves ``/admin/*`` (same routes, same
role checks, same validation, same lineage events), with the operator put in the scope
under :data:`gateway.admin.common.SESSION_OPERATOR` instead of a bearer token (the
session never holds the token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request
from starlette.types import Message

from gateway.admin.common import SESSION_OPERATOR
from gateway.auth import Operator

__all__ = ["AdminResult", "call_admin"]


@dataclass(frozen=True)
class AdminResult:
    status: int
    data: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error_code(self) -> str | None:
        if self.ok or not isinstance(self.data, dict):
            return None
        err = self.data.get("error")
        return str(err.get("code")) if isinstance(err, dict) else "http_error"

    @property
    def error_message(self) -> str | None:
        if self.ok:
            return None
        if isinstance(self.data, dict) and isinstance(self.data.get("error"), dict):
            return str(self.data["error"].get("message") or self.data["error"].get("code"))
        return f"HTTP {self.status}"


async def call_admin(
    request: Request,
    operator: Operator,
    method: str,
    path: str,
    *,
    query: Mapping[str, str | None] | None = None,
    body: Any = None,
) -> AdminResult:
    """``path`` is the decoded path (e.g. ``/admin/kill-switches/route:x``)."""
    app = request.scope["app"]
    raw = b"" if body is None else orjson.dumps(body)
    qs = urlencode({k: v for k, v in (query or {}).items() if v is not None})
    headers = [(b"host", request.headers.get("host", "console").encode("latin-1"))]
    if body is not None:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": request.url.scheme,
        "path": path,
        "raw_path": quote(path, safe="/:").encode(),
        "root_path": "",
        "query_string": qs.encode(),
        "headers": headers,
        "client": request.scope.get("client"),
        "server": request.scope.get("server"),
        "state": dict(request.scope.get("state") or {}),
        SESSION_OPERATOR: operator,
        "casegate.request_id": request.scope.get("casegate.request_id"),
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    status = 500
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except Exception:  # ServerErrorMiddleware re-raises after answering 500: it is logged there
        status = 500
    payload = b"".join(chunks)
    try:
        data = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        data = {"error": {"message": payload[:200].decode(errors="replace"), "code": "http_error"}}
    return AdminResult(status, data)
