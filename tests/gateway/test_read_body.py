"""`gateway.api.read_body`: the body from ASGI messages, bounded, as Starlette reads it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from gateway.api import read_body
from gateway.errors import RequestTooLarge


def _request(messages: list[dict[str, Any]], headers: list[tuple[bytes, bytes]]) -> Request:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return Request(scope, receive)


def _body(*chunks: bytes) -> list[dict[str, Any]]:
    last = len(chunks) - 1
    return [
        {"type": "http.request", "body": c, "more_body": i < last} for i, c in enumerate(chunks)
    ]


def test_chunks_are_joined_in_order_and_empty_ones_skipped() -> None:
    request = _request(_body(b'{"a":', b"", b"1}"), [])
    assert asyncio.run(read_body(request, 100)) == b'{"a":1}'
    assert asyncio.run(read_body(_request(_body(b""), []), 100)) == b""


def test_a_body_past_the_limit_is_refused_declared_or_read() -> None:
    declared = _request(_body(b"x"), [(b"content-length", b"101")])
    with pytest.raises(RequestTooLarge):
        asyncio.run(read_body(declared, 100))
    # a lying (or absent) Content-Length: counted as it arrives
    with pytest.raises(RequestTooLarge):
        asyncio.run(read_body(_request(_body(b"x" * 60, b"y" * 41), []), 100))
    # the chat path passes its header dict instead of Starlette's Headers
    chat = _request(_body(b"x"), [])
    with pytest.raises(RequestTooLarge):
        asyncio.run(read_body(chat, 100, {"content-length": "500"}))


def test_a_client_that_goes_mid_body_raises_client_disconnect() -> None:
    messages = [
        {"type": "http.request", "body": b"part", "more_body": True},
        {"type": "http.disconnect"},
    ]
    with pytest.raises(ClientDisconnect):
        asyncio.run(read_body(_request(messages, []), 100))
