"""Workers that start together on a fresh SQLite state all open it.

Switching a new file to WAL needs the whole file; two workers doing it at once each
hold a read lock, and SQLite answers one of them "database is locked" at once, without
waiting (its busy handler could wait for ever). That worker's start failed, and
uvicorn's supervisor then stops the whole server (seen in CI as "connection refused").
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from pathlib import Path
from typing import Any

from gateway.stores.sqlite import SqliteStore


def _start_worker(path: str, barrier: Any, results: Any) -> None:
    async def run() -> None:
        store = SqliteStore(Path(path))
        barrier.wait()  # as the supervisor's workers: at the same moment
        try:
            await store.open()
            await store.migrate()
            results.put("ok")
        except Exception as exc:
            results.put(f"{type(exc).__name__}: {exc}")
        finally:
            await store.close()

    asyncio.run(run())


def test_two_workers_open_a_fresh_database_at_once(tmp_path: Path) -> None:
    ctx = mp.get_context("forkserver")  # children forked from a process with no threads
    failures = []
    for i in range(20):
        path = str(tmp_path / f"{i}.db")
        barrier, results = ctx.Barrier(2), ctx.Queue()
        workers = [ctx.Process(target=_start_worker, args=(path, barrier, results)) for _ in "ab"]
        for w in workers:
            w.start()
        answers = [results.get(timeout=30) for _ in workers]
        for w in workers:
            w.join(10)
        failures += [a for a in answers if a != "ok"]
    assert failures == []
