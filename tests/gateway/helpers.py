"""Request builders shared by the gateway tests."""

from __future__ import annotations

import asyncio
from typing import Any

ELIGIBLE = {"authenticated": True, "consent": {"ai_assist": True}, "region": "GB"}
CONTEXT = {"product_id": "P-100", "account_status": "active"}


def headers(use_case: str = "triage", **extra: str) -> dict[str, str]:
    out = {"X-Casegate-Use-Case": use_case}
    for key, value in extra.items():
        out["X-Casegate-" + "-".join(p.capitalize() for p in key.split("_"))] = value
    return out


def casegate(
    customer: dict[str, Any] | None = None, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "casegate": {
            "customer": ELIGIBLE if customer is None else customer,
            "context": CONTEXT if context is None else context,
        }
    }


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


SET_PRIORITY = {
    "type": "function",
    "function": {
        "name": "set_priority",
        "parameters": {
            "type": "object",
            "properties": {"priority": {"type": "string", "enum": ["P2", "P3"]}},
        },
    },
}
ROUTE_TO_QUEUE = {
    "type": "function",
    "function": {
        "name": "route_to_queue",
        "parameters": {"type": "object", "properties": {"queue": {"type": "string"}}},
    },
}
DELETE_ACCOUNT = {
    "type": "function",
    "function": {"name": "delete_account", "parameters": {"type": "object", "properties": {}}},
}


async def asgi_call(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> tuple[int, dict[str, bytes], bytes, bool]:
    """One HTTP request straight into an ASGI app, as uvicorn hands it over (the client
    never disconnects): ``(status, response headers, body, whether the app raised)``."""
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
        raised = True
    return status, response_headers, b"".join(chunks), raised
