"""The consent service of record replaces the request's consent, cached, failing closed.

A real aiohttp consent stub on 127.0.0.1 answers ``GET /consent?customer_id=…``; the
gateway under test is a real ``casegate serve``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import casegate, headers, user
from tests.kit.gateway import GatewayProcess, free_port
from tests.kit.stub import UpstreamStub

CONSENT_KEY = "consent-api-key-for-tests"
GRANTED = {"ai_assist": True, "profiling": False}
REFUSED = {"ai_assist": False}


@dataclass
class ConsentStub:
    """``answers[customer_id]`` is the consent; ``mode`` is ok, down (500), slow or bad."""

    port: int = field(default_factory=free_port)
    answers: dict[str, dict[str, bool]] = field(default_factory=dict)
    mode: str = "ok"
    requests: list[dict[str, str]] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    runner: web.AppRunner | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/consent"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            {
                "customer_id": request.query.get("customer_id", ""),
                "authorization": request.headers.get("Authorization", ""),
            }
        )
        if self.mode == "down":
            return web.json_response({"error": "boom"}, status=500)
        if self.mode == "slow":
            await asyncio.sleep(2)
        if self.mode == "bad":
            return web.json_response({"consent": {"ai_assist": "yes"}})
        customer = request.query.get("customer_id", "")
        return web.json_response({"consent": self.answers.get(customer, {})})

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_get("/consent", self.handle)
            self.runner = web.AppRunner(app)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", self.port)
            self.loop.run_until_complete(site.start())
            ready.set()
            self.loop.run_forever()
            self.loop.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.thread = thread
        assert ready.wait(10)

    def stop(self) -> None:
        assert self.loop is not None and self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(10)


@pytest.fixture(scope="module")
def consent() -> Iterator[ConsentStub]:
    stub = ConsentStub()
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture
def service(consent: ConsentStub) -> ConsentStub:
    consent.mode = "ok"
    consent.answers.clear()
    consent.requests.clear()
    return consent


@pytest.fixture(scope="module")
def module_creds() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module")
def gateway(
    consent: ConsentStub,
    upstream_server: UpstreamStub,
    module_creds: Credentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("gw-consent")
    config = gateway_config(
        upstream_server.url,
        consent_service={
            "url": consent.url,
            "api_key_env": "CONSENT_KEY",
            "ttl_s": 1,
            "timeout_ms": 300,
        },
    )
    gw = GatewayProcess.start(
        workdir, config, env={**module_creds.env(), "CONSENT_KEY": CONSENT_KEY}
    )
    yield gw
    gw.stop()


def call(
    gw: GatewayProcess,
    creds: Credentials,
    customer_id: str | None,
    *,
    claimed: dict[str, bool] | None = None,
) -> httpx.Response:
    extra = {"customer_id": customer_id} if customer_id else {}
    customer = {"authenticated": True, "region": "GB", "consent": claimed or {}}
    return httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {creds.helpdesk}", **headers("triage", **extra)},
        json={"model": "support-default", "messages": user("hello"), **casegate(customer)},
        timeout=10,
    )


def consent_basis(gw: GatewayProcess, lineage_id: str) -> Any:
    with sqlite3.connect(gw.workdir / "casegate.db") as db:
        (raw,) = db.execute(
            "SELECT event FROM lineage_events WHERE lineage_id = ? AND type = 'request.ended'",
            (lineage_id,),
        ).fetchone()
    return json.loads(raw)["data"]["consent_basis"]


def test_the_consent_of_record_replaces_the_request_consent(
    gateway: GatewayProcess, module_creds: Credentials, service: ConsentStub, upstream: UpstreamStub
) -> None:
    service.answers.update({"cust-yes": GRANTED, "cust-no": REFUSED})
    # the app claims consent; the record says no
    resp = call(gateway, module_creds, "cust-no", claimed={"ai_assist": True})
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "ineligible"
    assert resp.json()["error"]["param"] == "ai-assist-consent"
    assert consent_basis(gateway, resp.headers["x-casegate-lineage-id"]) == "consent_service"
    # the app claims nothing; the record says yes
    resp = call(gateway, module_creds, "cust-yes", claimed={"ai_assist": False})
    assert resp.status_code == 200, resp.text
    assert resp.json()["casegate"]["decision"] == "allowed"
    assert consent_basis(gateway, resp.headers["x-casegate-lineage-id"]) == "consent_service"
    assert [r["customer_id"] for r in service.requests] == ["cust-no", "cust-yes"]
    assert all(r["authorization"] == f"Bearer {CONSENT_KEY}" for r in service.requests)
    # the raw customer id never reaches the provider
    assert "cust-yes" not in upstream.chat_requests[-1].body.decode()


def test_answers_are_cached_for_the_ttl_then_must_be_fresh(
    gateway: GatewayProcess, module_creds: Credentials, service: ConsentStub
) -> None:
    service.answers["cust-cache"] = GRANTED
    for _ in range(3):
        assert call(gateway, module_creds, "cust-cache").status_code == 200
    assert len(service.requests) == 1  # one lookup, then the cache
    service.mode = "down"
    assert call(gateway, module_creds, "cust-cache").status_code == 200  # still cached
    time.sleep(1.1)  # ttl_s: 1 in this gateway's config
    # the cache has expired and the service is down: fail closed, never the stale answer
    resp = call(gateway, module_creds, "cust-cache")
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "consent_unavailable"
    service.mode = "ok"
    assert call(gateway, module_creds, "cust-cache").status_code == 200
    assert len(service.requests) == 3


@pytest.mark.parametrize("mode", ["down", "slow", "bad"])
def test_an_unusable_service_fails_closed(
    gateway: GatewayProcess, module_creds: Credentials, service: ConsentStub, mode: str
) -> None:
    service.mode = mode
    resp = call(gateway, module_creds, f"cust-{mode}", claimed={"ai_assist": True})
    assert resp.status_code == 503
    body = resp.json()["error"]
    assert body["code"] == "consent_unavailable" and body["type"] == "server_error"
    assert resp.headers["x-should-retry"] == "false"
    assert resp.headers["x-casegate-decision"] == "refused"
    assert consent_basis(gateway, resp.headers["x-casegate-lineage-id"]) == "consent_service"


def test_without_a_customer_id_the_consent_cannot_be_looked_up(
    gateway: GatewayProcess, module_creds: Credentials, service: ConsentStub
) -> None:
    resp = call(gateway, module_creds, None, claimed={"ai_assist": True})
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "consent_unavailable"
    assert resp.json()["error"]["param"] == "X-Casegate-Customer-Id"
    assert service.requests == []


def test_without_a_consent_service_the_request_consent_is_the_basis(
    start_gateway: Any, creds: Credentials, upstream: UpstreamStub
) -> None:
    gw = start_gateway(gateway_config(upstream.url))
    resp = call(gw, creds, "cust-1", claimed={"ai_assist": True})
    assert resp.status_code == 200
    assert consent_basis(gw, resp.headers["x-casegate-lineage-id"]) == "request"
