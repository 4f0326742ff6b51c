"""Crash: SIGKILL a worker mid-load. After the restart every request has a lineage
record (`completed` or `interrupted`), every chain verifies, no draft is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import CONTEXT, casegate, headers, user
from tests.kit.stub import Reply, UpstreamStub

FAST = {"CASEGATE_LINEAGE_STALE_MS": "800", "CASEGATE_CHECKPOINT_S": "1"}


def workers(pid: int) -> list[int]:
    """The uvicorn worker processes of a server (not multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    found = []
    for child in (int(p) for p in out.stdout.split()):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"resource_tracker" not in cmdline:
            found.append(child)
    return found


def test_sigkill_a_worker_mid_load_loses_nothing(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials, tmp_path: Path
) -> None:
    upstream.set_default(Reply.chunks(["working ", "on ", "it"], delay_s=0.05))
    config = gateway_config(upstream.url)
    gw = start_gateway(config, name="gw", workers=2, env=FAST)
    answered: list[tuple[int, str | None, str | None]] = []
    stop = threading.Event()

    async def load() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:

            async def one(i: int) -> None:
                draft = i % 3 == 0
                hdrs = {
                    "Authorization": f"Bearer {creds.helpdesk}",
                    **headers("reply_drafting" if draft else "triage", case_id=f"K{i}"),
                }
                body = {
                    "model": "support-default",
                    "messages": user(f"q{i}"),
                    "stream": i % 2 == 0,
                    **casegate(context={"product_id": CONTEXT["product_id"]} if draft else None),
                }
                try:
                    async with session.post(
                        gw.url + "/v1/chat/completions", json=body, headers=hdrs
                    ) as r:
                        text = await r.text()
                        draft_id = None
                        if r.status == 200 and '"approval"' in text:
                            draft_id = text.split('"approval":{"id":"', 1)[1].split('"', 1)[0]
                        if r.status == 200 and "event: error" not in text:
                            answered.append(
                                (r.status, r.headers.get("x-casegate-lineage-id"), draft_id)
                            )
                except (aiohttp.ClientError, TimeoutError):
                    pass  # the killed worker's calls: their records are checked below

            i = 0
            while not stop.is_set():
                await asyncio.gather(*(one(i + k) for k in range(16)))
                i += 16

    thread = threading.Thread(target=lambda: asyncio.run(load()))
    thread.start()
    time.sleep(1.5)
    victims = workers(gw.proc.pid)
    assert len(victims) == 2, victims
    os.kill(victims[0], signal.SIGKILL)
    time.sleep(1.5)
    stop.set()
    thread.join(30)
    assert answered
    gw.stop()
    upstream.set_default(None)

    # the restart recovers the dead worker's open records
    again = start_gateway(config, name="gw", env=FAST)
    db_path = again.workdir / "casegate.db"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        db = sqlite3.connect(db_path)
        open_records = db.execute(
            "SELECT count(*) FROM lineage_records WHERE ended IS NULL"
        ).fetchone()[0]
        db.close()
        if open_records == 0:
            break
        time.sleep(0.2)
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT count(*) FROM lineage_records WHERE ended IS NULL").fetchone()[0] == 0
    ends = dict(db.execute("SELECT lineage_id, ended FROM lineage_records"))
    assert set(ends.values()) <= {"completed", "interrupted", "refused", "failed"}
    for _, lid, _ in answered:
        assert ends[lid] == "completed"
    drafts = {r[0] for r in db.execute("SELECT id FROM drafts")}
    for _, _, draft_id in answered:
        if draft_id:
            assert draft_id in drafts
    again.stop()
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "lineage",
            "verify",
            "--state",
            f"sqlite:///{db_path}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    print(
        f"answered {len(answered)}; records {len(ends)}; "
        f"interrupted {sum(v == 'interrupted' for v in ends.values())}"
    )
