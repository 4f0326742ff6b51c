"""A bounded load test on loopback: concurrency well past the worker count, a realistic mix,
zero 5xx from the gateway itself, exactly one lineage record per authenticated request."""

from __future__ import annotations

import asyncio
import collections
import json
import random
import sqlite3
from typing import Any

import aiohttp

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import CONTEXT, SET_PRIORITY, casegate, headers, user
from tests.kit.stub import Reply, UpstreamStub

REQUESTS = 360
CONCURRENCY = 32


def mix(i: int, creds: Credentials) -> tuple[str, dict[str, str], dict[str, Any]]:
    auth = {"Authorization": f"Bearer {creds.helpdesk}"}
    base = {
        "model": "support-default",
        "messages": user(f"case {i}: mail a{i}@ex.example"),
        **casegate(),
    }
    kind = ["plain", "stream", "tools", "ineligible", "draft", "bad_key", "dry_run", "missing"][
        i % 8
    ]
    if kind == "stream":
        return kind, {**auth, **headers(case_id=f"C{i % 7}")}, {**base, "stream": True}
    if kind == "tools":
        return (
            kind,
            {**auth, **headers(action_class="automation")},
            {**base, "tools": [SET_PRIORITY]},
        )
    if kind == "ineligible":
        return kind, {**auth, **headers()}, {**base, **casegate(customer={"authenticated": False})}
    if kind == "draft":
        body = {**base, **casegate(context={"product_id": CONTEXT["product_id"]})}
        return kind, {**auth, **headers("reply_drafting", case_id=f"D{i}")}, body
    if kind == "bad_key":
        return kind, {"Authorization": "Bearer nope", **headers()}, base
    if kind == "dry_run":
        return kind, {**auth, **headers(dry_run="true")}, base
    if kind == "missing":
        return kind, {**auth, **headers()}, {**base, **casegate(context={"product_id": "P"})}
    return kind, {**auth, **headers(case_id=f"C{i % 7}")}, base


def test_mixed_load_loses_nothing(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials
) -> None:
    upstream.set_default(Reply.chunks(["Thanks, ", "we are ", "on it."], delay_s=0.002))
    gw = start_gateway(gateway_config(upstream.url), workers=2)
    results: list[tuple[str, int, str | None, str]] = []

    async def run() -> None:
        sem = asyncio.Semaphore(CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(i: int) -> None:
                kind, hdrs, body = mix(i, creds)
                async with (
                    sem,
                    session.post(gw.url + "/v1/chat/completions", json=body, headers=hdrs) as r,
                ):
                    text = await r.text()
                    results.append((kind, r.status, r.headers.get("x-casegate-lineage-id"), text))

            order = list(range(REQUESTS))
            random.Random(7).shuffle(order)
            await asyncio.gather(*(one(i) for i in order))

    asyncio.run(run())
    assert len(results) == REQUESTS
    by_kind = collections.defaultdict(collections.Counter)
    for kind, status, _, text in results:
        by_kind[kind][status] += 1
        assert status < 500, (kind, status, text[:300])
        if kind == "stream":
            assert "event: error" not in text and text.rstrip().endswith("[DONE]")
    assert by_kind["plain"] == {200: REQUESTS // 8}
    assert by_kind["ineligible"] == {403: REQUESTS // 8}
    assert by_kind["bad_key"] == {401: REQUESTS // 8}
    assert by_kind["missing"] == {422: REQUESTS // 8}
    ids = [lid for kind, _, lid, _ in results if kind != "bad_key"]
    assert all(ids) and len(set(ids)) == len(ids)
    db = sqlite3.connect(gw.workdir / "casegate.db")
    counts = collections.Counter(
        (lid, t)
        for lid, t in db.execute("SELECT lineage_id, type FROM lineage_events")
        if t.startswith("request.")
    )
    for lid in ids:
        assert counts[(lid, "request.started")] == 1 and counts[(lid, "request.ended")] == 1, lid
    assert len({lid for lid, _ in counts}) == len(ids)  # and nothing else (401s leave none)
    chains = collections.defaultdict(list)
    for chain, seq in db.execute("SELECT chain, seq FROM lineage_events"):
        chains[chain].append(seq)
    for seqs in chains.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
    print(json.dumps({k: dict(v) for k, v in by_kind.items()}))
