"""A start without an end is finished as `interrupted`, only once its writer is gone.

A gateway is SIGKILLed while a call hangs upstream (its start event is durable); the
restarted gateway's recovery writes the `interrupted` end on its own chain, and every
chain and checkpoint still verifies. With two live gateways on one store, recovery
never touches a record of the other's live chain, and finishes it once that one dies.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import Reply, UpstreamStub

FAST = {"CASEGATE_LINEAGE_STALE_MS": "1000", "CASEGATE_CHECKPOINT_S": "1"}


def call(gw: GatewayProcess, creds: Credentials, case_id: str, timeout: float = 20) -> Any:
    return httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {creds.helpdesk}", **headers(case_id=case_id)},
        json={"model": "support-default", "messages": user("hello"), **casegate()},
        timeout=timeout,
    )


def hang_in_background(gw: GatewayProcess, creds: Credentials, case_id: str) -> threading.Thread:
    def run() -> None:
        try:
            call(gw, creds, case_id, timeout=30)
        except httpx.HTTPError:
            pass  # the gateway is killed under it

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def records(gw: GatewayProcess, creds: Credentials, case_id: str) -> list[dict[str, Any]]:
    resp = httpx.get(
        gw.url + "/admin/lineage",
        params={"case_id": case_id},
        headers={"Authorization": f"Bearer {creds.oncall}"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    data: list[dict[str, Any]] = resp.json()["data"]
    return data


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def verify(state: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "lineage", "verify", "--state", state],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_mid_request_leaves_an_interrupted_record(
    backend: str,
    request: pytest.FixtureRequest,
    start_gateway: Any,
    upstream: UpstreamStub,
    creds: Credentials,
    tmp_path: Path,
) -> None:
    if backend == "postgres":
        state = request.getfixturevalue("pg_url")
        config = gateway_config(upstream.url, state=state, keys=True)
    else:
        state = f"sqlite:///{tmp_path}/gw/casegate.db"
        config = gateway_config(upstream.url)
    first = start_gateway(config, name="gw", env=FAST)
    assert call(first, creds, "DONE-1").status_code == 200
    upstream.script(Reply.hang())
    hang_in_background(first, creds, "HANG-1")
    upstream.wait_for_requests(2, timeout=10)  # the start event is durable by now
    first.kill()

    second = start_gateway(config, name="gw", env=FAST)
    wait_for(lambda: records(second, creds, "HANG-1")[0]["end"] == "interrupted")
    (hung,) = records(second, creds, "HANG-1")
    started, ended = hung["events"][0], hung["events"][1]
    assert (started["type"], ended["type"]) == ("request.started", "request.ended")
    assert ended["data"]["end"] == "interrupted"
    assert ended["chain"] != started["chain"]  # written by the recovering process
    assert ended["data"]["writer"] == started["chain"]
    assert hung["decision"] is None and hung["complete"] is True
    (done,) = records(second, creds, "DONE-1")
    assert done["end"] == "completed"  # a finished record is never touched
    upstream.clear()

    second.stop()  # graceful: a last checkpoint over its chain
    result = verify(state)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "signed checkpoint(s) verify" in result.stdout
    assert "0 signed" not in result.stdout


def test_recovery_never_touches_a_live_chain(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials, tmp_path: Path
) -> None:
    """Two gateways (several writers) on one SQLite store."""
    state = f"sqlite:///{tmp_path}/shared.db"
    config = gateway_config(upstream.url, state=state)
    a = start_gateway(config, name="a", env=FAST)
    b = start_gateway(config, name="b", env=FAST)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda i: call((a, b)[i % 2], creds, f"BURST-{i}").status_code, range(16))
        )
    assert results == [200] * 16
    upstream.script(Reply.hang())
    hang_in_background(a, creds, "LIVE-1")
    upstream.wait_for_requests(17, timeout=10)
    time.sleep(2.5)  # several recovery rounds on both gateways, with a 1 s stale time
    (live,) = records(b, creds, "LIVE-1")
    assert live["end"] is None  # A heartbeats: its open record is left alone
    a.kill()
    wait_for(lambda: records(b, creds, "LIVE-1")[0]["end"] == "interrupted")
    (ended,) = records(b, creds, "LIVE-1")
    assert ended["events"][1]["chain"] != ended["events"][0]["chain"]
    upstream.clear()
    b.stop()
    result = verify(state)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "in 2 chain(s) verify" in result.stdout
