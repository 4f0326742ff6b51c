"""The writer never forks or gaps its chain, even when a write fails after it committed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.lineage import LineageWriter
from gateway.stores import StateUnavailable
from gateway.stores.sqlite import SqliteStore
from tracing import verify_chains


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
        store = CommitThenFail(tmp_path / "s.db")
        await store.open()
        await store.migrate()
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
        store = FailFirst(tmp_path / "s.db")
        await store.open()
        await store.migrate()
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
        store = Counting(tmp_path / "s.db")
        await store.open()
        await store.migrate()
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

        def append_batch_now(self, batch: Any) -> None:
            super().append_batch_now(batch)
            self.commits.append(len(batch))
            if self.fail_next is not None:
                exc, self.fail_next = self.fail_next, None
                raise exc

    async def run() -> tuple[list[dict[str, Any]], list[bool], list[int]]:
        store = CommitNowThenFail(tmp_path / "s.db")
        await store.open()
        await store.migrate()
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
