"""Policy versions end to end: store, observe, promote, roll back, restart (SQLite, 2 workers).

Three versions of the shipped bundle: v1 (as shipped: GB customers are eligible for
triage), v2 (triage only for IE: GB is refused `ineligible`), v3 (GB again, but the
`language` context field is stripped). Every activation reaches both workers before
the next call (they acknowledge the state version), and a restart whose config names
another bundle keeps the rolled-back version.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from policies import default_bundle_path
from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import CONTEXT, casegate, headers, user
from tests.gateway.test_switches_e2e import FRESH, OPERATORS, Tokens, acked, op, until
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import UpstreamStub

V1 = default_bundle_path().read_text(encoding="utf-8")
V1_VERSION = "2026-11-28.1"
V2 = V1.replace(f'version: "{V1_VERSION}"', 'version: "v2"').replace(
    "{rule: customer.region, in: [GB, IE, US]}", "{rule: customer.region, in: [IE]}"
)
V3 = V1.replace(f'version: "{V1_VERSION}"', 'version: "v3"').replace(
    'optional: [recent_case_category, language, "order.items[].sku"]',
    'optional: [recent_case_category, "order.items[].sku"]',
)
assert V2 != V1 and V3 != V1 and "v2" in V2


def settle(url: str, token: str, workers: int = 2) -> None:
    """Wait until every worker enforces the current control state (policy included)."""
    version = FRESH.get(url + "/admin/kill-switches", headers=op(token)).json()["version"]
    until(lambda: acked(url, token, version, workers), within=1.0)


def call(url: str, key: str) -> httpx.Response:
    body = {
        "model": "support-default",
        "messages": user("Where is my parcel?"),
        **casegate(context={**CONTEXT, "language": "en"}),
    }
    return FRESH.post(
        url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers()},
    )


def events(gw: GatewayProcess) -> list[dict[str, Any]]:
    with sqlite3.connect(gw.workdir / "casegate.db") as conn:
        rows = conn.execute("SELECT event FROM lineage_events ORDER BY at, chain, seq")
        return [json.loads(r[0]) for r in rows]


def decided_by(gw: GatewayProcess, lineage_id: str) -> str:
    (start,) = [
        e for e in events(gw) if e["lineage_id"] == lineage_id and e["type"] == "request.started"
    ]
    version: str = start["data"]["policy"]["version"]
    return version


def cli(gw: GatewayProcess, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CASEGATE_URL": gw.url, "CASEGATE_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_store_observe_promote_rollback_restart(
    start_gateway: Callable[..., GatewayProcess],
    upstream: UpstreamStub,
    creds: Credentials,
    tmp_path: Path,
) -> None:
    tokens = Tokens()
    gw = start_gateway(
        gateway_config(upstream.url, operators=OPERATORS), workers=2, env=tokens.env()
    )
    key, admin, oncall = creds.helpdesk, tokens.admin, creds.oncall

    listed = httpx.get(gw.url + "/admin/policies", headers=op(tokens.approver)).json()
    assert listed["active"]["version"] == V1_VERSION and listed["active"]["mode"] == "enforce"
    assert listed["observed"] is None
    assert [h["by"] for h in listed["history"]] == ["config"]

    # storing: admin only; a bad bundle is 400 naming the path; same version, other bytes: 409
    post = {"bundle": V2, "reason": "GB pause"}
    resp = httpx.post(gw.url + "/admin/policies", json=post, headers=op(oncall))
    assert resp.status_code == 403
    resp = httpx.post(gw.url + "/admin/policies", json=post, headers=op(creds.helpdesk))
    assert resp.status_code == 401
    bad = V2.replace("default_action_class: recommendation", "default_action_class: bogus", 1)
    resp = httpx.post(
        gw.url + "/admin/policies", json={"bundle": bad, "reason": "x"}, headers=op(admin)
    )
    assert resp.status_code == 400, resp.text
    assert "use_cases.triage.default_action_class" in resp.json()["error"]["message"]
    resp = httpx.post(gw.url + "/admin/policies", json=post, headers=op(admin))
    assert resp.status_code == 201 and resp.json()["version"] == "v2"
    resp = httpx.post(gw.url + "/admin/policies", json=post, headers=op(admin))
    assert resp.status_code == 200 and resp.json()["stored"] is False
    resp = httpx.post(
        gw.url + "/admin/policies",
        json={"bundle": V2 + "\n# edited\n", "reason": "x"},
        headers=op(admin),
    )
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "version_conflict"
    text = httpx.get(gw.url + "/admin/policies/v2", headers=op(oncall))
    assert text.status_code == 200 and text.content == V2.encode("utf-8")  # bytes unchanged
    assert httpx.get(gw.url + "/admin/policies/nope", headers=op(oncall)).status_code == 404

    # observe: v2 decides beside v1, recorded, never applied
    v2_file = tmp_path / "v2.yaml"
    v2_file.write_text(V2, encoding="utf-8")
    done = cli(gw, admin, "policy", "apply", str(v2_file), "--observe", "--reason", "stage it")
    assert done.returncode == 0, done.stderr
    assert "observing: v2" in done.stdout
    settle(gw.url, oncall)
    resp = call(gw.url, key)
    assert resp.status_code == 200, resp.text
    lid = resp.headers["x-casegate-lineage-id"]
    assert decided_by(gw, lid) == V1_VERSION
    (end,) = [e for e in events(gw) if e["lineage_id"] == lid and e["type"] == "request.ended"]
    observed = end["data"]["observed"]
    assert observed["version"] == "v2"
    assert observed["decision"] == "refused" and observed["refusal"] == "ineligible"
    diff = cli(gw, oncall, "policy", "diff", "--observed", "--json")
    assert diff.returncode == 0, diff.stderr
    report = json.loads(diff.stdout)
    assert report["calls"] == 1 and report["versions"] == {"v2": 1}
    assert report["would_refuse"] == {"total": 1, "by_code": {"ineligible": 1}}
    human = cli(gw, oncall, "policy", "diff", "--observed")
    assert "would refuse:         1 (ineligible 1)" in human.stdout

    # promote: v2 enforces on both workers; GB is refused and the record names v2
    done = cli(gw, admin, "policy", "promote", "v2")
    assert done.returncode == 0, done.stderr
    settle(gw.url, oncall)
    for _ in range(4):
        resp = call(gw.url, key)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "ineligible"
    assert decided_by(gw, resp.headers["x-casegate-lineage-id"]) == "v2"
    listed = httpx.get(gw.url + "/admin/policies", headers=op(oncall)).json()
    assert listed["active"] == {
        "version": "v2",
        "sha256": listed["active"]["sha256"],
        "mode": "enforce",
    }
    assert listed["observed"] is None

    # v3 enforces; rollback (an incident responder) goes back to v2, not v1
    resp = httpx.post(
        gw.url + "/admin/policies", json={"bundle": V3, "reason": "GB back"}, headers=op(admin)
    )
    assert resp.status_code == 201
    resp = httpx.post(
        gw.url + "/admin/policies/v3/activate",
        json={"mode": "enforce", "reason": "GB back"},
        headers=op(oncall),
    )
    assert resp.status_code == 403  # activation is an admin's
    resp = httpx.post(
        gw.url + "/admin/policies/v3/activate",
        json={"mode": "enforce", "reason": "GB back"},
        headers=op(admin),
    )
    assert resp.status_code == 200 and resp.json()["active"]["version"] == "v3"
    settle(gw.url, oncall)
    resp = call(gw.url, key)
    assert resp.status_code == 200 and resp.json()["casegate"]["fields"]["stripped"] == ["language"]
    resp = httpx.post(
        gw.url + "/admin/policies/rollback",
        json={"reason": "v3 misbehaves"},
        headers=op(tokens.approver),
    )
    assert resp.status_code == 403
    resp = httpx.post(
        gw.url + "/admin/policies/rollback", json={"reason": "v3 misbehaves"}, headers=op(oncall)
    )
    assert resp.status_code == 200 and resp.json()["active"]["version"] == "v2"
    settle(gw.url, oncall)
    assert call(gw.url, key).status_code == 403

    # a restart, even with v3 as the configured bundle, never undoes the rollback
    gw.stop()
    v3_file = tmp_path / "v3.yaml"
    v3_file.write_text(V3, encoding="utf-8")
    gw2 = start_gateway(
        gateway_config(upstream.url, operators=OPERATORS, policy_bundle=str(v3_file)),
        workers=2,
        env=tokens.env(),
        port=gw.port,
    )
    listed = httpx.get(gw2.url + "/admin/policies", headers=op(oncall)).json()
    assert listed["active"]["version"] == "v2"
    assert call(gw2.url, key).status_code == 403
    done = cli(gw2, oncall, "policy", "rollback", "--to", V1_VERSION, "--reason", "all clear")
    assert done.returncode == 0, done.stderr
    settle(gw2.url, oncall)
    assert call(gw2.url, key).status_code == 200

    # every activation is a lineage event: who, why, which version, rollback or not
    activations = [e["data"] for e in events(gw2) if e["type"] == "policy.activated"]
    assert [(a["version"], a["mode"], a["rollback"]) for a in activations] == [
        (V1_VERSION, "enforce", False),  # the first start's activation
        ("v2", "observe", False),
        ("v2", "enforce", False),
        ("v3", "enforce", False),
        ("v2", "enforce", True),
        (V1_VERSION, "enforce", True),
    ]
    assert activations[0]["by"] == "config" and activations[0]["reason"] == "first start"
    assert activations[4]["by"] == "oncall" and activations[4]["reason"] == "v3 misbehaves"
    history = httpx.get(gw2.url + "/admin/policies", headers=op(oncall)).json()["history"]
    assert [h["version"] for h in history] == [V1_VERSION, "v2", "v2", "v3", "v2", V1_VERSION]


@pytest.mark.parametrize("version", ["v/1 with space", "rollback"])
def test_odd_version_names_are_addressable(
    start_gateway: Callable[..., GatewayProcess],
    upstream: UpstreamStub,
    creds: Credentials,
    version: str,
) -> None:
    tokens = Tokens()
    gw = start_gateway(gateway_config(upstream.url, operators=OPERATORS), env=tokens.env())
    text = V1.replace(f'version: "{V1_VERSION}"', f'version: "{version}"')
    resp = httpx.post(
        gw.url + "/admin/policies", json={"bundle": text, "reason": "x"}, headers=op(tokens.admin)
    )
    assert resp.status_code == 201, resp.text
    quoted = urllib.parse.quote(version, safe="")
    assert httpx.get(f"{gw.url}/admin/policies/{quoted}", headers=op(creds.oncall)).text == text
    resp = httpx.post(
        f"{gw.url}/admin/policies/{quoted}/activate",
        json={"mode": "enforce", "reason": "x"},
        headers=op(tokens.admin),
    )
    assert resp.status_code == 200 and resp.json()["active"]["version"] == version
