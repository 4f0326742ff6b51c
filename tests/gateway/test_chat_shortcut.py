"""``POST /v1/chat/completions`` skips Starlette's layers (gateway/app.py): its error
handling must stay what Starlette's layers give every other route.

A gateway whose runtime never started (no lifespan) fails every route with an
unexpected error. That is a real failure, reached without patching anything: the chat
shortcut and a routed path must answer it alike (a 500 ``internal_error`` carrying the
request id), and both must raise it again for the server to log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import create_app
from gateway.settings import embedded_default
from tests.gateway.helpers import asgi_call


async def _call(app: Any, method: str, path: str) -> tuple[int, dict[str, bytes], bytes, bool]:
    body = b'{"model": "x", "messages": []}' if method == "POST" else b""
    headers = [(b"content-type", b"application/json"), (b"x-request-id", b"req-shortcut")]
    return await asgi_call(app, method, path, headers, body)


def test_the_chat_shortcut_fails_like_a_routed_path(tmp_path: Path) -> None:
    app = create_app(embedded_default(tmp_path, ["triage"]), source="test")  # no lifespan

    chat = asyncio.run(_call(app, "POST", "/v1/chat/completions"))
    routed = asyncio.run(_call(app, "GET", "/v1/models"))

    for status, headers, body, raised in (chat, routed):
        assert status == 500
        assert headers["x-request-id"] == b"req-shortcut"
        assert headers["content-type"] == b"application/json"
        assert orjson.loads(body)["error"]["code"] == "internal_error"
        assert raised  # and the server logs it
    assert chat[2] == routed[2]


@pytest.mark.parametrize(
    ("method", "status", "code"),
    [("GET", 404, "not_supported"), ("OPTIONS", 405, "method_not_allowed")],
)
def test_other_methods_on_the_chat_path_are_routed_as_before(
    tmp_path: Path, method: str, status: int, code: str
) -> None:
    app = create_app(embedded_default(tmp_path, ["triage"]), source="test")
    got, headers, body, raised = asyncio.run(_call(app, method, "/v1/chat/completions"))
    assert (got, raised) == (status, False)
    assert headers["x-request-id"] == b"req-shortcut"
    assert orjson.loads(body)["error"]["code"] == code
