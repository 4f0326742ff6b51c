"""Provider faults through the stub: each gives the documented result within the deadline,
leaves no hung upstream connection, and leaves a lineage record every time."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import Reply, UpstreamStub

DEADLINE = 3.0


@pytest.fixture(scope="module")
def module_creds() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module")
def gateway(
    upstream_server: UpstreamStub,
    module_creds: Credentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("gw-faults")
    config = gateway_config(
        upstream_server.url,
        limits={"max_body_bytes": 65536, "deadline_s": DEADLINE, "first_chunk_timeout_s": 1},
        retry={"attempts": 2, "max_retry_after_s": 1},
        circuit={"failures": 0, "cooldown_s": 1},
    )
    for dep in config["routes"]["support-default"]:
        dep["timeout_s"] = 1
    gw = GatewayProcess.start(workdir, config, env=module_creds.env())
    yield gw
    gw.stop()


def post(gw: GatewayProcess, creds: Credentials, *, stream: bool = False) -> httpx.Response:
    return httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {creds.helpdesk}", **headers()},
        json={"model": "support-default", "messages": user("x"), "stream": stream, **casegate()},
        timeout=DEADLINE + 5,
    )


def record_end(gw: GatewayProcess, lineage_id: str) -> dict[str, Any]:
    db = sqlite3.connect(gw.workdir / "casegate.db")
    rows = db.execute(
        "SELECT type, event FROM lineage_events WHERE lineage_id = ?", (lineage_id,)
    ).fetchall()
    assert sorted(t for t, _ in rows) == ["request.ended", "request.started"]
    return next(json.loads(e)["data"] for t, e in rows if t == "request.ended")


CASES: dict[str, tuple[Reply, bool, int, str | None]] = {
    # name: (sticky reply for every deployment, stream, HTTP status, error code in body/frame)
    "timeout": (Reply.hang(), False, 504, "upstream_timeout"),
    "connection reset": (Reply.reset(), False, 502, "upstream_error"),
    "429 without Retry-After": (Reply.error(429), False, 502, "upstream_error"),
    "500": (Reply.error(500), False, 502, "upstream_error"),
    "502": (Reply.error(502), False, 502, "upstream_error"),
    "503 with Retry-After": (Reply.error(503, retry_after=0.1), False, 502, "upstream_error"),
    "malformed JSON": (Reply.malformed(), False, 502, "upstream_error"),
    "slow first chunk": (
        Reply.slow_first_chunk(Reply.text("late"), 5),
        True,
        504,
        "upstream_timeout",
    ),
    "stream never ends": (Reply.stream_stall(after_chunks=2), True, 200, "upstream_timeout"),
    "stream stops mid-way": (Reply.stream_cut(after_chunks=2), True, 200, "upstream_error"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_provider_fault(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub, case: str
) -> None:
    reply, stream, status, code = CASES[case]
    upstream.set_default(reply)
    started = time.monotonic()
    resp = post(gateway, module_creds, stream=stream)
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + 1.5, elapsed
    assert resp.status_code == status
    if status == 200:
        assert "event: error" in resp.text and f'"{code}"' in resp.text
        assert resp.text.rstrip().endswith("data: [DONE]")
    else:
        assert resp.json()["error"]["code"] == code
        assert resp.headers["x-should-retry"] == "false"
    end = record_end(gateway, resp.headers["x-casegate-lineage-id"])
    assert end["end"] == "failed" and end["refusal"] == code
    assert end["attempts"]
    # no hung upstream connection: the gateway abandoned whatever it had open
    upstream.set_default(None)
    upstream.wait_idle(timeout=3)


def test_429_retry_after_longer_than_the_cap_falls_back_at_once(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    upstream.set_default(Reply.error(429, retry_after=30), model="gpt-primary")
    started = time.monotonic()
    resp = post(gateway, module_creds)
    assert resp.status_code == 200
    assert resp.json()["model"] == "gpt-secondary"
    assert time.monotonic() - started < 1.5
    assert [r.json["model"] for r in upstream.chat_requests] == ["gpt-primary", "gpt-secondary"]


def test_circuit_breaker_skips_a_dead_deployment_and_probes_it_back(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials
) -> None:
    gw = start_gateway(
        gateway_config(
            upstream.url,
            retry={"attempts": 1, "max_retry_after_s": 1},
            circuit={"failures": 2, "cooldown_s": 1},
        )
    )
    upstream.set_default(Reply.error(500), model="gpt-primary")
    for _ in range(2):
        assert post(gw, creds).json()["model"] == "gpt-secondary"
    upstream.clear()
    upstream.set_default(Reply.error(500), model="gpt-primary")
    resp = post(gw, creds)
    assert resp.json()["model"] == "gpt-secondary"
    # the open circuit skipped the primary: it was not called at all
    assert [r.json["model"] for r in upstream.chat_requests] == ["gpt-secondary"]
    time.sleep(1.1)
    upstream.clear()  # the primary recovered
    assert post(gw, creds).json()["model"] == "gpt-primary"  # the probe closes the circuit
    assert post(gw, creds).json()["model"] == "gpt-primary"


def test_a_client_leaving_mid_stream_ends_the_upstream_call_and_the_record(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    """The client hangs up while the provider is still streaming: the gateway stops
    reading upstream then (not at the deadline) and still writes the call's end."""
    upstream.set_default(Reply.stream_stall(after_chunks=2))
    with (
        httpx.Client(timeout=DEADLINE + 5) as http,
        http.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {module_creds.helpdesk}", **headers()},
            json={"model": "support-default", "messages": user("x"), "stream": True, **casegate()},
        ) as resp,
    ):
        assert resp.status_code == 200
        lineage_id = resp.headers["x-casegate-lineage-id"]
        next(resp.iter_bytes())  # the first chunk arrived; now hang up
    upstream.set_default(None)
    upstream.wait_idle(timeout=DEADLINE + 1)
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            end = record_end(gateway, lineage_id)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "no end event for the abandoned stream"
            time.sleep(0.05)
    assert end["end"] != "completed"
    assert end.get("refusal") != "upstream_timeout"  # ended by the hang-up, not the deadline
