"""Tripwires: count each finished call, share the counts, engage a switch past a threshold.

Usage::

    await start_tripwires(rt, os.environ)     # by Runtime.start
    record_call(rt, rec, known_use_case=True) # by the pipeline, as each call ends (a dict update)

The bundle defines the thresholds (policies/tripwires.py, per use case). The request path
only adds the call's facts from its lineage record — calls, redactions, tool calls judged
and blocked, calls that went upstream and failed there, consent-service failures — to
in-memory counts keyed by (use case, bucket). Every ``CASEGATE_TRIPWIRE_FLUSH_MS``
(default 500) a worker with new counts adds them to the shared counters and evaluates
the tripwires of the use cases it counted:

* shared: counters live in Redis when ``redis:`` is configured, else in the state store
  (``budget_counters``, the table of gateway/limits.py), so every worker of every replica
  adds to, and reads, the same window;
* sliding: a window is ten buckets of a tenth of it, the current one included;
* once: the first worker whose evaluation trips claims the current bucket (a
  compare-and-set on a ``fired`` counter); counts restart after each firing;
* audited like a human flip: the switch is engaged through
  `gateway.switchboard.engage_switch` (store, fan-out, acknowledgement, ``switch.engaged``
  lineage event) with ``engaged_by: "tripwire:<name>"``, the figures in the reason and in
  the event's ``tripwire`` object (integers only);
* never released by a tripwire: releasing is an operator's decision. A tripwire does not
  re-engage a scope already engaged in its mode (or in ``halt``), so it never weakens
  an operator's halt to a degrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from gateway.metrics import LINEAGE_WRITE_FAILURES, TRIPWIRES_FIRED, observe_lineage_write
from gateway.settings import ConfigError
from policies import CompiledTripwire, ScopeError, Trip, evaluate_tripwire, parse_scope
from policies import valid_scopes as bundle_scopes
from policies.tripwires import BUCKETS_PER_WINDOW

if TYPE_CHECKING:
    from gateway.lineage import LineageRecord
    from gateway.runtime import Runtime
    from gateway.stores import StateStore

__all__ = ["Tripwires", "call_counts", "record_call", "start_tripwires"]

log = logging.getLogger("casegate.tripwires")

_UPSTREAM_FAILURES = frozenset({"upstream_error", "upstream_timeout"})
_TTL_S = 2 * 86400  # longest window (1d) + longest baseline (1d)


def call_counts(rec: LineageRecord) -> dict[str, int]:
    """What one finished call adds to its use case's counts (non-zero entries only)."""
    blocked = len(rec.tool_calls_blocked)
    failed_upstream = rec.end == "failed" and rec.refusal in _UPSTREAM_FAILURES
    counts = {
        "calls": 1,
        "redactions": sum(rec.redactions.values()),
        "tool_calls": len(rec.tool_calls_allowed) + blocked,
        "tool_calls_blocked": blocked,
        "upstream_calls": 1 if (rec.attempts or failed_upstream) else 0,
        "upstream_errors": 1 if failed_upstream else 0,
        "consent_failures": 1 if rec.refusal == "consent_unavailable" else 0,
    }
    return {k: v for k, v in counts.items() if v}


def series_key(use_case: str, bucket_s: int, series: str) -> str:
    return f"tripwire:{use_case}:{bucket_s}:{series}"


def fired_key(tw: CompiledTripwire) -> str:
    return f"tripwire:{tw.name}:fired"


class SharedCounters(Protocol):
    async def add(self, items: Mapping[tuple[str, int], int]) -> None: ...
    async def series(self, key: str, first: int, last: int) -> dict[int, int]: ...
    async def claim(self, key: str, window: int) -> bool: ...
    async def close(self) -> None: ...


class StoreCounters:
    """Counters in the state store (SQLite: one machine; PostgreSQL: every replica)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def add(self, items: Mapping[tuple[str, int], int]) -> None:
        for (key, window), amount in items.items():
            await self.store.add_counter(key, window, amount)

    async def series(self, key: str, first: int, last: int) -> dict[int, int]:
        return await self.store.counter_series(key, first, last)

    async def claim(self, key: str, window: int) -> bool:
        return await self.store.take_counter(key, window, 1, 1) is not None

    async def close(self) -> None:
        return None


class RedisCounters:
    """Counters in Redis, namespaced by the installation id (one Redis, many test runs)."""

    def __init__(self, url: str, namespace: str) -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(url, socket_connect_timeout=2)
        self.prefix = f"casegate:{namespace}:"

    async def add(self, items: Mapping[tuple[str, int], int]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for (key, window), amount in items.items():
                name = f"{self.prefix}{key}:{window}"
                pipe.incrby(name, amount)
                pipe.expire(name, _TTL_S)
            await pipe.execute()

    async def series(self, key: str, first: int, last: int) -> dict[int, int]:
        windows = list(range(first, last + 1))
        if not windows:
            return {}
        values = await self._redis.mget([f"{self.prefix}{key}:{w}" for w in windows])
        return {w: int(v) for w, v in zip(windows, values, strict=True) if v is not None}

    async def claim(self, key: str, window: int) -> bool:
        return bool(await self._redis.set(f"{self.prefix}{key}:{window}", 1, nx=True, ex=_TTL_S))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._redis.aclose()


class Tripwires:
    def __init__(self, rt: Runtime, counters: SharedCounters, *, flush_s: float) -> None:
        self.rt = rt
        self.counters = counters
        self.flush_s = flush_s
        #: (use case, bucket width, series, bucket) -> count not yet shared
        self.pending: dict[tuple[str, int, str, int], int] = {}
        self.fired: list[Trip] = []  # this worker's firings (log and tests)

    # -- the request path ----------------------------------------------------------
    def record(self, rec: LineageRecord, *, known_use_case: bool) -> None:
        if not known_use_case or rec.use_case is None:
            return
        uc = self.rt.policy.use_case(rec.use_case)
        if uc is None or not uc.tripwires:
            return
        counts = call_counts(rec)
        now = time.time()
        pending = self.pending
        for width in {tw.bucket_s for tw in uc.tripwires}:
            bucket = int(now // width)
            for series, n in counts.items():
                key = (rec.use_case, width, series, bucket)
                pending[key] = pending.get(key, 0) + n

    # -- the background loop -----------------------------------------------------------
    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush_and_check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("tripwire counts not shared or evaluated (%s)", type(exc).__name__)

    async def flush_and_check(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, {}
        items: dict[tuple[str, int], int] = {}
        for (use_case, width, series, bucket), n in batch.items():
            items[(series_key(use_case, width, series), bucket)] = n
        try:
            await self.counters.add(items)
        except BaseException:
            for key, n in batch.items():  # counted again at the next flush
                self.pending[key] = self.pending.get(key, 0) + n
            raise
        for use_case in sorted({k[0] for k in batch}):
            uc = self.rt.policy.use_case(use_case)
            for tw in uc.tripwires if uc is not None else ():
                await self.check(tw)

    def _covered(self, tw: CompiledTripwire) -> bool:
        board = self.rt.switchboard
        rows = board.rows if board is not None else ()
        return any(r.scope == tw.scope and r.mode in ("halt", tw.mode) for r in rows)

    async def window_counts(self, tw: CompiledTripwire, now: float) -> dict[str, int] | None:
        """The window's counts (after the last firing); ``None`` if it fired this bucket."""
        width = tw.bucket_s
        current = int(now // width)
        start = current - BUCKETS_PER_WINDOW + 1
        fired = await self.counters.series(fired_key(tw), start, current)
        first = max(start, max(fired, default=start - 1) + 1)
        if first > current:
            return None
        counts: dict[str, int] = {}
        for series in tw.series:
            values = await self.counters.series(
                series_key(tw.use_case, width, series), first, current
            )
            counts[series] = sum(values.values())
            if tw.baseline_s is not None:
                b_first = start - tw.baseline_s // width
                base = await self.counters.series(
                    series_key(tw.use_case, width, series), b_first, start - 1
                )
                counts[f"baseline_{series}"] = sum(base.values())
        return counts

    async def check(self, tw: CompiledTripwire) -> Trip | None:
        if self._covered(tw):
            return None
        now = time.time()
        counts = await self.window_counts(tw, now)
        if counts is None:
            return None
        trip = evaluate_tripwire(tw, counts)
        if trip is None:
            return None
        if not await self.counters.claim(fired_key(tw), int(now // tw.bucket_s)):
            return None  # another worker or replica fired it for this bucket
        await self.fire(trip)
        return trip

    async def fire(self, trip: Trip) -> None:
        rt, tw = self.rt, trip.tripwire
        deployments = {route: [d.model for d in deps] for route, deps in rt.deployments.items()}
        try:
            scope = parse_scope(tw.scope, bundle_scopes(rt.policy.loaded.policy, deployments))
        except ScopeError:
            log.error("tripwire %s: scope %r names nothing here; not engaged", tw.name, tw.scope)
            return
        reason = f"tripwire {tw.name} ({tw.kind}, use case {tw.use_case}): {trip.summary}"
        extra = {
            "tripwire": {
                "name": tw.name,
                "use_case": tw.use_case,
                "kind": tw.kind,
                "figures": dict(trip.figures),
            }
        }
        from gateway.switchboard import engage_switch

        await engage_switch(rt, scope, tw.mode, reason[:1000], tw.engaged_by, extra=extra)
        self.fired.append(trip)
        rt.metrics.inc(TRIPWIRES_FIRED, _fired_labels(tw))
        log.warning("tripwire %s engaged %s (%s): %s", tw.name, scope, tw.mode, trip.summary)


def record_call(rt: Runtime, rec: LineageRecord, *, known_use_case: bool) -> None:
    """The pipeline's hook, as each call ends: count it (no I/O)."""
    if rt.tripwires is not None:
        rt.tripwires.record(rec, known_use_case=known_use_case)


async def start_tripwires(rt: Runtime, env: Mapping[str, str]) -> Tripwires:
    """Counting and evaluation for this worker, and the lineage-write metrics hook."""
    text = env.get("CASEGATE_TRIPWIRE_FLUSH_MS") or "500"
    if not text.isdigit() or int(text) < 10:
        raise ConfigError(
            f"environment: CASEGATE_TRIPWIRE_FLUSH_MS must be an integer >= 10: {text!r}"
        )
    counters: SharedCounters
    if rt.settings.redis:
        counters = RedisCounters(rt.settings.redis, await rt.store.installation_id())
    else:
        counters = StoreCounters(rt.store)
    tripwires = Tripwires(rt, counters, flush_s=int(text) / 1000)
    rt.tripwires = tripwires
    rt.closers.append(counters.close)
    rt.background.append(asyncio.create_task(tripwires.run(), name="casegate-tripwires"))
    rt.lineage.on_write = lambda seconds, ok: observe_lineage_write(rt.metrics, seconds, ok)
    # series that alerts compute increase() over exist from the start, at 0
    rt.metrics.inc(LINEAGE_WRITE_FAILURES, {}, 0)
    for tw in rt.policy.loaded.policy.tripwires():
        rt.metrics.inc(TRIPWIRES_FIRED, _fired_labels(tw), 0)
    return tripwires


def _fired_labels(tw: CompiledTripwire) -> dict[str, str]:
    return {"use_case": tw.use_case, "tripwire": tw.name, "kind": tw.kind, "mode": tw.mode}
