"""The scorecard of a recorded mixed run, against figures worked out by hand.

Nine calls, each through the real endpoints: an allowed call, an ineligible customer,
an upstream failure, an automation whose tool call breaks the allowlist (downgraded),
three reply drafts (approved as written, approved with an edit, rejected), a triage
draft that expires, and a call refused by a kill switch; then four outcomes. The
expected figures below follow DESIGN.md section 8's definitions applied by hand to
that run (the only measured inputs are the approval latencies, whose percentiles are
taken by nearest rank here).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from policies import default_bundle_path
from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import SET_PRIORITY, casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import Reply, UpstreamStub

AUDITOR = "op-auditor-scorecard"
APPROVER = "op-approver-scorecard"


@pytest.fixture(scope="module")
def module_creds() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module")
def gateway(
    upstream_server: UpstreamStub,
    module_creds: Credentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("gw-scorecard")
    bundle = default_bundle_path().read_text()
    short = bundle.replace(
        "expires_after: 24h        # undecided", "expires_after: 1s  # undecided"
    )
    assert short != bundle  # triage drafts expire after a second; reply_drafting's 24h
    (workdir / "bundle.yaml").write_text(short)
    config = gateway_config(
        upstream_server.url,
        policy_bundle="bundle.yaml",
        operators=[
            {"name": "ann", "token_env": "APPROVER_TOKEN", "roles": ["approver"]},
            {"name": "audrey", "token_env": "AUDITOR_TOKEN", "roles": ["auditor"]},
            {"name": "oncall", "token_env": "ONCALL_TOKEN", "roles": ["incident_responder"]},
        ],
    )
    env = {**module_creds.env(), "APPROVER_TOKEN": APPROVER, "AUDITOR_TOKEN": AUDITOR}
    gw = GatewayProcess.start(workdir, config, env=env)
    yield gw
    gw.stop()


def call(
    gw: GatewayProcess,
    creds: Credentials,
    *,
    queue: str,
    segment: str,
    use_case: str = "triage",
    action_class: str | None = None,
    customer: dict[str, Any] | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> httpx.Response:
    extra = {"queue": queue, "segment": segment, "case_id": f"SC-{queue}-{segment}"}
    if action_class:
        extra["action_class"] = action_class
    body: dict[str, Any] = {
        "model": "support-default",
        "messages": user("Please help with my order"),
        **casegate(customer=customer),
    }
    if tools:
        body["tools"] = tools
    return httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {creds.helpdesk}", **headers(use_case, **extra)},
        json=body,
        timeout=20,
    )


def op(gw: GatewayProcess, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
    return httpx.request(
        method, gw.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10, **kw
    )


def outcome(gw: GatewayProcess, creds: Credentials, lid: str, body: dict[str, Any]) -> None:
    resp = httpx.post(
        gw.url + f"/v1/lineage/{lid}/outcome",
        headers={"Authorization": f"Bearer {creds.helpdesk}"},
        json=body,
        timeout=10,
    )
    assert resp.status_code == 200, resp.text


def recorded_run(gw: GatewayProcess, creds: Credentials, upstream: UpstreamStub) -> dict[str, str]:
    ids: dict[str, str] = {}

    def lid(resp: httpx.Response) -> str:
        return resp.headers["x-casegate-lineage-id"]

    a = call(gw, creds, queue="billing", segment="gold")
    assert a.status_code == 200
    ids["A"] = lid(a)
    b = call(gw, creds, queue="billing", segment="silver", customer={"authenticated": False})
    assert b.status_code == 403 and b.json()["error"]["code"] == "ineligible"
    ids["B"] = lid(b)
    upstream.set_default(Reply.error(500))
    c = call(gw, creds, queue="shipping", segment="gold")
    assert c.status_code == 502
    ids["C"] = lid(c)
    upstream.clear()
    upstream.script(Reply.tool_calls([{"name": "set_priority", "arguments": {"priority": "P1"}}]))
    d = call(
        gw, creds, queue="shipping", segment="gold", action_class="automation", tools=[SET_PRIORITY]
    )
    assert d.status_code == 200 and d.json()["casegate"]["tool_calls_blocked"] == ["set_priority"]
    ids["D"] = lid(d)
    drafts = {}
    for name, queue, segment in (
        ("E", "billing", "gold"),
        ("F", "billing", "silver"),
        ("G", "shipping", "silver"),
    ):
        r = call(gw, creds, queue=queue, segment=segment, use_case="reply_drafting")
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "stub reply"
        ids[name] = lid(r)
        drafts[name] = r.json()["casegate"]["approval"]["id"]
    h = call(gw, creds, queue="shipping", segment="gold", action_class="draft")
    assert h.status_code == 200
    ids["H"] = lid(h)
    drafts["H"] = h.json()["casegate"]["approval"]["id"]

    assert op(gw, "POST", f"/admin/drafts/{drafts['E']}/approve", APPROVER, json={}).is_success
    edited = {"edited_text": "stub reply, thanks"}  # Levenshtein 8 from "stub reply"
    assert op(gw, "POST", f"/admin/drafts/{drafts['F']}/approve", APPROVER, json=edited).is_success
    rejected = {"reason": "wrong tone"}
    assert op(gw, "POST", f"/admin/drafts/{drafts['G']}/reject", APPROVER, json=rejected).is_success
    time.sleep(1.2)  # H's draft expires; reading it records the expiry
    view = httpx.get(
        gw.url + f"/v1/drafts/{drafts['H']}",
        headers={"Authorization": f"Bearer {creds.helpdesk}"},
        timeout=10,
    )
    assert view.json()["status"] == "expired"

    switch = {"scope": "use_case:triage", "mode": "halt", "reason": "scorecard test"}
    assert op(gw, "POST", "/admin/kill-switches", creds.oncall, json=switch).is_success
    i = call(gw, creds, queue="billing", segment="gold")
    assert i.status_code == 503 and i.json()["error"]["code"] == "kill_switch_engaged"
    ids["I"] = lid(i)
    released = op(gw, "DELETE", "/admin/kill-switches/use_case:triage?reason=done", creds.oncall)
    assert released.is_success

    outcome(gw, creds, ids["A"], {"type": "resolved_first_contact", "handle_time_s": 300})
    outcome(gw, creds, ids["C"], {"type": "complaint", "handle_time_s": 600})
    outcome(gw, creds, ids["D"], {"type": "misroute", "handle_time_s": 120})
    outcome(gw, creds, ids["E"], {"type": "handled"})
    return ids


def latencies_s(gw: GatewayProcess, ids: dict[str, str], names: str) -> list[float]:
    out = []
    for name in names:
        record = op(gw, "GET", f"/admin/lineage/{ids[name]}", AUDITOR).json()
        (decided,) = [e for e in record["events"] if e["type"] == "approval.decided"]
        out.append(decided["data"]["latency_ms"] / 1000)
    return sorted(out)


def rank(values: list[float], p: int) -> float:
    return values[math.ceil(p / 100 * len(values)) - 1]


EMPTY = {
    "calls": 0,
    "ai_assisted": 0,
    "refusals": {},
    "policy_exceptions": 0,
    "manual_override_rate": None,
    "expired_drafts": 0,
    "approval_latency_p50_s": None,
    "approval_latency_p90_s": None,
    "mean_edit_distance": None,
    "misroute_rate": None,
    "complaint_rate": None,
    "first_contact_resolution_rate": None,
    "mean_handle_time_s": None,
    "lineage_complete": None,
    "kill_switch_refusals": 0,
}


def test_scorecard_of_a_mixed_run_matches_the_hand_computed_figures(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    started = time.time()
    ids = recorded_run(gateway, module_creds, upstream)
    efg = latencies_s(gateway, ids, "EFG")
    ef = latencies_s(gateway, ids, "EF")
    (g,) = latencies_s(gateway, ids, "G")
    day = time.strftime("%Y-%m-%d", time.gmtime(started))
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(started + 86400))

    card = op(
        gateway, "GET", f"/admin/scorecard?from={day}&to={tomorrow}&group_by=queue", AUDITOR
    ).json()
    assert card["from"] == f"{day}T00:00:00.000Z" and card["group_by"] == "queue"
    total = {
        "calls": 9,
        "ai_assisted": 6,  # A, D, E, F, G, H
        "refusals": {"ineligible": 1, "kill_switch_engaged": 1},
        "policy_exceptions": 2,  # D's blocked call + B's ineligible refusal
        "manual_override_rate": 2 / 3,  # (F edited + G rejected) / E, F, G decided
        "expired_drafts": 1,
        "approval_latency_p50_s": efg[1],
        "approval_latency_p90_s": efg[2],
        "mean_edit_distance": 4.0,  # (0 + 8) / 2 approved
        "misroute_rate": 0.25,  # outcomes: A, C, D, E
        "complaint_rate": 0.25,
        "first_contact_resolution_rate": 0.25,
        "mean_handle_time_s": 340.0,  # (300 + 600 + 120) / 3 with a handle time
        "lineage_complete": 1.0,
        "kill_switch_refusals": 1,
    }
    assert card["total"] == total
    groups = {g_["key"]: g_["figures"] for g_ in card["groups"]}
    assert list(groups) == ["billing", "shipping"]
    assert groups["billing"] == {  # A, B, E, F, I
        "calls": 5,
        "ai_assisted": 3,
        "refusals": {"ineligible": 1, "kill_switch_engaged": 1},
        "policy_exceptions": 1,
        "manual_override_rate": 0.5,
        "expired_drafts": 0,
        "approval_latency_p50_s": ef[0],
        "approval_latency_p90_s": ef[1],
        "mean_edit_distance": 4.0,
        "misroute_rate": 0.0,
        "complaint_rate": 0.0,
        "first_contact_resolution_rate": 0.5,
        "mean_handle_time_s": 300.0,
        "lineage_complete": 1.0,
        "kill_switch_refusals": 1,
    }
    assert groups["shipping"] == {  # C, D, G, H
        "calls": 4,
        "ai_assisted": 3,
        "refusals": {},
        "policy_exceptions": 1,
        "manual_override_rate": 1.0,
        "expired_drafts": 1,
        "approval_latency_p50_s": g,
        "approval_latency_p90_s": g,
        "mean_edit_distance": None,  # no approved draft
        "misroute_rate": 0.5,
        "complaint_rate": 0.5,
        "first_contact_resolution_rate": 0.0,
        "mean_handle_time_s": 360.0,
        "lineage_complete": 1.0,
        "kill_switch_refusals": 0,
    }
    assert rank(efg, 50) == efg[1] and rank(efg, 90) == efg[2]  # nearest rank, n = 3

    by_segment = op(gateway, "GET", "/admin/scorecard?group_by=segment", AUDITOR).json()
    seg = {g_["key"]: g_["figures"] for g_ in by_segment["groups"]}
    assert by_segment["total"] == total  # the default window is the last 7 days
    assert (seg["gold"]["calls"], seg["silver"]["calls"]) == (6, 3)
    assert seg["gold"]["manual_override_rate"] == 0.0  # E approved as written
    assert seg["silver"]["manual_override_rate"] == 1.0  # F edited, G rejected
    assert seg["gold"]["expired_drafts"] == 1
    by_use_case = op(gateway, "GET", "/admin/scorecard?group_by=use_case", AUDITOR).json()
    uc = {g_["key"]: g_["figures"]["calls"] for g_ in by_use_case["groups"]}
    assert uc == {"reply_drafting": 3, "triage": 6}

    past = op(gateway, "GET", "/admin/scorecard?from=2020-01-01&to=2020-01-08", AUDITOR).json()
    assert past["total"] == EMPTY and past["groups"] == []

    # the CLI prints the same figures
    import subprocess
    import sys

    env = {**gateway.env, "CASEGATE_URL": gateway.url, "CASEGATE_TOKEN": AUDITOR}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "scorecard",
            "--from",
            day,
            "--to",
            tomorrow,
            "--group-by",
            "queue",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "[billing]" in out.stdout and "[TOTAL]" in out.stdout
    assert "manual_override_rate" in out.stdout and "0.667" in out.stdout


def test_scorecard_checks_its_parameters_and_role(
    gateway: GatewayProcess, module_creds: Credentials
) -> None:
    bad = op(gateway, "GET", "/admin/scorecard?group_by=client", AUDITOR)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"
    bad = op(gateway, "GET", "/admin/scorecard?from=yesterday", AUDITOR)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "from"
    assert op(gateway, "GET", "/admin/scorecard", APPROVER).status_code == 403
    assert op(gateway, "GET", "/admin/scorecard", module_creds.helpdesk).status_code == 401
