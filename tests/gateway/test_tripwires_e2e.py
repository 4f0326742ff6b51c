"""Tripwires against real gateways and the upstream stub.

One machine (SQLite, `--workers 2`): a blocked-tool-call rate below the threshold does
nothing; one more blocked call crosses it and the bundle's `degrade` is engaged with
`engaged_by: tripwire:<name>` and the figures in the reason and the lineage event; the
switch stays when the rate falls again, and only an operator releases it. Consent-service
failures trip a `halt`. Two replicas on PostgreSQL + Redis: calls split so that neither
replica alone reaches the minimum count, together they cross it, and the switch is in
force on both replicas within the contract's second; exactly one `switch.engaged`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from policies import default_bundle_path
from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import SET_PRIORITY, casegate, headers, user
from tests.gateway.test_switches_e2e import BOUND_S, FRESH, op, until
from tests.kit.gateway import GatewayProcess, free_port
from tests.kit.stub import Reply, UpstreamStub

ALLOWED = Reply.tool_calls([{"name": "set_priority", "arguments": {"priority": "P2"}}])
BLOCKED = Reply.tool_calls([{"name": "set_priority", "arguments": {"priority": "P1"}}])
FAST = {"CASEGATE_TRIPWIRE_FLUSH_MS": "50"}


def bundle(tmp: Path, tripwires: list[dict[str, Any]], version: str = "tw-e2e-1") -> str:
    data = yaml.safe_load(default_bundle_path().read_text())
    data["version"] = version
    data["use_cases"]["triage"]["tripwires"] = tripwires
    path = tmp / "bundle.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def automation(url: str, key: str) -> httpx.Response:
    body = {"model": "support-default", "messages": user("Prioritise"), "tools": [SET_PRIORITY]}
    return FRESH.post(
        url + "/v1/chat/completions",
        json={**body, **casegate()},
        headers={"Authorization": f"Bearer {key}", **headers(action_class="automation")},
    )


def plain(url: str, key: str) -> httpx.Response:
    body = {"model": "support-default", "messages": user("Where is my parcel?"), **casegate()}
    return FRESH.post(
        url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers()},
    )


def switches(url: str, token: str) -> list[dict[str, Any]]:
    state = FRESH.get(url + "/admin/kill-switches", headers=op(token)).json()
    out: list[dict[str, Any]] = state["switches"]
    return out


def sqlite_counter(db: Path, key: str) -> int:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(value), 0) FROM budget_counters WHERE key = ?", (key,)
        ).fetchone()
    return int(row[0])


def engaged_events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in rows if e["type"] == "switch.engaged"]


def test_blocked_tool_calls_engage_degrade_and_stay(
    start_gateway: Callable[..., GatewayProcess],
    upstream: UpstreamStub,
    creds: Credentials,
    tmp_path: Path,
) -> None:
    tw = {
        "name": "triage-tool-blocks",
        "kind": "tool_calls_blocked_rate",
        "above": 0.2,
        "min_count": 10,
        "window": "10m",
        "mode": "degrade",
    }
    cfg = gateway_config(upstream.url, policy_bundle=bundle(tmp_path, [tw]))
    gw = start_gateway(cfg, workers=2, env=FAST)
    key, oncall = creds.helpdesk, creds.oncall
    db = gw.workdir / "casegate.db"

    # 2 blocked of 12 (16.7 %): below the threshold, nothing happens
    upstream.script(*[ALLOWED] * 10, BLOCKED, BLOCKED)
    answers = [automation(gw.url, key) for _ in range(12)]
    assert [a.status_code for a in answers] == [200] * 12
    assert sum(1 for a in answers if a.json()["casegate"]["tool_calls_blocked"]) == 2
    until(lambda: sqlite_counter(db, "tripwire:triage:60:tool_calls") == 12)
    time.sleep(0.3)  # several evaluation rounds of both workers
    assert switches(gw.url, oncall) == []

    # one more blocked: 3 of 13 (23.1 %) > 20 % -> the bundle's degrade, within the window
    upstream.script(BLOCKED)
    assert automation(gw.url, key).status_code == 200
    t_crossed = time.monotonic()
    until(lambda: bool(switches(gw.url, oncall)), within=BOUND_S + 1)
    (sw,) = switches(gw.url, oncall)
    assert sw["scope"] == "use_case:triage" and sw["mode"] == "degrade"
    assert sw["engaged_by"] == "tripwire:triage-tool-blocks"
    assert "3 of 13 tool calls blocked (23.1%) in 10m (> 20.0%)" in sw["reason"]

    # in force on both workers: automation is lowered one step (to a draft)
    upstream.set_default(Reply.text("Suggest P2."))

    def lowered() -> bool:
        out = automation(gw.url, key).json()["casegate"]
        return bool(out["decision"] == "degraded" and out["action_class_applied"] == "draft")

    until(lambda: all(lowered() for _ in range(6)), within=BOUND_S + 1)
    print(f"\ncrossing call answered -> degrade in force: {time.monotonic() - t_crossed:.2f} s")

    # the rate falls (counts restart after the firing): the switch stays
    for _ in range(12):
        assert plain(gw.url, key).status_code == 200
    time.sleep(0.3)
    (still,) = switches(gw.url, oncall)
    assert still["engaged_by"] == "tripwire:triage-tool-blocks"

    # audited: one switch.engaged event with the tripwire's figures (integers)
    with sqlite3.connect(db) as conn:
        rows = [json.loads(r[0]) for r in conn.execute("SELECT event FROM lineage_events")]
    (event,) = engaged_events(rows)
    data = event["data"]
    assert data["by"] == "tripwire:triage-tool-blocks" and data["mode"] == "degrade"
    assert data["tripwire"] == {
        "name": "triage-tool-blocks",
        "use_case": "triage",
        "kind": "tool_calls_blocked_rate",
        "figures": {
            "tool_calls_blocked": 3,
            "tool_calls": 13,
            "rate_bp": 2307,
            "above_bp": 2000,
            "min_count": 10,
            "window_s": 600,
        },
    }

    # only an operator releases it; the metrics say a tripwire fired
    resp = httpx.delete(
        gw.url + "/admin/kill-switches/use_case:triage?reason=checked", headers=op(oncall)
    )
    assert resp.status_code == 200 and resp.json()["switches"] == []
    fired = (
        'casegate_tripwire_fired_total{use_case="triage",tripwire="triage-tool-blocks",'
        'kind="tool_calls_blocked_rate",mode="degrade"} 1\n'
    )
    until(lambda: fired in httpx.get(gw.url + "/metrics").text)  # summed over both workers


def test_consent_failures_engage_halt(
    start_gateway: Callable[..., GatewayProcess],
    upstream: UpstreamStub,
    creds: Credentials,
    tmp_path: Path,
) -> None:
    tw = {
        "name": "consent-down",
        "kind": "consent_failures",
        "above": 3,
        "window": "1m",
        "mode": "halt",
    }
    cfg = gateway_config(
        upstream.url,
        policy_bundle=bundle(tmp_path, [tw]),
        consent_service={"url": f"http://127.0.0.1:{free_port()}/consent", "timeout_ms": 300},
    )
    gw = start_gateway(cfg, env=FAST)
    key, oncall = creds.helpdesk, creds.oncall
    for _ in range(3):
        resp = plain(gw.url, key)
        assert resp.json()["error"]["code"] == "consent_unavailable"
    until(
        lambda: (
            sqlite_counter(gw.workdir / "casegate.db", "tripwire:triage:6:consent_failures") == 3
        )
    )
    time.sleep(0.2)
    assert switches(gw.url, oncall) == []  # 3 is not above 3
    assert plain(gw.url, key).json()["error"]["code"] == "consent_unavailable"
    until(lambda: bool(switches(gw.url, oncall)), within=BOUND_S + 1)
    (sw,) = switches(gw.url, oncall)
    assert (sw["scope"], sw["mode"], sw["engaged_by"]) == (
        "use_case:triage",
        "halt",
        "tripwire:consent-down",
    )
    assert "4 consent-service failures in 1m (> 3)" in sw["reason"]
    refused = plain(gw.url, key)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "kill_switch_engaged"

    # the console's switches page names the tripwire, marks it automatic, shows the figures
    page = console_page(gw.url, oncall, "/console/switches")
    assert "<code>tripwire:consent-down</code>" in page
    assert '<span class="badge tripwire"' in page
    assert "4 consent-service failures in 1m (&gt; 3)" in page


def console_page(url: str, token: str, path: str) -> str:
    with httpx.Client(base_url=url, timeout=10) as client:
        form = client.get("/console/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        signed = client.post(
            "/console/login", data={"token": token, "csrf": csrf.group(1), "next": path}
        )
        assert signed.status_code == 303, signed.text
        page = client.get(path)
        assert page.status_code == 200
        return page.text


@pytest.mark.postgres
@pytest.mark.redis
def test_two_replicas_share_the_window(
    start_gateway: Callable[..., GatewayProcess],
    upstream: UpstreamStub,
    creds: Credentials,
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
) -> None:
    import psycopg

    tw = {
        "name": "triage-upstream",
        "kind": "upstream_error_rate",
        "above": 0.2,
        "min_count": 10,
        "window": "10m",
        "mode": "halt",
    }
    cfg = gateway_config(
        upstream.url,
        state=pg_url,
        keys=True,
        redis=redis_url,
        policy_bundle=bundle(tmp_path, [tw]),
        retry={"attempts": 1, "max_retry_after_s": 1},
    )
    a = start_gateway(cfg, name="a", env=FAST)
    b = start_gateway(cfg, name="b", env=FAST)
    key, oncall = creds.helpdesk, creds.oncall
    upstream.set_default(Reply.error(500))

    # 6 failing calls on A: 100 % errors, but under the minimum count of 10 anywhere
    for _ in range(6):
        assert plain(a.url, key).json()["error"]["code"] == "upstream_error"
    time.sleep(0.3)
    assert switches(a.url, oncall) == [] and switches(b.url, oncall) == []

    # 4 more on B (4 < 10 there too): 10 calls in the shared window -> halt, on both replicas
    for _ in range(4):
        assert plain(b.url, key).json()["error"]["code"] == "upstream_error"
    t_crossed = time.monotonic()
    # The upstream keeps failing while we wait: a probe that reaches it before the
    # switch is in force is one more failed call in the window (a succeeding probe
    # would make the crossing's figures depend on timing).
    for url in (a.url, b.url):
        until(lambda u=url: plain(u, key).status_code == 503, within=BOUND_S + 1)
    in_force = time.monotonic() - t_crossed
    upstream.set_default(None)
    print(f"\ntripwire crossed on B; refused on both replicas after {in_force * 1000:.0f} ms")
    with psycopg.connect(pg_url) as conn:
        rows = [json.loads(r[0]) for r in conn.execute("SELECT event FROM lineage_events")]
    (event,) = engaged_events(rows)  # claimed once, though both replicas evaluate
    figures = event["data"]["tripwire"]["figures"]
    # crossed at the 10th failed call, or just after it if a probe landed first
    assert 10 <= figures["upstream_calls"] == figures["upstream_errors"]
    n = figures["upstream_calls"]
    for url in (a.url, b.url):
        resp = plain(url, key)
        assert resp.json()["error"]["code"] == "kill_switch_engaged"
        (sw,) = switches(url, oncall)
        assert sw["engaged_by"] == "tripwire:triage-upstream" and sw["mode"] == "halt"
        assert f"{n} of {n} calls failed upstream (100.0%) in 10m (> 20.0%)" in sw["reason"]

    # never released by itself: still engaged after more evaluation rounds
    time.sleep(0.5)
    assert [s["engaged_by"] for s in switches(b.url, oncall)] == ["tripwire:triage-upstream"]
