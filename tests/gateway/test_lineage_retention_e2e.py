"""Retention: the periodic sweep deletes expired pseudonym maps and erases the texts of
drafts decided longer ago than the retention time (here seconds, in production days)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from policies import default_bundle_path
from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import casegate, headers, user
from tests.kit.stub import UpstreamStub

APPROVER = "op-approver-retention"


def test_expired_maps_and_old_draft_texts_are_swept(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials, tmp_path: Path
) -> None:
    bundle = default_bundle_path().read_text()
    short = bundle.replace("pseudonym_ttl: 30d", "pseudonym_ttl: 1s")
    assert short != bundle
    (tmp_path / "gw").mkdir()
    (tmp_path / "gw" / "bundle.yaml").write_text(short)
    config = gateway_config(
        upstream.url,
        policy_bundle="bundle.yaml",
        operators=[{"name": "ann", "token_env": "APPROVER_TOKEN", "roles": ["approver"]}],
    )
    env = {
        "APPROVER_TOKEN": APPROVER,
        "CASEGATE_RETENTION_SWEEP_S": "1",
        "CASEGATE_DRAFT_TEXT_RETENTION_S": "1",
    }
    gw = start_gateway(config, name="gw", env=env)

    def chat(use_case: str) -> httpx.Response:
        return httpx.post(
            gw.url + "/v1/chat/completions",
            headers={
                "Authorization": f"Bearer {creds.helpdesk}",
                **headers(use_case, case_id="RET-1"),
            },
            json={
                "model": "support-default",
                "messages": user("mail me: a.b@example.com"),
                **casegate(),
            },
            timeout=20,
        )

    assert chat("triage").status_code == 200
    drafted = chat("reply_drafting")
    draft_id = drafted.json()["casegate"]["approval"]["id"]
    rejected = httpx.post(
        gw.url + f"/admin/drafts/{draft_id}/reject",
        headers={"Authorization": f"Bearer {APPROVER}"},
        json={"reason": "no"},
        timeout=10,
    )
    assert rejected.status_code == 200
    db = tmp_path / "gw" / "casegate.db"

    def counts() -> tuple[int, int]:
        with sqlite3.connect(db) as conn:
            maps = conn.execute(
                "SELECT count(*) FROM pseudonym_vaults WHERE expires_ms > 0"
            ).fetchone()[0]
            texts = conn.execute("SELECT count(*) FROM drafts WHERE length(texts) > 0").fetchone()[
                0
            ]
        return maps, texts

    deadline = time.monotonic() + 15
    while counts() != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counts() == (0, 0)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM drafts").fetchone()[0] == 1  # the row stays
