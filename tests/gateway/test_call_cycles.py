"""A governed call leaves no reference cycle behind: what it built is freed by reference
counting as it ends, so the cyclic collector has nothing of it to find (its pauses, at
concurrency one, were in the tail of issue 10's latency; a cycle through the call would
keep every object of the call alive until the next collection).

The app runs in this process (its lifespan included) against the upstream stub over
real HTTP, with lineage on SQLite; the calls go in as ASGI messages.
"""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path
from typing import Any

import orjson

from gateway.app import create_app
from gateway.cli import settings_from_env
from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import asgi_call, casegate, headers
from tests.kit.stub import UpstreamStub

_OURS = {"gateway", "policies", "redaction", "tracing"}


async def _drive(app: Any, calls: list[tuple[list[tuple[bytes, bytes]], bytes]]) -> list[int]:
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    life = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, to_app.get, from_app.put)
    )
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    statuses: list[int] = []
    cycles: list[int] = []
    try:
        for i, (hdrs, body) in enumerate(calls):
            if i == 2:  # after warming up: count what each further call leaves in cycles
                gc.collect()
                gc.set_debug(gc.DEBUG_SAVEALL)
            statuses.append(await _call(app, hdrs, body))
        gc.collect()
        # ours: asyncio's own closed transports can sit in cycles of their own
        cycles = [sum(type(o).__module__.split(".")[0] in _OURS for o in gc.garbage)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        await to_app.put({"type": "lifespan.shutdown"})
        await from_app.get()
        await life
    return statuses + cycles


async def _call(app: Any, hdrs: list[tuple[bytes, bytes]], body: bytes) -> int:
    status, _, answer, raised = await asgi_call(app, "POST", "/v1/chat/completions", hdrs, body)
    assert not raised
    if status == 200:
        assert b"lineage_id" in answer
    return status


def test_calls_leave_no_reference_cycles(
    tmp_path: Path, upstream: UpstreamStub, creds: Credentials
) -> None:
    config = tmp_path / "casegate.yaml"
    config.write_text(json.dumps(gateway_config(upstream.url, state=f"sqlite:///{tmp_path}/s.db")))
    env = {**creds.env(), "CASEGATE_CONFIG": str(config)}
    settings, source = settings_from_env(env)
    app = create_app(settings, source=source, environ=env)
    hdrs = [
        (b"authorization", f"Bearer {creds.helpdesk}".encode()),
        (b"content-type", b"application/json"),
        *((k.lower().encode(), v.encode()) for k, v in headers(case_id="CY-1").items()),
    ]

    def body(text: str, **kw: Any) -> bytes:
        doc = {
            "model": "support-default",
            "messages": [{"role": "user", "content": text}],
            **casegate(context={"product_id": "P-100", "account_status": "active"}),
            **kw,
        }
        return orjson.dumps(doc)

    ok = body("Mail me at ana@example.com about order 4411.")
    refused = body("Hello", **casegate(customer={"authenticated": False}))
    streamed = body("Call me on 07700 900123.", stream=True)
    calls = [(hdrs, b) for b in (ok, ok, ok, refused, streamed, ok, streamed, refused)]

    *statuses, left = asyncio.run(_drive(app, calls))
    assert statuses == [200, 200, 200, 403, 200, 200, 200, 403]
    assert left == 0  # objects of Casegate's own types found in cycles
