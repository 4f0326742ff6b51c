"""The lineage writer: one hash chain per process, durable before it returns.

Usage::

    writer = LineageWriter(store)
    await writer.start(record)          # before anything goes upstream
    await writer.finish(record)         # in a `finally`, shielded from cancellation

A :class:`LineageRecord` is what the pipeline learns about one call; ``start`` and
``finish`` turn it into the ``request.started`` and ``request.ended`` events of
DESIGN.md section 8 (never message text, argument values or raw identifiers).
Events are built and written under one lock so that the chain in the store has no
gap even when a write fails: a failed write rolls the chain head back.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gateway.errors import GatewayError
from gateway.stores import RecordEnd, RecordIndex, StateStore, StateUnavailable
from tracing import ZERO_HASH, ChainWriter

__all__ = ["LineageRecord", "LineageWriter", "new_lineage_id"]


def new_lineage_id() -> str:
    # time-ordered prefix (ms) so ids sort roughly by start, then 64 random bits
    # (os.urandom: a uuid4 object only to take half its hex cost several times as much)
    return f"lin_{int(time.time() * 1000):012x}{os.urandom(8).hex()}"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class LineageRecord:
    lineage_id: str
    client: str
    request_id: str
    started_ms: int = field(default_factory=now_ms)
    started_mono: float = field(default_factory=time.monotonic)
    use_case: str | None = None
    case_id: str | None = None
    customer_ref: dict[str, str] | None = None
    queue: str | None = None
    segment: str | None = None
    route: str | None = None
    policy: dict[str, str] | None = None
    action_class_requested: str | None = None
    action_class_applied: str | None = None
    stream: bool = False
    dry_run: bool = False
    trace_id: str | None = None
    # filled as the call proceeds
    decision: str | None = None
    fields_used: Sequence[str] = ()
    fields_stripped: Sequence[str] = ()
    redactions: dict[str, int] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    consent_basis: str | None = None
    model_served: str | None = None
    model_deployment: str | None = None  # as configured (prices are keyed by it); not recorded
    attempts: list[dict[str, Any]] = field(default_factory=list)
    tool_calls_allowed: list[str] = field(default_factory=list)
    tool_calls_blocked: list[str] = field(default_factory=list)
    tool_calls_removed: list[str] = field(default_factory=list)
    approval: dict[str, Any] | None = None
    kill_switches: list[str] = field(default_factory=list)
    #: what a policy version in observe mode would have decided (gateway/policy_admin.py)
    observed: dict[str, Any] | None = None
    refusal: str | None = None
    usage: dict[str, int] | None = None
    provider_ms: int | None = None
    ttfc_ms: int | None = None
    end: str | None = None  # completed | refused | failed
    started_written: bool = False
    finished_written: bool = False

    def start_data(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "request_id": self.request_id,
            "use_case": self.use_case,
            "case_id": self.case_id,
            "customer_ref": self.customer_ref,
            "queue": self.queue,
            "segment": self.segment,
            "route": self.route,
            "policy": self.policy,
            "action_class_requested": self.action_class_requested,
            "stream": self.stream,
            "dry_run": self.dry_run,
            "trace_id": self.trace_id,
            "started_ms": self.started_ms,
        }

    def end_data(self) -> dict[str, Any]:
        return {
            "end": self.end or "failed",
            "decision": self.decision,
            "action_class_requested": self.action_class_requested,
            "action_class_applied": self.action_class_applied,
            "fields": {"used": list(self.fields_used), "stripped": list(self.fields_stripped)},
            "redactions": dict(self.redactions),
            "checks": list(self.checks),
            "consent_basis": self.consent_basis,
            "model_served": self.model_served,
            "attempts": list(self.attempts),
            "tool_calls": {
                "allowed": list(self.tool_calls_allowed),
                "blocked": list(self.tool_calls_blocked),
                "removed": list(self.tool_calls_removed),
            },
            "approval": self.approval,
            "kill_switches": list(self.kill_switches),
            "observed": self.observed,
            "refusal": self.refusal,
            "usage": self.usage,
            "timings": {
                "total_ms": int((time.monotonic() - self.started_mono) * 1000),
                "provider_ms": self.provider_ms,
                "ttfc_ms": self.ttfc_ms,
            },
        }


@dataclass
class _Pending:
    events: list[dict[str, Any]]
    begin: RecordIndex | None
    end: RecordEnd | None
    done: asyncio.Future[None]


def _written(rec: LineageRecord, ended: bool, pending: asyncio.Future[Any]) -> None:
    """A queued start (or end) of `rec` landed: mark it written."""
    if pending.cancelled() or pending.exception() is not None:
        return
    rec.started_written = True
    if ended:
        rec.finished_written = True


def _copy_error(exc: BaseException) -> BaseException:
    """Each waiting caller gets its own exception object (one object raised in several
    tasks would chain their tracebacks together)."""
    if isinstance(exc, GatewayError):
        return type(exc)(exc.message, code=exc.code, param=exc.param, status=exc.status)
    if isinstance(exc, asyncio.CancelledError):
        return StateUnavailable("The lineage write was interrupted")
    return copy.copy(exc)


class LineageWriter:
    def __init__(self, store: StateStore, *, chain: str | None = None) -> None:
        self.store = store
        self.chain_id = chain or f"chain_{uuid.uuid4().hex[:16]}"
        self._chain = ChainWriter(self.chain_id)
        self._lock = asyncio.Lock()
        #: tasks in `_append` (holding the lock or waiting for it)
        self._users = 0
        #: a write failed: whether it committed is unknown (a cancellation can land after
        #: COMMIT), so the next write first re-reads this chain's head from the store
        self._resync = False
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        #: called with (seconds, ok) after each write (metrics: gateway/tripwires.py sets it)
        self.on_write: Callable[[float, bool], None] | None = None
        #: True when no other write could join a batch now (the runtime: no other chat
        #: call in flight). Then, if the store can commit without awaiting
        #: (``append_batch_now``), a write commits at once instead of through the flusher.
        self.alone: Callable[[], bool] | None = None
        self._commit_now: Callable[[Any], bool] | None = getattr(store, "append_batch_now", None)

    async def _append(
        self,
        items: Sequence[tuple[str, str, dict[str, Any]]],
        *,
        begin: RecordIndex | None = None,
        end: RecordEnd | None = None,
    ) -> list[dict[str, Any]]:
        """Build the events (in chain order) and return once they are durable.

        Group commit: the events of every call that arrives while a commit is being
        prepared go into the same transaction, so at concurrency one commit serves
        several calls; each caller still returns only after COMMIT. See `_submit` for
        the write that commits at once.
        """
        self._users += 1
        try:
            async with self._lock:
                await self._resync_if_needed()
                events, done = self._submit(items, begin, end)
        finally:
            self._users -= 1
        if done is not None:
            # the commit runs in the flusher task: a cancelled caller cannot interrupt it
            await asyncio.shield(done)
        return events

    def _submit(
        self,
        items: Sequence[tuple[str, str, dict[str, Any]]],
        begin: RecordIndex | None,
        end: RecordEnd | None,
    ) -> tuple[list[dict[str, Any]], asyncio.Future[None] | None]:
        """Build the events and either commit them now (no future) or queue them for
        the flusher (the future it resolves). The caller holds the lock, or knows that
        nobody holds or awaits it, and the chain needs no resync.

        A caller that is `alone`, with nothing queued or being committed, commits at
        once when the store can do so without awaiting (SQLite; unless another process
        holds the write lock, then it goes through the flusher): no other call could
        join its batch, and the flusher's task and futures were a tenth of a call's
        lineage time at concurrency one. Nothing can interleave with a commit that
        does not await, and a failure is handled as the flusher handles one.
        """
        at = now_ms()
        events = [self._chain.next_event(t, lid, data, at_ms=at) for t, lid, data in items]
        commit_now = self._commit_now
        if (
            commit_now is not None
            and self._flusher is None
            and not self._pending
            and self.alone is not None
            and self.alone()
        ):
            t0 = time.perf_counter()
            try:
                committed = commit_now([(events, begin, end)])
            except BaseException:
                self._resync = True  # whether it committed is unknown: re-read the head
                self._report(time.perf_counter() - t0, False, 1)
                raise
            if committed:
                self._report(time.perf_counter() - t0, True, 1)
                return events, None
            # another process holds the write lock: nothing was written, the flusher
            # waits for it without blocking the loop
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append(_Pending(events, begin, end, done))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return events, done

    def _append_nowait(
        self,
        items: Sequence[tuple[str, str, dict[str, Any]]],
        begin: RecordIndex | None,
        end: RecordEnd | None,
    ) -> asyncio.Future[Any] | None:
        """`_append` without a coroutine when it can run to its end at once: None once
        the events are durable, else the future to await (shielded) for it. A failed
        commit raises here, as `_append` would."""
        if self._users or self._resync:
            # someone holds or awaits the lock, or the head must be re-read: queue up
            return asyncio.ensure_future(self._append(items, begin=begin, end=end))
        return self._submit(items, begin, end)[1]

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                t0 = time.perf_counter()
                try:
                    await self.store.append_batch([(p.events, p.begin, p.end) for p in batch])
                except BaseException as exc:
                    # Whether the batch committed is unknown, and anything queued since was
                    # built on top of it: fail all of it and re-read the head from the store.
                    failed, self._pending = batch + self._pending, []
                    self._resync = True
                    self._report(time.perf_counter() - t0, False, len(failed))
                    for p in failed:
                        if not p.done.done():
                            p.done.set_exception(_copy_error(exc))
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    return
                self._report(time.perf_counter() - t0, True, len(batch))
                for p in batch:
                    if not p.done.done():
                        p.done.set_result(None)
        finally:
            self._flusher = None

    def _report(self, seconds: float, ok: bool, count: int) -> None:
        if self.on_write is not None:
            for _ in range(count):
                self.on_write(seconds, ok)

    async def _drain(self) -> None:
        """Wait until nothing is queued or being committed (the caller holds the lock)."""
        while self._flusher is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flusher)

    async def _resync_if_needed(self) -> None:
        if not self._resync:
            return
        stored = await self.store.chain_head(self.chain_id)
        seq, head = stored if stored is not None else (0, ZERO_HASH)
        self._chain = ChainWriter(self.chain_id, seq=seq, head=head)
        self._resync = False

    def _index(self, rec: LineageRecord) -> RecordIndex:
        return RecordIndex(
            lineage_id=rec.lineage_id,
            client=rec.client,
            case_id=rec.case_id,
            customer_hash=rec.customer_ref["hash"] if rec.customer_ref else None,
            use_case=rec.use_case,
            started_ms=rec.started_ms,
            chain=self.chain_id,
        )

    async def start(self, rec: LineageRecord) -> None:
        items = [("request.started", rec.lineage_id, rec.start_data())]
        if self._users or self._resync:
            await self._append(items, begin=self._index(rec))
        else:
            # nobody holds or awaits the lock: no coroutine needed to take it
            done = self._submit(items, self._index(rec), None)[1]
            if done is not None:
                await asyncio.shield(done)
        rec.started_written = True

    async def finish(self, rec: LineageRecord) -> None:
        pending = self.finish_nowait(rec)
        if pending is not None:
            await asyncio.shield(pending)

    def finish_nowait(self, rec: LineageRecord) -> asyncio.Future[Any] | None:
        """Write the end event (and the start, if it was not written): None once it is
        durable, else the future to await. A record is ended once."""
        if rec.finished_written:
            return None
        items: list[tuple[str, str, dict[str, Any]]] = []
        begin = None
        if not rec.started_written:
            items.append(("request.started", rec.lineage_id, rec.start_data()))
            begin = self._index(rec)
        items.append(("request.ended", rec.lineage_id, rec.end_data()))
        pending = self._append_nowait(
            items, begin, RecordEnd(rec.lineage_id, rec.end or "failed", rec.decision)
        )
        if pending is None:
            rec.started_written = rec.finished_written = True
        else:
            pending.add_done_callback(partial(_written, rec, True))
        return pending

    async def committed_head(self) -> tuple[int, str]:
        """``(seq, hash)`` of this chain's last durable event (never a write in flight)."""
        async with self._lock:
            await self._drain()
            await self._resync_if_needed()
            return self._chain.seq, self._chain.head

    async def interrupt(self, index: RecordIndex, data: dict[str, Any]) -> dict[str, Any] | None:
        """Recovery: write the ``interrupted`` end of a record another (dead) chain began.
        ``None`` when the record was already ended (by its writer or another recoverer)."""
        async with self._lock:
            await self._drain()
            await self._resync_if_needed()
            seq, head = self._chain.seq, self._chain.head
            event = self._chain.next_event("request.ended", index.lineage_id, data, at_ms=now_ms())
            try:
                done = await self.store.append_interrupted([event], index.lineage_id)
            except BaseException:
                self._chain = ChainWriter(self.chain_id, seq=seq, head=head)
                self._resync = True
                raise
            if not done:
                self._chain = ChainWriter(self.chain_id, seq=seq, head=head)
                return None
            return event

    async def event(self, type_: str, lineage_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """An operator event (switch flip, activation, approval...): durable on return."""
        (event,) = await self._append([(type_, lineage_id, data)])
        return event
