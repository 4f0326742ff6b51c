"""The draft life cycle end to end, on SQLite and PostgreSQL.

A `draft` call is stored (texts encrypted) and answered `pending_approval`; an approver
sees the customer turns and the draft, approves (optionally editing) or rejects; the
calling app reads the outcome and, once approved, a release token it can verify
offline from the JWKS alone. Expired and rejected drafts never yield a token. Every
decision is an `approval.decided` lineage event.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.drafts import edit_distance
from gateway.keys import KeyMaterial
from gateway.stores.base import StoredDraft
from policies import default_bundle_path
from tests.conftest import PG_URL, Credentials, gateway_config, need_backend
from tests.gateway.helpers import casegate, headers, user
from tests.kit.gateway import GatewayProcess
from tests.kit.stub import Reply, UpstreamStub

APPROVER = "op-approver-" + uuid.uuid4().hex
CUSTOMER_TEXT = "My refund is late, write to ann.doe@example.com please"


# -- fixtures -----------------------------------------------------------------------


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
    workdir: Path = tmp_path_factory.mktemp("gw-drafts")
    # triage drafts expire after one second (the expiry tests); reply_drafting keeps 24h
    bundle = default_bundle_path().read_text()
    short = bundle.replace(
        "expires_after: 24h        # undecided", "expires_after: 1s  # undecided"
    )
    assert short != bundle
    (workdir / "bundle.yaml").write_text(short)
    config = gateway_config(
        upstream_server.url,
        state=backend,
        keys=True,
        policy_bundle="bundle.yaml",
        operators=[
            {"name": "ann", "token_env": "APPROVER_TOKEN", "roles": ["approver"]},
            {"name": "oncall", "token_env": "ONCALL_TOKEN", "roles": ["incident_responder"]},
        ],
    )
    gw = GatewayProcess.start(
        workdir, config, env={**module_creds.env(), "APPROVER_TOKEN": APPROVER}
    )
    gw.env["STATE"] = backend
    yield gw
    gw.stop()


def sdk(gw: GatewayProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def draft_call(
    gw: GatewayProcess,
    creds: Credentials,
    *,
    use_case: str = "reply_drafting",
    case_id: str = "CASE-D1",
    action_class: str | None = None,
) -> dict[str, Any]:
    extra = {"case_id": case_id}
    if action_class:
        extra["action_class"] = action_class
    reply = sdk(gw, creds.helpdesk).chat.completions.create(
        model="support-default",
        messages=[
            {"role": "system", "content": "Draft a reply."},
            {"role": "user", "content": CUSTOMER_TEXT},
        ],
        extra_headers=headers(use_case, **extra),
        extra_body=casegate(),
    )
    cg: dict[str, Any] = reply.model_extra["casegate"]  # type: ignore[index]
    return {"content": reply.choices[0].message.content, **cg}


def admin(
    gw: GatewayProcess, method: str, path: str, token: str = APPROVER, **kw: Any
) -> httpx.Response:
    return httpx.request(
        method, gw.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10, **kw
    )


def client_view(gw: GatewayProcess, key: str, draft_id: str) -> httpx.Response:
    return httpx.get(
        gw.url + f"/v1/drafts/{draft_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def events(gw: GatewayProcess, lineage_id: str, type_: str) -> list[dict[str, Any]]:
    state = gw.env["STATE"]
    if state.startswith("sqlite"):
        with sqlite3.connect(gw.workdir / "casegate.db") as db:
            rows = db.execute(
                "SELECT event FROM lineage_events WHERE lineage_id = ? AND type = ?",
                (lineage_id, type_),
            ).fetchall()
    else:
        import psycopg

        with psycopg.connect(state) as conn:
            rows = conn.execute(
                "SELECT event FROM lineage_events WHERE lineage_id = %s AND type = %s",
                (lineage_id, type_),
            ).fetchall()
    return [json.loads(r[0]) for r in rows]


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_offline(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """What a messaging system does: only the JWKS and `cryptography`."""
    head_b64, claims_b64, sig_b64 = token.split(".")
    header = json.loads(b64d(head_b64))
    assert header == {"alg": "EdDSA", "kid": header["kid"], "typ": "JWT"}
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
    key = Ed25519PublicKey.from_public_bytes(b64d(jwk["x"]))
    key.verify(b64d(sig_b64), f"{head_b64}.{claims_b64}".encode())  # raises if forged
    claims: dict[str, Any] = json.loads(b64d(claims_b64))
    return claims


# -- the life cycle -------------------------------------------------------------------


def test_draft_is_pending_then_approved_with_an_edit(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    upstream.script(Reply.text("Dear customer, we will write to <EMAIL_1> today."))
    cg = draft_call(gateway, module_creds)
    # the pseudonym is restored in the draft, as the bundle allows
    assert cg["content"] == "Dear customer, we will write to ann.doe@example.com today."
    assert cg["decision"] == "pending_approval"
    assert cg["action_class_applied"] == "draft"
    approval = cg["approval"]
    assert approval["status"] == "pending" and approval["id"].startswith("dft_")
    assert approval["expires_at"].endswith("Z")
    draft_id = approval["id"]
    assert "ann.doe@example.com" not in upstream.chat_requests[0].body.decode()

    view = client_view(gateway, module_creds.helpdesk, draft_id)
    assert view.status_code == 200
    assert view.json()["status"] == "pending"
    assert "release_token" not in view.json() and "text" not in view.json()

    # the approver's queue shows the customer turn as sent and the draft text
    queue = admin(gateway, "GET", "/admin/drafts").json()
    (item,) = [d for d in queue["data"] if d["id"] == draft_id]
    assert item["customer_turns"] == [CUSTOMER_TEXT]
    assert item["text"] == cg["content"]
    assert item["case_id"] == "CASE-D1" and item["use_case"] == "reply_drafting"
    assert item["model"] == "gpt-primary"
    assert item["redactions"] == {"EMAIL": 1}
    assert item["status"] == "pending" and item["expires_at"] == approval["expires_at"]
    created = [d["created_at"] for d in queue["data"]]
    assert created == sorted(created)  # oldest first

    # the texts are encrypted at rest
    if gateway.env["STATE"].startswith("sqlite"):
        with sqlite3.connect(gateway.workdir / "casegate.db") as db:
            (blob,) = db.execute("SELECT texts FROM drafts WHERE id = ?", (draft_id,)).fetchone()
        assert b"ann.doe" not in blob and b"refund" not in blob

    edited = "Dear Ann, we will write to ann.doe@example.com today. Sorry for the delay."
    resp = admin(gateway, "POST", f"/admin/drafts/{draft_id}/approve", json={"edited_text": edited})
    assert resp.status_code == 200, resp.text
    approved = resp.json()
    assert approved["text"] == edited and approved["status"] == "approved"

    jwks = httpx.get(gateway.url + "/.well-known/casegate-release-keys", timeout=10).json()
    claims = verify_offline(approved["release_token"], jwks)
    assert claims["draft_id"] == draft_id
    assert claims["lineage_id"] == cg["lineage_id"]
    assert claims["case_id"] == "CASE-D1"
    assert claims["text_sha256"] == hashlib.sha256(edited.encode("utf-8")).hexdigest()
    assert isinstance(claims["iat"], int) and claims["exp"] == claims["iat"] + 24 * 3600
    assert abs(claims["iat"] - time.time()) < 60

    # a tampered token does not verify
    head, _body, sig = approved["release_token"].split(".")
    forged = json.dumps({**claims, "text_sha256": "0" * 64}).encode()
    with pytest.raises(InvalidSignature):
        verify_offline(f"{head}.{base64.urlsafe_b64encode(forged).decode()}.{sig}", jwks)

    view = client_view(gateway, module_creds.helpdesk, draft_id).json()
    assert view["status"] == "approved" and view["text"] == edited
    assert view["release_token"] == approved["release_token"]
    assert view["decided_at"].endswith("Z")

    # deciding twice
    again = admin(gateway, "POST", f"/admin/drafts/{draft_id}/approve", json={})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "draft_already_decided"
    assert again.headers["x-should-retry"] == "false"
    again = admin(gateway, "POST", f"/admin/drafts/{draft_id}/reject", json={"reason": "late"})
    assert again.json()["error"]["code"] == "draft_already_decided"

    (event,) = events(gateway, cg["lineage_id"], "approval.decided")
    data = event["data"]
    assert data["draft_id"] == draft_id and data["decision"] == "approved"
    assert data["by"] == "ann" and data["edited"] is True
    assert data["edit_distance"] == edit_distance(cg["content"], edited) > 0
    assert data["latency_ms"] >= 0 and isinstance(data["at_ms"], int)
    assert "reason" not in data
    # lineage holds no text
    assert "ann.doe" not in json.dumps(event) and "Sorry" not in json.dumps(event)
    (ended,) = events(gateway, cg["lineage_id"], "request.ended")
    assert ended["data"]["approval"] == approval
    assert ended["data"]["decision"] == "pending_approval"


def test_rejected_draft_never_yields_a_token(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    upstream.script(Reply.text("We cannot help."))
    cg = draft_call(gateway, module_creds, case_id="CASE-D2")
    draft_id = cg["approval"]["id"]
    resp = admin(gateway, "POST", f"/admin/drafts/{draft_id}/reject", json={"reason": "tone"})
    assert resp.status_code == 200 and resp.json()["status"] == "rejected"
    view = client_view(gateway, module_creds.helpdesk, draft_id).json()
    assert view["status"] == "rejected"
    assert "release_token" not in view and "text" not in view
    resp = admin(gateway, "POST", f"/admin/drafts/{draft_id}/approve", json={})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "draft_already_decided"
    (event,) = events(gateway, cg["lineage_id"], "approval.decided")
    assert event["data"]["decision"] == "rejected" and event["data"]["reason"] == "tone"
    assert event["data"]["edited"] is False and event["data"]["edit_distance"] == 0
    rejected = admin(gateway, "GET", "/admin/drafts?status=rejected").json()["data"]
    assert draft_id in [d["id"] for d in rejected]
    assert draft_id not in [d["id"] for d in admin(gateway, "GET", "/admin/drafts").json()["data"]]
    # a reason is required
    resp = admin(gateway, "POST", f"/admin/drafts/{draft_id}/reject", json={})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "reason"


def test_expired_draft_cannot_be_released(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    upstream.script(Reply.text("Triage draft one."), Reply.text("Triage draft two."))
    first = draft_call(gateway, module_creds, use_case="triage", action_class="draft")
    second = draft_call(gateway, module_creds, use_case="triage", action_class="draft")
    assert first["decision"] == "pending_approval"
    time.sleep(1.2)  # the test bundle's triage drafts expire after 1s
    # noticed by the approver ...
    resp = admin(gateway, "POST", f"/admin/drafts/{first['approval']['id']}/approve", json={})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "draft_expired"
    assert "release_token" not in resp.text
    view = client_view(gateway, module_creds.helpdesk, first["approval"]["id"]).json()
    assert view["status"] == "expired" and "release_token" not in view
    # ... or by the calling app
    view = client_view(gateway, module_creds.helpdesk, second["approval"]["id"]).json()
    assert view["status"] == "expired"
    resp = admin(
        gateway, "POST", f"/admin/drafts/{second['approval']['id']}/reject", json={"reason": "x"}
    )
    assert resp.json()["error"]["code"] == "draft_expired"
    for cg in (first, second):
        (event,) = events(gateway, cg["lineage_id"], "approval.decided")  # exactly one
        assert event["data"]["decision"] == "expired" and event["data"]["by"] == "system"
        assert event["data"]["latency_ms"] == 1000
    expired = admin(gateway, "GET", "/admin/drafts?status=expired").json()["data"]
    assert {first["approval"]["id"], second["approval"]["id"]} <= {d["id"] for d in expired}


def test_streaming_draft_is_stored_before_done(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    upstream.script(Reply.text("Hello <EMAIL_1>, your refund is on its way."))
    stream = sdk(gateway, module_creds.helpdesk).chat.completions.create(
        model="support-default",
        messages=user(CUSTOMER_TEXT),
        stream=True,
        extra_headers=headers("reply_drafting", case_id="CASE-D3"),
        extra_body=casegate(),
    )
    text, finals = "", []
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
        if chunk.model_extra and "casegate" in chunk.model_extra:
            finals.append(chunk.model_extra["casegate"])
    assert text == "Hello ann.doe@example.com, your refund is on its way."
    assert finals and all(f["approval"]["status"] == "pending" for f in finals)
    assert finals[-1]["decision"] == "pending_approval"
    draft_id = finals[-1]["approval"]["id"]
    # stored before [DONE]: readable the moment the stream has ended
    assert client_view(gateway, module_creds.helpdesk, draft_id).json()["status"] == "pending"
    queue = admin(gateway, "GET", "/admin/drafts").json()["data"]
    (item,) = [d for d in queue if d["id"] == draft_id]
    assert item["text"] == text and item["customer_turns"] == [CUSTOMER_TEXT]

    approved = admin(gateway, "POST", f"/admin/drafts/{draft_id}/approve", json={}).json()
    assert approved["text"] == text
    jwks = httpx.get(gateway.url + "/.well-known/casegate-release-keys", timeout=10).json()
    claims = verify_offline(approved["release_token"], jwks)
    assert claims["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    (event,) = events(gateway, finals[-1]["lineage_id"], "approval.decided")
    assert event["data"]["edited"] is False and event["data"]["edit_distance"] == 0


def test_who_may_see_and_decide(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    upstream.script(Reply.text("A draft."))
    draft_id = draft_call(gateway, module_creds, case_id="CASE-D4")["approval"]["id"]
    # another client: 404, as for a draft that does not exist
    for did in (draft_id, "dft_missing"):
        resp = client_view(gateway, module_creds.triage_only, did)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    assert client_view(gateway, "nope", draft_id).status_code == 401
    # a client key on the operator API: 401
    for method, path in (
        ("GET", "/admin/drafts"),
        ("POST", f"/admin/drafts/{draft_id}/approve"),
        ("POST", f"/admin/drafts/{draft_id}/reject"),
    ):
        resp = admin(gateway, method, path, token=module_creds.helpdesk, json={"reason": "r"})
        assert resp.status_code == 401, (method, path)
        assert resp.json()["error"]["code"] == "invalid_api_key"
    # an operator without the approver role: 403
    resp = admin(
        gateway, "POST", f"/admin/drafts/{draft_id}/approve", token=module_creds.oncall, json={}
    )
    assert resp.status_code == 403
    assert admin(gateway, "GET", "/admin/drafts", token=module_creds.oncall).status_code == 403
    # unknown draft, unknown fields, bad status
    resp = admin(gateway, "POST", "/admin/drafts/dft_missing/approve", json={})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    resp = admin(gateway, "POST", f"/admin/drafts/{draft_id}/approve", json={"text": "x"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "text"
    resp = admin(gateway, "GET", "/admin/drafts?status=done")
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "status"
    # still pending after all that
    assert client_view(gateway, module_creds.helpdesk, draft_id).json()["status"] == "pending"


def test_no_draft_for_recommendations_or_dry_runs(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    upstream.script(Reply.text("A recommendation."))
    cg = draft_call(gateway, module_creds, use_case="triage")
    assert cg["decision"] == "allowed" and "approval" not in cg
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {module_creds.helpdesk}", **headers("reply_drafting")},
        json={"model": "support-default", "messages": user("x"), **casegate()},
        params={},
        timeout=10,
    )
    assert resp.status_code == 200 and resp.json()["casegate"]["approval"]["status"] == "pending"
    dry = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={
            "Authorization": f"Bearer {module_creds.helpdesk}",
            **headers("reply_drafting", dry_run="true"),
        },
        json={"model": "support-default", "messages": user("x"), **casegate()},
        timeout=10,
    ).json()
    assert dry["casegate"]["dry_run"] is True and "approval" not in dry["casegate"]


def test_queue_pages_with_a_cursor(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    for i in range(3):
        upstream.script(Reply.text(f"Page draft {i}."))
        draft_call(gateway, module_creds, case_id=f"CASE-P{i}")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"cursor": cursor} if cursor else {}
        page = admin(gateway, "GET", "/admin/drafts", params=params).json()
        seen += [d["id"] for d in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 3
    resp = admin(gateway, "GET", "/admin/drafts", params={"cursor": "%%%"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "cursor"


def test_a_degrade_switch_that_makes_a_draft_says_degraded(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    engage = {"scope": "action_class:automation", "mode": "degrade", "reason": "drill"}
    resp = admin(gateway, "POST", "/admin/kill-switches", token=module_creds.oncall, json=engage)
    assert resp.status_code == 200, resp.text
    try:
        upstream.script(Reply.text("Degraded to a draft."))
        cg = draft_call(gateway, module_creds, use_case="triage", action_class="automation")
        # DESIGN 10.5: a switch lowered the class, so `degraded`, and the draft is stored
        assert cg["decision"] == "degraded"
        assert cg["action_class_requested"] == "automation"
        assert cg["action_class_applied"] == "draft"
        assert cg["approval"]["status"] == "pending"
        queue = admin(gateway, "GET", "/admin/drafts").json()["data"]
        expired = admin(gateway, "GET", "/admin/drafts?status=expired").json()["data"]
        assert cg["approval"]["id"] in {d["id"] for d in queue + expired}
    finally:
        resp = admin(
            gateway,
            "DELETE",
            "/admin/kill-switches/action_class:automation",
            token=module_creds.oncall,
            params={"reason": "drill over"},
        )
        assert resp.status_code == 200, resp.text


def test_concurrent_decisions_have_exactly_one_winner(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    upstream.script(Reply.text("Race me."))
    cg = draft_call(gateway, module_creds, case_id="CASE-R")
    draft_id = cg["approval"]["id"]

    def decide(i: int) -> httpx.Response:
        if i % 2:
            return admin(gateway, "POST", f"/admin/drafts/{draft_id}/reject", json={"reason": "r"})
        body = {"edited_text": f"Text {i}"}
        return admin(gateway, "POST", f"/admin/drafts/{draft_id}/approve", json=body)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(decide, range(6)))
    assert sorted(r.status_code for r in results) == [200, 409, 409, 409, 409, 409]
    for r in results:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "draft_already_decided"
    (event,) = events(gateway, cg["lineage_id"], "approval.decided")
    (winner,) = [r.json() for r in results if r.status_code == 200]
    assert event["data"]["decision"] == winner["status"]
    view = client_view(gateway, module_creds.helpdesk, draft_id).json()
    assert view["status"] == winner["status"]
    assert view.get("release_token") == winner.get("release_token")


def cli(gw: GatewayProcess, *args: str, token: str = APPROVER) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEGATE_")}
    env.update(CASEGATE_URL=gw.url, CASEGATE_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "drafts", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_lists_approves_and_rejects(
    gateway: GatewayProcess, module_creds: Credentials, upstream: UpstreamStub
) -> None:
    upstream.script(Reply.text("CLI draft one."), Reply.text("CLI draft two."))
    one = draft_call(gateway, module_creds, case_id="CASE-CLI")["approval"]["id"]
    two = draft_call(gateway, module_creds, case_id="CASE-CLI")["approval"]["id"]
    listed = cli(gateway, "list")
    assert listed.returncode == 0, listed.stderr
    assert one in listed.stdout and "CLI draft one." in listed.stdout
    assert "customer> " + CUSTOMER_TEXT in listed.stdout
    as_json = json.loads(cli(gateway, "list", "--json").stdout)
    assert {one, two} <= {d["id"] for d in as_json}

    approved = cli(gateway, "approve", one, "--text", "CLI draft one, edited.")
    assert approved.returncode == 0, approved.stderr
    token = approved.stdout.strip()
    assert token.count(".") == 2
    assert client_view(gateway, module_creds.helpdesk, one).json()["release_token"] == token
    again = cli(gateway, "approve", one)
    assert again.returncode == 1 and "draft_already_decided" in again.stderr

    rejected = cli(gateway, "reject", two, "--reason", "off topic")
    assert rejected.returncode == 0 and "rejected" in rejected.stdout
    denied = cli(gateway, "list", token=module_creds.oncall)
    assert denied.returncode == 1 and "403" in denied.stderr


# -- store level: erasure ---------------------------------------------------------------


def _store(backend: str, tmp_path: Path) -> Any:
    if backend == "sqlite":
        from gateway.stores.sqlite import SqliteStore

        return SqliteStore(tmp_path / "s.db")
    from gateway.stores.postgres import PostgresStore

    return PostgresStore(backend)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_erase_draft_texts(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = "sqlite" if kind == "sqlite" else request.getfixturevalue("pg_url")
    keys = KeyMaterial((b"c" * 32,), (b"d" * 32,), (b"s" * 32,))

    async def run() -> None:
        store = _store(url, tmp_path)
        await store.open()
        await store.migrate()
        try:
            for i, case in enumerate(["CASE-E", "CASE-E", "CASE-F"]):
                did = f"dft_{i}"
                await store.put_draft(
                    StoredDraft(
                        id=did,
                        client="helpdesk",
                        lineage_id=f"lin_{i}",
                        case_id=case,
                        use_case="reply_drafting",
                        model="m",
                        redactions={},
                        created_ms=1000 + i,
                        expires_ms=10**15,
                        status="pending",
                        texts=keys.encrypt(
                            b'{"text":"t","turns":[]}', aad=b"draft:" + did.encode()
                        ),
                    )
                )
            assert await store.decide_draft(
                "dft_0", status="approved", decided_ms=2000, decided_by="ann", approved_text=b"x"
            )
            assert not await store.decide_draft(
                "dft_0", status="rejected", decided_ms=2001, decided_by="bob"
            )
            assert await store.erase_draft_texts("CASE-E") == 2
            assert await store.erase_draft_texts("CASE-E") == 0
            erased = await store.get_draft("dft_0")
            assert erased.texts == b"" and erased.approved_text is None
            assert erased.status == "approved" and erased.decided_by == "ann"
            kept = await store.get_draft("dft_2")
            assert kept.texts != b""
            page = await store.list_drafts("pending", after=None, limit=1)
            assert [d.id for d in page] == ["dft_1"]
            page = await store.list_drafts("pending", after=(page[0].created_ms, "dft_1"), limit=5)
            assert [d.id for d in page] == ["dft_2"]
        finally:
            await store.close()

    asyncio.run(run())


# -- edit distance ---------------------------------------------------------------------


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("", "", 0),
        ("abc", "", 3),
        ("", "abc", 3),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("héllo", "hello", 1),
        ("😀a", "a😀", 2),  # code points, not UTF-16 units or bytes
        ("same text", "same text", 0),
    ],
)
def test_edit_distance_table(a: str, b: str, expected: int) -> None:
    assert edit_distance(a, b) == expected == _levenshtein(a, b)


def test_edit_distance_matches_the_textbook_definition() -> None:
    rng = random.Random(4)
    for _ in range(3000):
        a = "".join(rng.choice("ab é😀") for _ in range(rng.randint(0, 70)))
        b = "".join(rng.choice("ab é😀") for _ in range(rng.randint(0, 70)))
        assert edit_distance(a, b) == _levenshtein(a, b), (a, b)
