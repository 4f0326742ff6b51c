"""Kill switches on one machine: SQLite state, `casegate serve --workers 2`.

Engage → every worker refuses within a second (workers poll the state version), release
restores, a restart keeps the state, a stream in flight is cut, and only
incident responders flip. The helpers here are shared by the PostgreSQL/Redis test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Credentials, gateway_config, new_key
from tests.gateway.helpers import ROUTE_TO_QUEUE, SET_PRIORITY, casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import Reply, UpstreamStub

#: the contract bound (DESIGN.md section 4): in force everywhere within one second
BOUND_S = 1.0
#: no keep-alive: each call opens a new connection, which the kernel hands to any worker
FRESH = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10)


class Tokens:
    def __init__(self) -> None:
        self.admin = new_key("op-admin")
        self.approver = new_key("op-approver")

    def env(self) -> dict[str, str]:
        return {"ADMIN_TOKEN": self.admin, "APPROVER_TOKEN": self.approver}


OPERATORS = [
    {"name": "oncall", "token_env": "ONCALL_TOKEN", "roles": ["incident_responder", "auditor"]},
    {"name": "root", "token_env": "ADMIN_TOKEN", "roles": ["admin"]},
    {"name": "reviewer", "token_env": "APPROVER_TOKEN", "roles": ["approver"]},
]


def config(stub_url: str, **overrides: Any) -> dict[str, Any]:
    return gateway_config(stub_url, operators=OPERATORS, **overrides)


def op(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def chat(url: str, key: str, *, stream: bool = False, action_class: str | None = None) -> Any:
    """One call on a fresh connection (so the kernel may hand it to any worker)."""
    extra = {"action_class": action_class} if action_class else {}
    body = {"model": "support-default", "messages": user("Where is my parcel?"), **casegate()}
    if stream:
        body["stream"] = True
    return FRESH.post(
        url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers(**extra)},
    )


def engage(
    url: str,
    token: str,
    scope: str,
    mode: str = "halt",
    reason: str = "drill",
    *,
    settle: int = 0,
) -> Any:
    """Engage; with *settle*, wait until that many workers acknowledge the new state."""
    resp = httpx.post(
        url + "/admin/kill-switches",
        json={"scope": scope, "mode": mode, "reason": reason},
        headers=op(token),
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    state = resp.json()
    if settle:
        until(lambda: acked(url, token, state["version"], settle))
    return state


def release(url: str, token: str, scope: str, reason: str = "resolved", *, settle: int = 0) -> Any:
    quoted = urllib.parse.quote(scope, safe="")
    resp = httpx.delete(
        f"{url}/admin/kill-switches/{quoted}?reason={reason}", headers=op(token), timeout=10
    )
    assert resp.status_code == 200, resp.text
    state = resp.json()
    if settle:
        until(lambda: acked(url, token, state["version"], settle))
    return state


def until(predicate: Callable[[], bool], *, within: float = 5.0, step: float = 0.005) -> float:
    """Seconds until *predicate* holds (it is polled); fails after *within*."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            pytest.fail(f"not within {within}s")
        time.sleep(step)
    return time.monotonic() - start


def refuses(url: str, key: str, n: int = 8) -> bool:
    """The next *n* calls (fresh connections, so spread over the workers) all refuse."""
    for _ in range(n):
        resp = chat(url, key)
        if resp.status_code != 503:
            return False
        assert resp.json()["error"]["code"] == "kill_switch_engaged"
        assert resp.headers["x-should-retry"] == "false"
    return True


def allows(url: str, key: str, n: int = 8) -> bool:
    for _ in range(n):
        resp = chat(url, key)
        if resp.status_code != 200:
            print("not allowed:", resp.status_code, resp.text[:300])
            return False
    return True


def acked(url: str, token: str, version: int, workers: int) -> bool:
    state = FRESH.get(url + "/admin/kill-switches", headers=op(token)).json()
    current = [a for a in state["acknowledged_by"] if a["version"] >= version]
    return len(current) >= workers


class StreamReader:
    """Reads an SSE stream in a thread; records when the error frame arrived."""

    def __init__(self, url: str, key: str) -> None:
        self.frames: list[str] = []
        self.error_at: float | None = None
        self.first = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, key), daemon=True)
        self.thread.start()

    def _run(self, url: str, key: str) -> None:
        body = {
            "model": "support-default",
            "messages": user("Tell me a long story"),
            "stream": True,
            **casegate(),
        }
        try:
            with httpx.stream(
                "POST",
                url + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}", **headers()},
                timeout=20,
            ) as resp:
                self.lineage_id = resp.headers.get("x-casegate-lineage-id")
                for line in resp.iter_lines():
                    if not line:
                        continue
                    if line.startswith("event: error"):
                        self.error_at = time.monotonic()
                    self.frames.append(line)
                    self.first.set()
        finally:
            self.first.set()
            self.done.set()

    def error(self) -> dict[str, Any]:
        i = self.frames.index("event: error")
        data: dict[str, dict[str, Any]] = json.loads(self.frames[i + 1].removeprefix("data: "))
        return data["error"]


def slow_stream(upstream: UpstreamStub) -> None:
    # about 12 s of text: far longer than the one-second bound
    upstream.set_default(Reply.chunks([f"w{i} " for i in range(60)], delay_s=0.2))


def ended_event(events: list[dict[str, Any]], lineage_id: str) -> dict[str, Any]:
    (end,) = [e for e in events if e["lineage_id"] == lineage_id and e["type"] == "request.ended"]
    return end


def sqlite_events(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        return [json.loads(r[0]) for r in conn.execute("SELECT event FROM lineage_events")]


# -- SQLite, several workers ----------------------------------------------------------


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def sqlite_gw(
    start_gateway: Callable[..., GatewayProcess], upstream: UpstreamStub, tokens: Tokens
) -> Iterator[GatewayProcess]:
    gw = start_gateway(config(upstream.url), workers=2, env=tokens.env())
    yield gw


@pytest.fixture(scope="module")
def mod_creds() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module")
def mod_tokens() -> Tokens:
    return Tokens()


@pytest.fixture(scope="module")
def shared_gw(
    upstream_server: UpstreamStub,
    mod_creds: Credentials,
    mod_tokens: Tokens,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    """One two-worker gateway for the tests that leave no switch engaged behind them."""
    gw = GatewayProcess.start(
        tmp_path_factory.mktemp("gw-switches"),
        config(upstream_server.url),
        env={**mod_creds.env(), **mod_tokens.env()},
        workers=2,
    )
    yield gw
    gw.stop()


def test_two_workers_on_sqlite_engage_release_restart_and_stream_cut(
    start_gateway: Callable[..., GatewayProcess],
    sqlite_gw: GatewayProcess,
    upstream: UpstreamStub,
    creds: Credentials,
    tokens: Tokens,
) -> None:
    gw, key, oncall = sqlite_gw, creds.helpdesk, creds.oncall
    assert allows(gw.url, key)
    until(lambda: acked(gw.url, oncall, 0, 2), within=10)  # both workers are up and acked

    state = engage(gw.url, oncall, "use_case:triage", reason="bad answers, incident 7")
    t_returned = time.monotonic()
    version = state["version"]
    assert state["switches"][0]["scope"] == "use_case:triage"
    assert state["switches"][0]["engaged_by"] == "oncall"
    all_acked = until(lambda: acked(gw.url, oncall, version, 2))
    assert refuses(gw.url, key, n=12)
    took = time.monotonic() - t_returned
    print(
        f"\nSQLite, 2 workers: all acknowledged {all_acked * 1000:.0f} ms after engage; "
        f"12 refusals done {took * 1000:.0f} ms after"
    )
    assert all_acked < BOUND_S

    state = release(gw.url, oncall, "use_case:triage")
    until(lambda: acked(gw.url, oncall, state["version"], 2))
    assert allows(gw.url, key, n=12)

    # a stream in flight is cut within a second of the engage call returning
    slow_stream(upstream)
    reader = StreamReader(gw.url, key)
    assert reader.first.wait(10)
    engage(gw.url, oncall, "global", reason="stop everything")
    t_returned = time.monotonic()
    assert reader.done.wait(5)
    assert reader.error_at is not None, reader.frames
    cut_after = reader.error_at - t_returned
    print(f"stream cut {cut_after * 1000:.0f} ms after the engage call returned")
    assert cut_after < BOUND_S
    assert reader.error()["code"] == "kill_switch_engaged"
    assert "global" in reader.error()["message"]
    assert reader.frames[-1] == "data: [DONE]"
    upstream.wait_idle(3)  # the upstream request was abandoned
    upstream.clear()

    # the switch survives a restart of every worker
    gw.stop()
    gw2 = start_gateway(config(upstream.url), workers=2, env=tokens.env(), name="gw", port=gw.port)
    assert refuses(gw2.url, key)
    listed = httpx.get(gw2.url + "/admin/kill-switches", headers=op(tokens.approver)).json()
    assert [s["scope"] for s in listed["switches"]] == ["global"]
    release(gw2.url, oncall, "global")
    until(lambda: allows(gw2.url, key, n=4), within=BOUND_S)

    # lineage: the flips (who, why) and the affected calls name the switch
    events = sqlite_events(gw.workdir / "casegate.db")
    flips = [e for e in events if e["type"].startswith("switch.")]
    assert [(e["type"], e["data"]["scope"]) for e in flips] == [
        ("switch.engaged", "use_case:triage"),
        ("switch.released", "use_case:triage"),
        ("switch.engaged", "global"),
        ("switch.released", "global"),
    ]
    assert flips[0]["data"]["by"] == "oncall"
    assert flips[0]["data"]["reason"] == "bad answers, incident 7"
    assert len({e["lineage_id"] for e in flips}) == 4
    cut = ended_event(events, reader.lineage_id)["data"]
    assert cut["end"] == "refused" and cut["refusal"] == "kill_switch_engaged"
    assert cut["kill_switches"] == ["global"]
    refused = [
        e["data"]
        for e in events
        if e["type"] == "request.ended" and e["data"]["refusal"] == "kill_switch_engaged"
    ]
    assert any(d["kill_switches"] == ["use_case:triage"] for d in refused)


def test_scopes_modes_and_validation(
    shared_gw: GatewayProcess, mod_creds: Credentials, upstream: UpstreamStub
) -> None:
    gw, creds = shared_gw, mod_creds
    oncall = creds.oncall

    def post(body: dict[str, str]) -> httpx.Response:
        return httpx.post(gw.url + "/admin/kill-switches", json=body, headers=op(oncall))

    # a scope that names nothing is 400 listing the valid ones
    resp = post({"scope": "use_case:triag", "mode": "halt", "reason": "typo"})
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["param"] == "scope"
    assert "use_case:triage" in err["message"] and "model:openai/gpt-primary" in err["message"]
    # a reason is required
    for body in ({"scope": "global", "mode": "halt"}, {"scope": "global", "reason": "  "}):
        assert post(body).status_code == 400
    assert post({"scope": "global", "mode": "pause", "reason": "x"}).status_code == 400

    # degrade: automation becomes a draft (default bundle: triage has no draft → recommendation)
    engage(gw.url, oncall, "action_class:automation", mode="degrade", settle=2)
    resp = chat(gw.url, creds.helpdesk, action_class="automation")
    assert resp.status_code == 200, resp.text
    meta = resp.json()["casegate"]
    assert meta["decision"] == "degraded"
    assert meta["action_class_applied"] != "automation"
    # re-engaging replaces mode and reason
    state = engage(gw.url, oncall, "action_class:automation", mode="halt", reason="worse", settle=2)
    assert [(s["mode"], s["reason"]) for s in state["switches"]] == [("halt", "worse")]
    resp = chat(gw.url, creds.helpdesk, action_class="automation")
    assert resp.status_code == 503
    assert "action_class:automation" in resp.json()["error"]["message"]
    assert chat(gw.url, creds.helpdesk).status_code == 200  # recommendations still flow

    # model: the route falls back past it; all models off → 503
    engage(gw.url, oncall, "model:openai/gpt-primary", settle=2)
    resp = chat(gw.url, creds.helpdesk)
    assert resp.status_code == 200 and resp.json()["model"] == "gpt-secondary"
    engage(
        gw.url, oncall, " Model: openai/gpt-secondary ", settle=2
    )  # kind case-insensitive, trimmed
    resp = chat(gw.url, creds.helpdesk)
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "kill_switch_engaged"
    assert resp.headers["x-should-retry"] == "false"
    end = ended_event(
        sqlite_events(gw.workdir / "casegate.db"), resp.headers["x-casegate-lineage-id"]
    )
    assert end["data"]["kill_switches"] == [
        "model:openai/gpt-primary",
        "model:openai/gpt-secondary",
    ]

    # release: raw or percent-encoded scope, reason in the body or the query
    resp = httpx.request(
        "DELETE",
        gw.url + "/admin/kill-switches/model:openai/gpt-primary",
        json={"reason": "fixed"},
        headers=op(oncall),
    )
    assert resp.status_code == 200, resp.text
    until(lambda: acked(gw.url, oncall, resp.json()["version"], 2))
    release(gw.url, oncall, "model:openai/gpt-secondary", settle=2)
    assert chat(gw.url, creds.helpdesk).status_code == 200
    resp = httpx.delete(gw.url + "/admin/kill-switches/global?reason=x", headers=op(oncall))
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    resp = httpx.delete(
        gw.url + "/admin/kill-switches/action_class%3Aautomation", headers=op(oncall)
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "reason"
    release(gw.url, oncall, "action_class:automation", settle=2)

    # tool: the tool no longer goes upstream; the record names the switch
    engage(gw.url, oncall, "tool:set_priority", settle=2)
    upstream.clear()
    resp = FRESH.post(
        gw.url + "/v1/chat/completions",
        json={
            "model": "support-default",
            "messages": user("Route this"),
            "tools": [SET_PRIORITY, ROUTE_TO_QUEUE],
            **casegate(),
        },
        headers={"Authorization": f"Bearer {creds.helpdesk}", **headers(action_class="automation")},
    )
    assert resp.status_code == 200, resp.text
    (sent,) = upstream.chat_requests
    assert [t["function"]["name"] for t in sent.json["tools"]] == ["route_to_queue"]
    end = ended_event(
        sqlite_events(gw.workdir / "casegate.db"), resp.headers["x-casegate-lineage-id"]
    )
    assert end["data"]["kill_switches"] == ["tool:set_priority"]
    release(gw.url, oncall, "tool:set_priority", settle=2)


def test_only_incident_responders_flip(
    shared_gw: GatewayProcess, mod_creds: Credentials, mod_tokens: Tokens
) -> None:
    gw, creds, tokens = shared_gw, mod_creds, mod_tokens
    body = {"scope": "global", "mode": "halt", "reason": "x"}
    # a client key is not an operator token: 401
    for method, path in (
        ("POST", "/admin/kill-switches"),
        ("DELETE", "/admin/kill-switches/global"),
        ("GET", "/admin/kill-switches"),
    ):
        resp = httpx.request(method, gw.url + path, json=body, headers=op(creds.helpdesk))
        assert resp.status_code == 401, (method, resp.text)
        assert resp.json()["error"]["code"] == "invalid_api_key"
    # an approver-only operator may look but not flip: 403
    resp = httpx.post(gw.url + "/admin/kill-switches", json=body, headers=op(tokens.approver))
    assert resp.status_code == 403 and resp.json()["error"]["type"] == "permission_error"
    engage(gw.url, tokens.admin, "global", settle=2)  # admin holds every role
    resp = httpx.delete(
        gw.url + "/admin/kill-switches/global?reason=x", headers=op(tokens.approver)
    )
    assert resp.status_code == 403
    listed = httpx.get(gw.url + "/admin/kill-switches", headers=op(tokens.approver))
    assert listed.status_code == 200 and listed.json()["switches"][0]["engaged_by"] == "root"
    release(gw.url, creds.oncall, "global", settle=2)


def test_cli_engages_and_releases(
    shared_gw: GatewayProcess, mod_creds: Credentials, upstream: UpstreamStub
) -> None:
    sqlite_gw, creds = shared_gw, mod_creds
    env = {**os.environ, "CASEGATE_URL": sqlite_gw.url, "CASEGATE_TOKEN": creds.oncall}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    done = cli("kill", "engage", "route:support-default", "--reason", "provider outage")
    assert done.returncode == 0, done.stderr
    assert "route:support-default" in done.stdout
    until(lambda: refuses(sqlite_gw.url, creds.helpdesk, n=4), within=BOUND_S)
    bad = cli("kill", "engage", "route:nope", "--reason", "typo")
    assert bad.returncode == 1 and "route:support-default" in bad.stderr
    assert cli("kill", "engage", "global").returncode == 2  # --reason is required
    done = cli("kill", "release", "route:support-default", "--reason", "back")
    assert done.returncode == 0, done.stderr
    until(lambda: allows(sqlite_gw.url, creds.helpdesk, n=4), within=BOUND_S)
