"""The writer never forks or gaps its chain, even when a write fails after it committed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway.lineage import LineageWriter
from gateway.stores import StateUnavailable
from gateway.stores import sqlite as sqlite_store
from gateway.stores.sqlite import SqliteStore
from tracing import verify_chains

S = TypeVar("S", bound=SqliteStore)


async def _opened(store: S) -> S:
    """`store` opened and migrated."""
    await store.open()
    await store.migrate()
    return store


class CommitThenFail(SqliteStore):
    """Commits the events, then raises, as a cancellation landing after COMMIT would."""

    fail_next: BaseException | None = None

    async def append_batch(self, batch: Any) -> None:
        await super().append_batch(batch)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc


@pytest.mark.parametrize(
    ("failure", "raised"),
    [(asyncio.CancelledError(), StateUnavailable), (OSError("connection lost"), OSError)],
)
def test_a_write_that_committed_then_failed_does_not_fork_the_chain(
    tmp_path: Path, failure: BaseException, raised: type[BaseException]
) -> None:
    async def run() -> list[dict[str, Any]]:
        store = await _opened(CommitThenFail(tmp_path / "s.db"))
        writer = LineageWriter(store)
        await writer.event("test.one", "lin_1", {})
        store.fail_next = failure
        with pytest.raises(raised):
            await writer.event("test.two", "lin_2", {})
        await writer.event("test.three", "lin_3", {})  # resyncs from the store first
        events = await store.all_events()
        await store.close()
        return events

    events = asyncio.run(run())
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert [e["type"] for e in events] == ["test.one", "test.two", "test.three"]
    assert verify_chains(events).ok


def test_a_write_that_failed_before_commit_leaves_no_gap(tmp_path: Path) -> None:
    class FailFirst(SqliteStore):
        failed = False

        async def append_batch(self, batch: Any) -> None:
            if not self.failed:
                self.failed = True
                raise OSError("disk unplugged")
            await super().append_batch(batch)

    async def run() -> list[dict[str, Any]]:
        store = await _opened(FailFirst(tmp_path / "s.db"))
        writer = LineageWriter(store)
        with pytest.raises(OSError):
            await writer.event("test.lost", "lin_1", {})
        await writer.event("test.kept", "lin_2", {})
        events = await store.all_events()
        await store.close()
        return events

    events = asyncio.run(run())
    assert [(e["seq"], e["type"]) for e in events] == [(1, "test.kept")]
    assert verify_chains(events).ok


def test_concurrent_writes_share_commits_and_keep_the_chain_in_order(tmp_path: Path) -> None:
    class Counting(SqliteStore):
        batches: list[int] = []

        async def append_batch(self, batch: Any) -> None:
            self.batches.append(len(batch))
            await super().append_batch(batch)

    async def run() -> tuple[list[dict[str, Any]], list[int]]:
        store = await _opened(Counting(tmp_path / "s.db"))
        writer = LineageWriter(store)
        await asyncio.gather(*(writer.event("test.n", f"lin_{i}", {"i": i}) for i in range(40)))
        events = await store.all_events()
        await store.close()
        return events, store.batches

    events, batches = asyncio.run(run())
    assert [e["seq"] for e in events] == list(range(1, 41))
    assert verify_chains(events).ok
    assert sum(batches) == 40 and len(batches) < 40  # commits were shared


def test_a_lone_write_commits_at_once_and_a_failed_one_resyncs(tmp_path: Path) -> None:
    class CommitNowThenFail(SqliteStore):
        fail_next: BaseException | None = None
        commits: list[int] = []

        def _try_append(self, events: Any, begins: Any, ends: Any) -> bool:
            # every commit, inline or through the flusher, goes through here
            assert super()._try_append(events, begins, ends)
            self.commits.append(len(events))
            if self.fail_next is not None:
                exc, self.fail_next = self.fail_next, None
                raise exc
            return True

    async def run() -> tuple[list[dict[str, Any]], list[bool], list[int]]:
        store = await _opened(CommitNowThenFail(tmp_path / "s.db"))
        writer = LineageWriter(store)
        alone = [True]
        writer.alone = lambda: alone[0]
        loop = asyncio.get_running_loop()
        suspended: list[bool] = []

        async def write(type_: str, lid: str) -> None:
            ran: list[bool] = []
            loop.call_soon(ran.append, True)  # runs only if the write yields to the loop
            await writer.event(type_, lid, {})
            suspended.append(bool(ran))

        await write("test.one", "lin_1")
        store.fail_next = OSError("lost after COMMIT")
        with pytest.raises(OSError):
            await write("test.two", "lin_2")
        await write("test.three", "lin_3")  # re-reads the head first: no fork, no gap
        alone[0] = False  # another call is in flight: through the flusher, grouped
        await asyncio.gather(*(writer.event("test.n", f"lin_n{i}", {}) for i in range(6)))
        events = await store.all_events()
        await store.close()
        return events, suspended, store.commits

    events, suspended, commits = asyncio.run(run())
    assert [e["seq"] for e in events] == list(range(1, 10))
    assert [e["type"] for e in events][:3] == ["test.one", "test.two", "test.three"]
    assert verify_chains(events).ok
    # the lone writes committed one by one without yielding (the resync of the third
    # one awaited the store's head); the six concurrent ones shared one transaction
    assert suspended[0] is False
    assert commits == [1, 1, 1, 6]


@pytest.mark.parametrize("alone", [True, False])
def test_a_write_waits_for_another_process_lock_without_blocking_the_loop(
    tmp_path: Path, alone: bool
) -> None:
    """Another process (here: another connection) holds SQLite's write lock. The write
    neither sleeps in SQLite's busy handler with the loop blocked nor fails: the loop
    goes on, and the write lands, in chain order, once the lock is released."""

    async def run() -> tuple[list[dict[str, Any]], bool, int]:
        store = await _opened(SqliteStore(tmp_path / "s.db"))
        writer = LineageWriter(store)
        writer.alone = lambda: alone
        first = await writer.event("test.first", "lin_0", {})
        other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the other worker's commit in progress
        task = asyncio.ensure_future(writer.event("test.second", "lin_1", {}))
        turns = 0
        for _ in range(20):  # the loop keeps turning while the write waits
            await asyncio.sleep(0.005)
            turns += 1
        pending = not task.done()
        other.execute("COMMIT")
        other.close()
        second = await asyncio.wait_for(task, 5)
        events = await store.all_events()
        await store.close()
        assert events == [first, second]
        return events, pending, turns

    events, pending, turns = asyncio.run(run())
    assert pending and turns == 20
    assert [e["seq"] for e in events] == [1, 2]
    assert verify_chains(events).ok


def test_a_write_gives_up_when_the_lock_is_never_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 300)

    async def run() -> list[dict[str, Any]]:
        store = await _opened(SqliteStore(tmp_path / "s.db"))
        writer = LineageWriter(store)
        other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StateUnavailable, match="held the SQLite write lock"):
            await writer.event("test.lost", "lin_0", {})
        other.execute("ROLLBACK")
        other.close()
        await writer.event("test.after", "lin_1", {})  # nothing was written: no gap
        events = await store.all_events()
        await store.close()
        return events

    events = asyncio.run(run())
    assert [(e["seq"], e["type"]) for e in events] == [(1, "test.after")]
    assert verify_chains(events).ok


def test_other_writes_still_wait_for_another_process_lock(tmp_path: Path) -> None:
    """Only lineage appends ask for the lock without waiting (on a connection of their
    own): every other write still waits in SQLite's busy handler for another process's
    commit to end, rather than failing with "database is locked"."""

    async def run() -> tuple[bool, float]:
        store = await _opened(SqliteStore(tmp_path / "s.db"))
        other = sqlite3.connect(tmp_path / "s.db", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process's commit in progress
        loop = asyncio.get_running_loop()
        # released from a thread: the save below holds the loop while it waits
        releaser = loop.run_in_executor(None, _release_after, other, 0.3)
        t0 = loop.time()
        saved = await store.save_vault("case-k", b"blob", expected_version=None, expires_ms=1)
        waited = loop.time() - t0
        await releaser
        await store.close()
        return saved, waited

    saved, waited = asyncio.run(run())
    assert saved and waited >= 0.25


def _release_after(conn: sqlite3.Connection, seconds: float) -> None:
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_the_append_connection_opens_while_another_worker_holds_the_database(
    tmp_path: Path,
) -> None:
    """A worker that starts while another holds the database (a fresh file being switched
    to WAL takes it whole) waits for it, as its main connection does: it used to fail at
    once ("database is locked"), and the server stopped with that worker's start."""
    path = tmp_path / "s.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN EXCLUSIVE")
    released = threading.Thread(target=_release_after, args=(other, 0.3))
    released.start()
    t0 = time.monotonic()
    db = sqlite_store.connect_for_appends(path)
    waited = time.monotonic() - t0
    released.join()
    try:
        assert waited >= 0.25
        assert db.execute("PRAGMA busy_timeout").fetchone() == (0,)
        assert db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    finally:
        db.close()
