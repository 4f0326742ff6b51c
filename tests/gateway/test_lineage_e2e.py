"""Every authenticated call leaves exactly one lineage record, on SQLite and PostgreSQL.

The hashes are recomputed here from DESIGN.md section 8's formula, independently of
the `tracing` package, and the chain is verified with `casegate lineage verify`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import subprocess
import sys
from collections import Counter
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import casegate, headers, user
from tests.kit.stub import Reply, UpstreamStub

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def design_hash(event: dict[str, Any]) -> str:
    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def mixed_run(url: str, creds: Credentials, upstream: UpstreamStub) -> list[str]:
    """allowed, ineligible, bad header, unknown route, upstream failure, 401 (no record)."""
    client = openai.OpenAI(base_url=url + "/v1", api_key=creds.helpdesk, max_retries=0)
    ids = []
    done = client.chat.completions.with_raw_response.create(
        model="support-default",
        messages=user("é café"),
        extra_headers={
            **headers(case_id="C-9", customer_id="cust-1"),
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
        },
        extra_body=casegate(),
    )
    ids.append(done.headers["x-casegate-lineage-id"])
    for kwargs in (
        {"extra_headers": headers(), "extra_body": casegate(customer={"authenticated": False})},
        {"extra_headers": {"X-Casegate-Case-Id": "C-9"}, "extra_body": casegate()},
        {"extra_headers": headers(), "extra_body": casegate(), "model": "nope"},
    ):
        model = kwargs.pop("model", "support-default")
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model=model, messages=user("x"), **kwargs)
        ids.append(info.value.response.headers["x-casegate-lineage-id"])
    upstream.set_default(Reply.error(500))
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(
            model="support-default",
            messages=user("x"),
            extra_headers=headers(),
            extra_body=casegate(),
        )
    ids.append(info.value.response.headers["x-casegate-lineage-id"])
    upstream.clear()
    assert httpx.post(url + "/v1/chat/completions", json={}).status_code == 401
    return ids


def check_events(events: list[dict[str, Any]], ids: list[str]) -> None:
    assert len(set(ids)) == len(ids) == 5
    by_type = Counter((e["lineage_id"], e["type"]) for e in events)
    for lid in ids:
        assert by_type[(lid, "request.started")] == 1
        assert by_type[(lid, "request.ended")] == 1
    calls = {e["lineage_id"] for e in events if e["type"].startswith("request.")}
    assert calls == set(ids)  # the 401 left no record
    # the first start's policy activation is itself an event, like every activation
    (first,) = [e for e in events if e["type"] == "policy.activated"]
    assert first["data"]["reason"] == "first start" and first["data"]["by"] == "config"
    chains: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        assert e["hash"] == design_hash(e)
        chains.setdefault(e["chain"], []).append(e)
    for chain in chains.values():
        chain.sort(key=lambda e: e["seq"])
        assert [e["seq"] for e in chain] == list(range(1, len(chain) + 1))
        assert chain[0]["prev_hash"] == "0" * 64
        for prev, cur in itertools.pairwise(chain):
            assert cur["prev_hash"] == prev["hash"]
    ends = {e["lineage_id"]: e["data"] for e in events if e["type"] == "request.ended"}
    assert [ends[i]["end"] for i in ids] == ["completed", "refused", "refused", "refused", "failed"]
    assert [ends[i]["decision"] for i in ids] == [
        "allowed",
        "refused",
        "refused",
        "refused",
        "allowed",
    ]
    assert ends[ids[1]]["refusal"] == "ineligible"
    assert ends[ids[3]]["refusal"] == "model_not_found"
    assert ends[ids[4]]["refusal"] == "upstream_error"
    assert len(ends[ids[4]]["attempts"]) == 6
    assert ends[ids[0]]["model_served"] == "gpt-primary"
    starts = {e["lineage_id"]: e["data"] for e in events if e["type"] == "request.started"}
    assert starts[ids[0]]["case_id"] == "C-9"
    assert starts[ids[0]]["trace_id"] == TRACE_ID  # the app's trace, even with export off
    assert set(starts[ids[0]]["customer_ref"]) == {"key_id", "hash"}
    text = json.dumps(events, ensure_ascii=False)
    assert "cust-1" not in text and "café" not in text  # no raw identifiers, no message text


def test_one_record_per_call_on_sqlite(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials
) -> None:
    gw = start_gateway(gateway_config(upstream.url))
    ids = mixed_run(gw.url, creds, upstream)
    db = sqlite3.connect(gw.workdir / "casegate.db")
    events = [json.loads(r[0]) for r in db.execute("SELECT event FROM lineage_events")]
    check_events(events, ids)
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "lineage",
            "verify",
            "--state",
            f"sqlite:///{gw.workdir}/casegate.db",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "OK: 11 event(s)" in verify.stdout
    # tamper: edit a stored event's data and verify names the broken link
    row = db.execute("SELECT chain, seq, event FROM lineage_events WHERE seq = 2").fetchone()
    edited = json.loads(row[2])
    edited["data"]["end"] = "refused"
    db.execute(
        "UPDATE lineage_events SET event = ? WHERE chain = ? AND seq = 2",
        (json.dumps(edited), row[0]),
    )
    db.commit()
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "lineage",
            "verify",
            "--state",
            f"sqlite:///{gw.workdir}/casegate.db",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 1
    assert "seq 2" in verify.stdout


@pytest.mark.postgres
def test_one_record_per_call_on_postgres(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials, pg_url: str
) -> None:
    gw = start_gateway(gateway_config(upstream.url, state=pg_url, keys=True))
    ids = mixed_run(gw.url, creds, upstream)
    import psycopg

    with psycopg.connect(pg_url) as conn:
        events = [
            json.loads(r[0]) for r in conn.execute("SELECT event FROM lineage_events").fetchall()
        ]
    check_events(events, ids)
    verify = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "lineage", "verify", "--state", pg_url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
