"""The operator lineage API, outcomes, erasure and `casegate lineage show`, on SQLite
and PostgreSQL: records are the fold of their events, found by case, by customer
(hashed by the gateway), by time, use case and decision, and never hold a raw id or
message text."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL, Credentials, gateway_config, need_backend
from tests.gateway.helpers import casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import UpstreamStub

AUDITOR = "op-auditor-" + uuid.uuid4().hex
ADMIN = "op-admin-" + uuid.uuid4().hex
CUSTOMER = "cust-raw-4711"
SECRET_TEXT = "my email is zoe.q@example.org and my parcel is late"

RECORD_FIELDS = {
    "id",
    "case_id",
    "customer_ref",
    "use_case",
    "policy",
    "action_class_requested",
    "action_class_applied",
    "decision",
    "fields",
    "redactions",
    "checks",
    "consent_basis",
    "route",
    "model_served",
    "attempts",
    "tool_calls",
    "approval",
    "kill_switches",
    "outcome",
    "refusal",
    "trace_id",
    "timings",
    "events",
}


@pytest.fixture(scope="module")
def module_creds() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite:///casegate.db"
        return
    need_backend("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="module")
def gateway(
    backend: str,
    upstream_server: UpstreamStub,
    module_creds: Credentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("gw-lineage-api")
    config = gateway_config(
        upstream_server.url,
        state=backend,
        keys=True,
        operators=[
            {"name": "audrey", "token_env": "AUDITOR_TOKEN", "roles": ["auditor"]},
            {"name": "root", "token_env": "ADMIN_TOKEN", "roles": ["admin"]},
            {"name": "oncall", "token_env": "ONCALL_TOKEN", "roles": ["incident_responder"]},
        ],
    )
    env = {
        **module_creds.env(),
        "AUDITOR_TOKEN": AUDITOR,
        "ADMIN_TOKEN": ADMIN,
        "CASEGATE_CHECKPOINT_S": "1",
    }
    gw = GatewayProcess.start(workdir, config, env=env)
    gw.env["STATE"] = backend
    yield gw
    gw.stop()


def chat(
    gw: GatewayProcess, key: str, *, case_id: str, customer_id: str | None = None, **kw: Any
) -> httpx.Response:
    extra = {"case_id": case_id}
    if customer_id:
        extra["customer_id"] = customer_id
    return httpx.post(
        gw.url + "/v1/chat/completions",
        headers={
            "Authorization": f"Bearer {key}",
            **headers(kw.pop("use_case", "triage"), **extra),
        },
        json={"model": "support-default", "messages": user(SECRET_TEXT), **casegate(**kw)},
        timeout=20,
    )


def get(gw: GatewayProcess, path: str, token: str = AUDITOR, **params: str) -> httpx.Response:
    return httpx.get(
        gw.url + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def sql(gw: GatewayProcess, query: str, *args: Any) -> list[Any]:
    state = gw.env["STATE"]
    if state.startswith("sqlite"):
        with sqlite3.connect(gw.workdir / "casegate.db") as db:
            return db.execute(query, args).fetchall()
    import psycopg

    with psycopg.connect(state) as conn:
        return conn.execute(query.replace("?", "%s"), args).fetchall()


@pytest.fixture(scope="module")
def run(gateway: GatewayProcess, module_creds: Credentials) -> dict[str, str]:
    case = "CASE-" + uuid.uuid4().hex[:8]
    ids = {}
    for name, kw in (
        ("first", {"customer_id": CUSTOMER}),
        ("ineligible", {"customer": {"authenticated": False}}),
        ("second", {"customer_id": CUSTOMER}),
        ("drafted", {"use_case": "reply_drafting"}),
    ):
        resp = chat(gateway, module_creds.helpdesk, case_id=case, **kw)
        ids[name] = resp.headers["x-casegate-lineage-id"]
        time.sleep(0.005)  # distinct start times: the order below is the start order
    other = chat(gateway, module_creds.helpdesk, case_id="OTHER-" + case)
    ids["other"] = other.headers["x-casegate-lineage-id"]
    ids["case"] = case
    return ids


def test_records_by_case_oldest_first_with_the_design_fields(
    gateway: GatewayProcess, run: dict[str, str]
) -> None:
    resp = get(gateway, "/admin/lineage", case_id=run["case"])
    assert resp.status_code == 200
    body = resp.json()
    assert body["next_cursor"] is None
    records = body["data"]
    assert [r["id"] for r in records] == [
        run[n] for n in ("first", "ineligible", "second", "drafted")
    ]
    for r in records:
        assert RECORD_FIELDS <= set(r), RECORD_FIELDS - set(r)
        assert r["case_id"] == run["case"]
        assert [e["type"] for e in r["events"]][:2] == ["request.started", "request.ended"]
    first, ineligible, _, drafted = records
    assert first["decision"] == "allowed" and first["end"] == "completed"
    assert first["policy"]["version"] and len(first["policy"]["sha256"]) == 64
    assert first["redactions"] == {"EMAIL": 1}
    assert first["model_served"] == "gpt-primary" and len(first["attempts"]) == 1
    assert {c["check"] for c in first["checks"]} >= {"eligibility", "minimisation", "redaction"}
    assert {"check": "tool_guard", "on": ["response"], "ok": True} in first["checks"]
    assert set(first["customer_ref"]) == {"key_id", "hash"}
    assert first["timings"]["started_at"] and isinstance(first["timings"]["total_ms"], int)
    assert ineligible["decision"] == "refused" and ineligible["refusal"] == "ineligible"
    assert drafted["decision"] == "pending_approval"
    assert drafted["approval"]["status"] == "pending"
    text = resp.text
    assert CUSTOMER not in text and "zoe.q@example.org" not in text and "parcel" not in text

    one = get(gateway, f"/admin/lineage/{run['first']}")
    assert one.status_code == 200 and one.json() == first
    missing = get(gateway, "/admin/lineage/lin_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_customer_filters_and_pages(gateway: GatewayProcess, run: dict[str, str]) -> None:
    by_customer = get(gateway, "/admin/lineage", customer_id=CUSTOMER).json()["data"]
    assert [r["id"] for r in by_customer] == [run["first"], run["second"]]
    refused = get(gateway, "/admin/lineage", case_id=run["case"], decision="refused").json()
    assert [r["id"] for r in refused["data"]] == [run["ineligible"]]
    drafting = get(gateway, "/admin/lineage", case_id=run["case"], use_case="reply_drafting")
    assert [r["id"] for r in drafting.json()["data"]] == [run["drafted"]]
    assert get(gateway, "/admin/lineage", **{"from": "2999-01-01"}).json()["data"] == []
    seen: list[str] = []
    cursor = None
    while True:
        params = {"case_id": run["case"], "limit": "3"}
        if cursor:
            params["cursor"] = cursor
        page = get(gateway, "/admin/lineage", **params).json()
        seen += [r["id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [run[n] for n in ("first", "ineligible", "second", "drafted")]
    for params, param in (
        ({"case": "x"}, "case"),
        ({"cursor": "garbage"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"to": "not-a-date"}, "to"),
    ):
        bad = get(gateway, "/admin/lineage", **params)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param


def test_roles(gateway: GatewayProcess, module_creds: Credentials, run: dict[str, str]) -> None:
    assert get(gateway, "/admin/lineage", module_creds.helpdesk).status_code == 401
    assert get(gateway, "/admin/lineage", module_creds.oncall).status_code == 403
    assert get(gateway, "/admin/lineage", ADMIN).status_code == 200  # admin holds every role
    assert get(gateway, "/admin/lineage/export", module_creds.oncall).status_code == 403


def test_outcome_once_and_only_by_the_calling_client(
    gateway: GatewayProcess, module_creds: Credentials, run: dict[str, str]
) -> None:
    lid = run["other"]

    def post(key: str, body: Any) -> httpx.Response:
        return httpx.post(
            gateway.url + f"/v1/lineage/{lid}/outcome",
            headers={"Authorization": f"Bearer {key}"},
            json=body,
            timeout=10,
        )

    good = {"type": "resolved_first_contact", "handle_time_s": 312}
    assert post("nope", good).status_code == 401
    other_client = post(module_creds.triage_only, good)
    assert other_client.status_code == 404 and other_client.json()["error"]["code"] == "not_found"
    bad = post(module_creds.helpdesk, {"type": "great", "handle_time_s": 3})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "type"
    extra = post(module_creds.helpdesk, {**good, "note": "x"})
    assert extra.status_code == 400
    first = post(module_creds.helpdesk, good)
    assert first.status_code == 200, first.text
    assert first.json()["outcome"]["type"] == "resolved_first_contact"
    again = post(module_creds.helpdesk, {"type": "complaint"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "outcome_exists"
    record = get(gateway, f"/admin/lineage/{lid}").json()
    assert record["outcome"]["type"] == "resolved_first_contact"
    assert record["outcome"]["handle_time_s"] == 312
    assert [e["type"] for e in record["events"]].count("outcome.recorded") == 1
    unknown = httpx.post(
        gateway.url + "/v1/lineage/lin_missing/outcome",
        headers={"Authorization": f"Bearer {module_creds.helpdesk}"},
        json=good,
        timeout=10,
    )
    assert unknown.status_code == 404


def test_erasure_deletes_the_pseudonym_map_and_is_recorded(
    gateway: GatewayProcess, module_creds: Credentials, run: dict[str, str]
) -> None:
    case = run["case"]
    assert sql(gateway, "SELECT count(*) FROM pseudonym_vaults")[0][0] >= 1
    path = f"/admin/cases/{case}/personal-data"

    def delete(token: str, body: Any) -> httpx.Response:
        return httpx.request(
            "DELETE",
            gateway.url + path,
            headers={"Authorization": f"Bearer {token}"},
            json=body,
            timeout=10,
        )

    assert delete(module_creds.oncall, {"reason": "GDPR art. 17"}).status_code == 403
    assert delete(AUDITOR, {"reason": "GDPR art. 17"}).status_code == 403
    missing_reason = delete(ADMIN, {})
    assert missing_reason.status_code == 400 and missing_reason.json()["error"]["param"] == "reason"
    before = sql(gateway, "SELECT count(*) FROM pseudonym_vaults")[0][0]
    done = delete(ADMIN, {"reason": "GDPR art. 17 request #88"})
    assert done.status_code == 200, done.text
    assert done.json()["erased"]["pseudonym_maps"] == 1
    assert isinstance(done.json()["erased"]["draft_texts"], int)
    assert sql(gateway, "SELECT count(*) FROM pseudonym_vaults")[0][0] == before - 1
    rows = sql(gateway, "SELECT event FROM lineage_events WHERE type = 'case.erased'")
    (event,) = [json.loads(r[0]) for r in rows if json.loads(r[0])["data"]["case_id"] == case]
    assert event["data"]["by"] == "root" and event["data"]["reason"].startswith("GDPR")
    again = delete(ADMIN, {"reason": "again"})
    assert again.json()["erased"]["pseudonym_maps"] == 0


def test_export_verifies_offline_and_show_prints_a_timeline(
    gateway: GatewayProcess, run: dict[str, str], tmp_path: Path
) -> None:
    time.sleep(1.2)  # a checkpoint (every second here) names the run's heads
    export = get(gateway, "/admin/lineage/export")
    assert export.status_code == 200
    data = export.json()
    assert set(data) >= {"events", "checkpoints", "public_keys"}
    assert data["checkpoints"] and data["public_keys"]
    ats = [e["at"] for e in data["events"]]
    assert ats == sorted(ats)  # oldest first
    assert CUSTOMER not in export.text and "zoe.q@example.org" not in export.text
    path = tmp_path / "export.json"
    path.write_text(export.text)
    cli = [sys.executable, "-m", "gateway.cli", "lineage"]
    verify = subprocess.run(
        [*cli, "verify", "--export", str(path)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "signed checkpoint(s) verify" in verify.stdout
    # a window: whole chains still, so it verifies too
    today = time.strftime("%Y-%m-%d", time.gmtime())
    window = get(gateway, "/admin/lineage/export", **{"from": today})
    path.write_text(window.text)
    verify = subprocess.run(
        [*cli, "verify", "--export", str(path)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stdout

    env = {**gateway.env, "CASEGATE_URL": gateway.url, "CASEGATE_TOKEN": AUDITOR}
    shown = subprocess.run(
        [*cli, "show", run["case"]], capture_output=True, text=True, env=env, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert f"Case {run['case']}: 4 record(s)" in shown.stdout
    assert "refusal: ineligible" in shown.stdout and "check redaction on" in shown.stdout
    assert CUSTOMER not in shown.stdout and "zoe.q" not in shown.stdout
    as_json = subprocess.run(
        [*cli, "show", run["case"], "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert json.loads(as_json.stdout)[0]["id"] == run["first"]
