"""Signed checkpoints make tampering, deletion and truncation visible to
`casegate lineage verify`, on SQLite and PostgreSQL.

Each case edits the stored lineage of a stopped gateway, runs the verifier as an
auditor would, checks that it names the first broken link, and puts the row back.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.cli import main
from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import casegate, headers, user
from tests.kit.stub import UpstreamStub
from tracing import checkpoint_signing_bytes


class Store:
    def __init__(self, state: str, workdir: Path) -> None:
        self.state, self.workdir = state, workdir

    def sql(self, query: str, *args: Any) -> list[Any]:
        if self.state.startswith("sqlite"):
            with sqlite3.connect(self.workdir / "casegate.db") as db:
                return db.execute(query, args).fetchall()
        import psycopg

        with psycopg.connect(self.state, autocommit=True) as conn:
            cur = conn.execute(query.replace("?", "%s"), args)
            return cur.fetchall() if cur.description else []

    def verify(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """`casegate lineage verify --state ...`, run in this process (the same `main`)."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["lineage", "verify", "--state", self.state, *extra])
        return subprocess.CompletedProcess(["casegate"], code, out.getvalue(), "")


@pytest.fixture(params=["sqlite", "postgres"])
def store(
    request: pytest.FixtureRequest,
    start_gateway: Any,
    upstream: UpstreamStub,
    creds: Credentials,
    tmp_path: Path,
) -> Iterator[Store]:
    if request.param == "postgres":
        state = request.getfixturevalue("pg_url")
        config = gateway_config(upstream.url, state=state, keys=True)
    else:
        state = f"sqlite:///{tmp_path}/gw/casegate.db"
        config = gateway_config(upstream.url)
    gw = start_gateway(config, name="gw", env={"CASEGATE_CHECKPOINT_S": "1"})
    for i in range(3):
        resp = httpx.post(
            gw.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {creds.helpdesk}", **headers(case_id=f"CP-{i}")},
            json={"model": "support-default", "messages": user("hi"), **casegate()},
            timeout=20,
        )
        assert resp.status_code == 200
    keys = httpx.get(gw.url + "/.well-known/casegate-release-keys", timeout=10).json()
    (tmp_path / "pinned.json").write_text(json.dumps(keys))
    gw.stop()  # graceful: the last checkpoint names the chain's final head
    yield Store(state, tmp_path / "gw")


def event_row(store: Store, seq: int) -> tuple[str, int, str, str, str, str]:
    (row,) = store.sql(
        "SELECT chain, seq, lineage_id, type, at, event FROM lineage_events WHERE seq = ?", seq
    )
    return row  # type: ignore[no-any-return]


def reinsert(store: Store, row: tuple[Any, ...]) -> None:
    store.sql("INSERT INTO lineage_events VALUES (?, ?, ?, ?, ?, ?)", *row)


def test_tamper_delete_truncate_and_forged_checkpoints_are_caught(
    store: Store, tmp_path: Path
) -> None:
    ok = store.verify()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # the first start's policy.activated event, then three calls' start and end events
    assert "OK: 7 event(s) in 1 chain(s) verify" in ok.stdout
    n_checkpoints = int(ok.stdout.split("; ")[1].split()[0])
    assert n_checkpoints >= 1

    # tamper: change a stored event's data
    row = event_row(store, 3)
    edited = json.loads(row[5])
    edited["data"]["use_case"] = "reply_drafting"
    store.sql("UPDATE lineage_events SET event = ? WHERE seq = 3", json.dumps(edited))
    out = store.verify()
    assert out.returncode == 1
    assert f"BROKEN: chain {row[0]} at seq 3: hash mismatch" in out.stdout.splitlines()[0]
    store.sql("UPDATE lineage_events SET event = ? WHERE seq = 3", row[5])
    assert store.verify().returncode == 0

    # delete: a hole in the middle
    row = event_row(store, 4)
    store.sql("DELETE FROM lineage_events WHERE seq = 4")
    out = store.verify()
    assert out.returncode == 1
    assert f"chain {row[0]} at seq 5: gap: expected seq 4" in out.stdout
    reinsert(store, row)

    # truncate: drop the tail; only a checkpoint can show it
    tail = [event_row(store, 7), event_row(store, 6), event_row(store, 5)]
    store.sql("DELETE FROM lineage_events WHERE seq >= 5")
    out = store.verify()
    assert out.returncode == 1
    assert "checkpoint beyond chain head (truncated)" in out.stdout
    assert f"chain {tail[0][0]} at seq 7" in out.stdout
    for row in reversed(tail):
        reinsert(store, row)
    assert store.verify().returncode == 0

    # forge a checkpoint: move its head back to hide a truncation; the signature breaks
    (cp_row,) = store.sql("SELECT id, checkpoint FROM lineage_checkpoints ORDER BY id DESC LIMIT 1")
    checkpoint = json.loads(cp_row[1])
    forged = json.loads(cp_row[1])
    first_hash = json.loads(event_row(store, 1)[5])["hash"]
    for mark in forged["chains"].values():
        mark["seq"], mark["hash"] = 1, first_hash
    store.sql(
        "UPDATE lineage_checkpoints SET checkpoint = ? WHERE id = ?", json.dumps(forged), cp_row[0]
    )
    out = store.verify()
    assert out.returncode == 1 and "bad checkpoint signature" in out.stdout

    # ...re-signed with the attacker's own key, stored beside it: only pinning the
    # published key (the release-key JWKS) catches that
    attacker = Ed25519PrivateKey.generate()
    forged["kid"] = "attacker"
    forged["signature"] = (
        base64.urlsafe_b64encode(attacker.sign(checkpoint_signing_bytes(forged)))
        .rstrip(b"=")
        .decode()
    )
    raw = attacker.public_key().public_bytes_raw()
    jwk = {
        "kty": "OKP",
        "crv": "Ed25519",
        "kid": "attacker",
        "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
    }
    store.sql(
        "UPDATE lineage_checkpoints SET checkpoint = ? WHERE id = ?", json.dumps(forged), cp_row[0]
    )
    store.sql("INSERT INTO lineage_public_keys VALUES (?, ?, 0)", "attacker", json.dumps(jwk))
    assert store.verify().returncode == 0  # the store alone cannot tell
    pinned = store.verify("--public-keys", str(tmp_path / "pinned.json"))
    assert pinned.returncode == 1 and "bad checkpoint signature" in pinned.stdout
    store.sql(
        "UPDATE lineage_checkpoints SET checkpoint = ? WHERE id = ?",
        json.dumps(checkpoint),
        cp_row[0],
    )
    good = store.verify("--public-keys", str(tmp_path / "pinned.json"))
    assert good.returncode == 0, good.stdout
