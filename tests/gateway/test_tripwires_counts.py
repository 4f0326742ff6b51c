"""Tripwire counts in each shared backend (SQLite, PostgreSQL, Redis): the sliding window,
the baseline of a redaction spike, counts restarting after a firing, and the one claim
per bucket that makes a single worker of all replicas engage the switch.

The counters are real (a SQLite file, the machine's PostgreSQL and Redis); counts are
written at chosen bucket numbers, so an hour's baseline needs no hour of waiting.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.lineage import LineageRecord
from gateway.stores.postgres import PostgresStore
from gateway.stores.sqlite import SqliteStore
from gateway.tripwires import (
    RedisCounters,
    SharedCounters,
    StoreCounters,
    Tripwires,
    call_counts,
    fired_key,
    series_key,
)
from policies import CompiledTripwire, evaluate_tripwire

SPIKE = CompiledTripwire(
    name="pii-spike",
    use_case="triage",
    kind="redaction_rate_spike",
    mode="halt",
    scope="use_case:triage",
    window_s=300,
    above=None,
    factor=3.0,
    baseline_s=3600,
    min_count=20,
)
WIDTH = SPIKE.bucket_s  # 30 s
NOW = 1_800_000_000.0  # a fixed clock: bucket 60_000_000
CURRENT = int(NOW // WIDTH)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        request.getfixturevalue("pg_url")
    if request.param == "redis":
        request.getfixturevalue("redis_url")
    return str(request.param)


async def _open(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[list[SharedCounters], Callable[[], Any]]:
    """Two independent counter clients on one shared backend (two 'replicas')."""
    closers: list[Any] = []
    clients: list[SharedCounters] = []
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        namespace = uuid.uuid4().hex  # one test run's keys
        for _ in range(2):
            rc = RedisCounters(url, namespace)
            clients.append(rc)
            closers.append(rc.close)
    else:
        for _ in range(2):
            store: Any
            if kind == "sqlite":
                store = SqliteStore(tmp_path / "state.db")
            else:
                store = PostgresStore(request.getfixturevalue("pg_url"), pool_size=1)
            await store.open()
            await store.migrate()
            clients.append(StoreCounters(store))
            closers.append(store.close)

    async def close() -> None:
        for c in closers:
            await c()

    return clients, close


def _tripwires(counters: SharedCounters) -> Tripwires:
    rt = SimpleNamespace(switchboard=SimpleNamespace(rows=()))
    return Tripwires(rt, counters, flush_s=1)  # type: ignore[arg-type]


async def _add(c: SharedCounters, series: str, bucket: int, n: int) -> None:
    await c.add({(series_key("triage", WIDTH, series), bucket): n})


def test_spike_window_baseline_and_claim(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async def scenario() -> None:
        (a, b), close = await _open(backend, request, tmp_path)
        try:
            # the trailing hour before the window: 100 calls, 10 redactions (0.1 per call),
            # written by replica A in old buckets; one bucket too old to count
            baseline_first = CURRENT - 10 - 120 + 1
            await _add(a, "calls", baseline_first, 100)
            await _add(a, "redactions", baseline_first + 5, 10)
            await _add(a, "calls", baseline_first - 1, 10_000)  # outside the baseline
            # the window: 20 calls, 6 redactions (0.3 per call: exactly 3x, not above)
            await _add(b, "calls", CURRENT - 9, 12)
            await _add(a, "calls", CURRENT, 8)
            await _add(b, "redactions", CURRENT, 6)
            counts = await _tripwires(a).window_counts(SPIKE, NOW)
            assert counts == {
                "calls": 20,
                "redactions": 6,
                "baseline_calls": 100,
                "baseline_redactions": 10,
            }
            assert evaluate_tripwire(SPIKE, counts) is None
            # two more redactions on replica B: 8 in 20 calls = 4x -> trips, seen from A too
            await _add(b, "redactions", CURRENT, 2)
            counts = await _tripwires(a).window_counts(SPIKE, NOW)
            trip = evaluate_tripwire(SPIKE, counts or {})
            assert trip is not None and trip.figures["per_call_milli"] == 400
            # one claim per bucket across replicas: A wins, B does not
            assert await a.claim(fired_key(SPIKE), CURRENT) is True
            assert await b.claim(fired_key(SPIKE), CURRENT) is False
            # the counts restart after the firing: nothing counts in the fired bucket...
            assert await _tripwires(b).window_counts(SPIKE, NOW) is None
            # ...and the next bucket starts from zero (the baseline stays)
            later = NOW + WIDTH
            counts = await _tripwires(b).window_counts(SPIKE, later)
            assert counts is not None
            assert (counts["calls"], counts["redactions"]) == (0, 0)
            assert evaluate_tripwire(SPIKE, counts) is None
        finally:
            await close()

    run(scenario())


def test_the_window_slides(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    tw = CompiledTripwire(
        name="blocks",
        use_case="triage",
        kind="tool_calls_blocked_rate",
        mode="degrade",
        scope="use_case:triage",
        window_s=100,
        above=0.1,
        factor=None,
        baseline_s=None,
        min_count=5,
    )

    async def scenario() -> None:
        (a, _), close = await _open(backend, request, tmp_path)
        try:
            now = 1_000_000.0  # bucket width 10 s: bucket 100_000
            current = int(now // tw.bucket_s)
            key = series_key("triage", tw.bucket_s, "tool_calls_blocked")
            total = series_key("triage", tw.bucket_s, "tool_calls")
            await a.add({(key, current - 9): 3, (total, current - 9): 5, (total, current): 5})
            counts = await _tripwires(a).window_counts(tw, now)
            assert counts == {"tool_calls": 10, "tool_calls_blocked": 3}
            assert evaluate_tripwire(tw, counts) is not None
            # one bucket later the oldest bucket has left the window
            counts = await _tripwires(a).window_counts(tw, now + tw.bucket_s)
            assert counts == {"tool_calls": 5, "tool_calls_blocked": 0}
            assert evaluate_tripwire(tw, counts) is None
        finally:
            await close()

    run(scenario())


def test_call_counts_from_the_lineage_record() -> None:
    rec = LineageRecord(lineage_id="lin_x", client="helpdesk", request_id="r")
    rec.redactions = {"EMAIL": 2, "IBAN": 1}
    rec.tool_calls_allowed = ["set_priority"]
    rec.tool_calls_blocked = ["route_to_queue", "delete_account"]
    rec.attempts = [{"deployment": "d", "attempt": 1, "outcome": "ok"}]
    assert call_counts(rec) == {
        "calls": 1,
        "redactions": 3,
        "tool_calls": 3,
        "tool_calls_blocked": 2,
        "upstream_calls": 1,
    }
    failed = LineageRecord(lineage_id="lin_y", client="helpdesk", request_id="r")
    failed.end, failed.refusal = "failed", "upstream_timeout"
    assert call_counts(failed) == {"calls": 1, "upstream_calls": 1, "upstream_errors": 1}
    consent = LineageRecord(lineage_id="lin_z", client="helpdesk", request_id="r")
    consent.end, consent.refusal = "refused", "consent_unavailable"
    assert call_counts(consent) == {"calls": 1, "consent_failures": 1}
