"""Long load and soak runs against a real gateway on loopback (not part of the test suite).

Usage::

    .venv/bin/python -m bench.load              # 60 s at 64 concurrent calls, 2 workers
    .venv/bin/python -m bench.load --soak       # 300 s at 16 concurrent calls, 1 worker
    .venv/bin/python -m bench.load --seconds 20 --concurrency 32 --workers 1

It starts the upstream stub and `casegate serve` (SQLite), sends a realistic mix
(plain, streaming, tool calls, drafts, ineligible refusals, bad keys, dry runs, missing
fields) until the time is up, then reports requests sent, results by kind and status,
lineage records found (exactly one start and one end per authenticated request is the
bar), and the gateway's memory (RSS of its process tree) at start, every 10 s, and at
the end. The soak's memory tolerance: end RSS <= 1.25 x the RSS after warm-up + 20 MB;
the report says whether it held. Loopback only; bounded in time; stops everything it
started.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import secrets
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.gateway.procstat import rss_bytes
from bench.gateway.run import Procs, base_env, casegate_config, free_port

CUSTOMER = {"authenticated": True, "consent": {"ai_assist": True}, "region": "GB"}
CONTEXT = {"product_id": "P-100", "account_status": "active", "email": "x@example.com"}
TOOL = {
    "type": "function",
    "function": {
        "name": "set_priority",
        "parameters": {"type": "object", "properties": {"priority": {"enum": ["P2", "P3"]}}},
    },
}
KINDS = ["plain", "stream", "tools", "draft", "ineligible", "bad_key", "dry_run", "missing"]


def request(i: int, key: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    kind = KINDS[i % len(KINDS)]
    h = {
        "Authorization": f"Bearer {key}",
        "X-Casegate-Use-Case": "triage",
        "X-Casegate-Case-Id": f"CASE-{i % 50}",
    }
    msgs = [{"role": "user", "content": f"Order {i} is late, reach me at c{i}@example.com"}]
    body: dict[str, Any] = {
        "model": "support-default",
        "messages": msgs,
        "casegate": {"customer": CUSTOMER, "context": CONTEXT},
    }
    if kind == "stream":
        body["stream"] = True
    elif kind == "tools":
        h["X-Casegate-Action-Class"] = "automation"
        body["tools"] = [TOOL]
    elif kind == "draft":
        h["X-Casegate-Use-Case"] = "reply_drafting"
    elif kind == "ineligible":
        body["casegate"] = {"customer": {**CUSTOMER, "authenticated": False}, "context": CONTEXT}
    elif kind == "bad_key":
        h["Authorization"] = "Bearer not-a-key"
    elif kind == "dry_run":
        h["X-Casegate-Dry-Run"] = "true"
    elif kind == "missing":
        body["casegate"] = {"customer": CUSTOMER, "context": {"product_id": "P-1"}}
    return kind, h, body


async def drive(url: str, key: str, seconds: float, conc: int, pid: int) -> dict[str, Any]:
    results: collections.Counter[tuple[str, int]] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    ids: list[str] = []
    rss: list[tuple[float, int]] = [(0.0, rss_bytes(pid))]
    counter = iter(range(10**9))
    start = time.monotonic()
    stop_at = start + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop_at:
            kind, hdrs, body = request(next(counter), key)
            try:
                async with session.post(url, json=body, headers=hdrs) as resp:
                    text = await resp.text()
                    results[(kind, resp.status)] += 1
                    if resp.status >= 500 or "event: error" in text:
                        errors[f"{kind}:{resp.status}"] += 1
                    lid = resp.headers.get("x-casegate-lineage-id")
                    if lid:
                        ids.append(lid)
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[f"{kind}:{exc.__class__.__name__}"] += 1

    async def sample() -> None:
        while time.monotonic() < stop_at:
            await asyncio.sleep(10)
            rss.append((time.monotonic() - start, rss_bytes(pid)))

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(sample(), *(worker(session) for _ in range(conc)))
    rss.append((time.monotonic() - start, rss_bytes(pid)))
    return {
        "results": results,
        "errors": errors,
        "ids": ids,
        "rss": rss,
        "elapsed": time.monotonic() - start,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load")
    p.add_argument("--soak", action="store_true", help="300 s at 16 concurrent calls, 1 worker")
    p.add_argument("--seconds", type=float)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--workers", type=int)
    a = p.parse_args(argv)
    seconds = a.seconds or (300.0 if a.soak else 60.0)
    conc = a.concurrency or (16 if a.soak else 64)
    workers = a.workers or (1 if a.soak else 2)
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="casegate-load-"))
    try:
        env = base_env()
        stub_port, gw_port = free_port(), free_port()
        procs.spawn(
            [
                sys.executable,
                "-m",
                "tests.kit.stub",
                "--port",
                str(stub_port),
                "--chunk-delay-ms",
                "2",
            ],
            cwd=tmp,
            env=env,
            log=tmp / "stub.log",
        )
        (tmp / "casegate.yaml").write_text(casegate_config(stub_port))
        key = "bench-" + secrets.token_urlsafe(16)
        env.update(
            BENCH_KEY=key,
            BENCH_OPS="ops-" + secrets.token_urlsafe(16),
            BENCH_UPSTREAM_KEY="up-" + secrets.token_urlsafe(8),
        )
        gw = procs.spawn(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                "--config",
                str(tmp / "casegate.yaml"),
                "--port",
                str(gw_port),
                "--workers",
                str(workers),
            ],
            cwd=tmp,
            env=env,
            log=tmp / "gateway.log",
        )
        url = f"http://127.0.0.1:{gw_port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                import urllib.request

                with urllib.request.urlopen(url + "/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        # warm-up, then measure
        asyncio.run(drive(url + "/v1/chat/completions", key, 3, 4, gw.pid))
        out = asyncio.run(drive(url + "/v1/chat/completions", key, seconds, conc, gw.pid))
        procs.stop(gw)  # the end events are written before the workers exit
        db = sqlite3.connect(tmp / "casegate.db")
        kinds = collections.Counter(
            (lid, t) for lid, t in db.execute("SELECT lineage_id, type FROM lineage_events")
        )
        ids = out["ids"]
        complete = sum(
            1
            for lid in set(ids)
            if kinds[(lid, "request.started")] == 1 and kinds[(lid, "request.ended")] == 1
        )
        sent = sum(out["results"].values())
        authenticated = sent - sum(n for (k, _), n in out["results"].items() if k == "bad_key")
        rss0, rss1 = out["rss"][0][1], out["rss"][-1][1]
        held = rss1 <= rss0 * 1.25 + 20 * 2**20
        print(
            f"# Casegate {'soak' if a.soak else 'load'}: {seconds:.0f} s, {conc} concurrent, "
            f"{workers} worker(s), SQLite\n"
        )
        print(f"requests sent: {sent} ({sent / out['elapsed']:.0f}/s)")
        print(
            f"authenticated requests: {authenticated}; lineage records with one start and one "
            f"end: {complete}; missing: {authenticated - complete}"
        )
        print(
            "results by kind and status: "
            + ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(out["results"].items()))
        )
        print(
            "errors by kind: "
            + (", ".join(f"{k}: {n}" for k, n in sorted(out["errors"].items())) or "none")
        )
        print(
            "gateway RSS (MB) over time: "
            + ", ".join(f"{t:.0f}s {r / 2**20:.0f}" for t, r in out["rss"])
        )
        print(
            f"memory start {rss0 / 2**20:.0f} MB, end {rss1 / 2**20:.0f} MB: "
            f"{'within' if held else 'OUTSIDE'} the tolerance (end <= 1.25 x start + 20 MB)"
        )
        return 0 if (not out["errors"] and complete == authenticated) else 1
    finally:
        procs.stop_all()
        if os.environ.get("BENCH_KEEP_TMP") != "1":
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
