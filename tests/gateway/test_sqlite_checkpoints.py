"""The SQLite store copies its WAL into the database file on a thread of its own
(gateway/stores/sqlite.py): a commit on the event loop never waits for a checkpoint,
the WAL does not grow without bound, and closing the store stops the thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from gateway.lineage import LineageWriter
from gateway.stores import sqlite as module
from gateway.stores.sqlite import SqliteStore
from tracing import verify_chains


def _checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "casegate-sqlite-checkpoint"]


def test_the_wal_is_checkpointed_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    before = len(_checkpointers())

    async def run() -> tuple[int, int, int]:
        store = SqliteStore(path)
        await store.open()
        await store.migrate()
        assert len(_checkpointers()) == before + 1
        # the event loop's own connection checkpoints only past the backstop
        backstop = store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert backstop == module.BACKSTOP_PAGES
        writer = LineageWriter(store)
        await asyncio.sleep(2 * module.CHECKPOINT_S)  # the migrations' pages are copied
        size = path.stat().st_size
        for i in range(300):  # far fewer WAL pages than the backstop
            await writer.event("test.filler", f"lin_{i}", {"text": "x" * 2000, "i": i})
        # the database file grows only as the thread copies the WAL into it (in as many
        # rounds as it takes: a round copies what was committed when it ran)
        deadline = time.monotonic() + 10
        while path.stat().st_size <= size + 300 * 2000 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        grown = path.stat().st_size
        events = await store.all_events()
        await store.close()
        return size, grown, len(events) if verify_chains(events).ok else -1

    size, grown, events = asyncio.run(run())
    assert grown > size + 300 * 2000  # every event's pages reached the database file
    assert events == 300
    assert len(_checkpointers()) == before  # closed with the store
    # and what was written is all there for a fresh reader
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM lineage_events").fetchone()[0] == 300


def test_a_failing_checkpoint_is_logged_once_and_retried(tmp_path: Path) -> None:
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("casegate.stores")
    logger.addHandler(handler)
    try:
        checkpointer = module._Checkpointer(tmp_path / "c.db")
        checkpointer._db.close()  # every checkpoint now fails ("closed database")
        time.sleep(4 * module.CHECKPOINT_S)
        checkpointer._stop.set()
        checkpointer._thread.join()
    finally:
        logger.removeHandler(handler)
    warnings = [r for r in records if "checkpoint failed" in r.getMessage()]
    assert len(warnings) == 1  # once per run of failures, not every quarter second
