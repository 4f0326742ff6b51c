"""SQLite backend: one file in WAL mode, for one machine (one or several workers).

Usage::

    store = SqliteStore(Path("casegate.db")); await store.open(); await store.migrate()

Calls run on the event loop itself: with WAL and ``synchronous=NORMAL`` a commit is a
write into the OS page cache (tens of microseconds), cheaper than a thread hop. That
is durable against SIGKILL of the process, which is what DESIGN.md section 8 asks.
Several worker processes share the file; ``busy_timeout`` serialises their writers.

Lineage appends (two per chat call) never wait in that busy handler: it sleeps a
millisecond or more per try with the event loop blocked, and two workers' commits do
collide (two processes appending to one file, traced: 1,081 such sleeps in 6,000
calls). They commit on a connection of their own whose ``busy_timeout`` is 0:
``append_batch_now`` asks for the write lock without waiting and says when it could
not have it; ``append_batch`` then retries from the event loop, which serves other
calls in between, for up to `BUSY_TIMEOUT_MS`. (Switching one connection's timeout
to 0 and back around each append cost more: two PRAGMA statements per commit, 54k
instructions a call, against 11k for the other connection re-reading the pages of
its next read after each append.) Nothing else writes on that connection, and an
append never awaits while it holds the lock, so a write on the main connection never
finds this process's own lineage connection holding it.

Checkpoints (copying the WAL into the database file, with an fsync) run on a thread of
their own with its own connection, every `CHECKPOINT_S`: left to SQLite, every
thousandth WAL page a commit on the event loop would do one, and at concurrency one a
call in sixty waited for it (milliseconds: issue 10's p99, and a third of the mean
commit). SQLite's own checkpoint stays as a backstop at `BACKSTOP_PAGES`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from gateway.stores.base import (
    Activation,
    RecordEnd,
    RecordIndex,
    StateUnavailable,
    StoredBundle,
    VersionConflict,
    lineage_rows,
)
from gateway.stores.migrations import MIGRATIONS
from gateway.stores.sqlite_drafts import SqliteDrafts
from gateway.stores.sqlite_limits import SqliteCounters
from gateway.stores.sqlite_lineage import SqliteLineage
from gateway.stores.sqlite_ops import SqliteOps
from gateway.stores.sqlite_switches import SqliteSwitches

__all__ = ["SqliteStore"]

log = logging.getLogger("casegate.stores")
#: how often the checkpoint thread copies the WAL into the database (seconds)
CHECKPOINT_S = 0.25
#: the WAL size (pages) at which a commit checkpoints by itself, should the thread lag
BACKSTOP_PAGES = 16_384
#: how long a writer waits for another process's write lock (milliseconds)
BUSY_TIMEOUT_MS = 10_000
#: a lineage append's waits between tries for the write lock: the first try again at the
#: loop's next turn, then doubling up to the last (seconds)
RETRY_DELAYS_S = (0.0, 0.0005, 0.001, 0.002, 0.004, 0.008)


class _Checkpointer:
    """A thread that runs ``PRAGMA wal_checkpoint(PASSIVE)`` every `CHECKPOINT_S` on a
    connection of its own (SQLite releases the GIL while it copies and syncs). PASSIVE
    never waits for a reader or a writer: what it cannot copy now, it copies next time."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="casegate-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        failed = False
        while not self._stop.wait(CHECKPOINT_S):
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                failed = False
            except sqlite3.Error as exc:
                if not failed:  # once per run of failures; the backstop still holds
                    log.warning("SQLite WAL checkpoint failed: %s", exc)
                failed = True

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._db.close()


def use_wal(db: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, trying again for up to `BUSY_TIMEOUT_MS` while it is
    busy. Two workers switching a new file at once each hold a read lock and want the
    whole file: SQLite answers one of them "database is locked" at once, without its
    busy handler (waiting could never end), which failed that worker's start and so
    stopped the server (two processes at once: 31 starts in 100)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.001
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(delay)  # (at start, before the worker serves anything)
        delay = min(delay * 2, 0.05)


def _connect(path: Path) -> sqlite3.Connection:
    """A connection set up as each of the store's is: waiting up to `BUSY_TIMEOUT_MS`
    for another worker's lock, WAL (switching a new file to it), ``synchronous=NORMAL``
    (per connection: every one as durable), foreign keys, the checkpoint backstop."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        use_wal(db)
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
    except BaseException:
        db.close()
        raise
    return db


def connect_for_appends(path: Path) -> sqlite3.Connection:
    """The lineage appends' connection: set up waiting for locks as the main connection
    is (``PRAGMA synchronous`` reads the schema, and would fail at once with "database
    is locked" while another worker holds the database, as when it switches a new file
    to WAL), and only then told never to wait."""
    db = _connect(path)
    try:
        db.execute("PRAGMA busy_timeout = 0")
    except BaseException:
        db.close()
        raise
    return db


class SqliteStore(SqliteDrafts, SqliteCounters, SqliteSwitches, SqliteLineage, SqliteOps):
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        #: lineage appends only (`_try_append`): never waits for the write lock
        self._lineage_db: sqlite3.Connection | None = None
        self._checkpointer: _Checkpointer | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StateUnavailable("The state store is not open")
        return self._db

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        opened: list[sqlite3.Connection] = []
        try:
            db = _connect(self.path)
            opened.append(db)
            lineage_db = connect_for_appends(self.path)
            opened.append(lineage_db)
            checkpointer = _Checkpointer(self.path)
        except sqlite3.Error as exc:
            for conn in opened:  # none left open behind a failed start
                conn.close()
            raise StateUnavailable(f"The SQLite state store cannot be opened: {exc}") from None
        self._db = db
        self._lineage_db = lineage_db
        self._checkpointer = checkpointer

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._lineage_db is not None:
            self._lineage_db.close()
            self._lineage_db = None
        if self._db is not None:
            self._db.close()
            self._db = None

    async def ping(self) -> None:
        try:
            self.db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StateUnavailable(f"The SQLite state store does not answer: {exc}") from None

    async def migrate(self) -> list[int]:
        db = self.db
        applied: list[int] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)"
            )
            done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            for version, statements in sorted(MIGRATIONS["sqlite"]):
                if version in done:
                    continue
                for statement in statements:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations"
                    " VALUES (?, CAST(strftime('%s','now') AS INT) * 1000)",
                    (version,),
                )
                applied.append(version)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return applied

    # -- lineage ---------------------------------------------------------------
    async def append_events(
        self,
        events: Sequence[dict[str, Any]],
        *,
        begin: RecordIndex | None = None,
        end: RecordEnd | None = None,
    ) -> None:
        await self.append_batch([(events, begin, end)])

    async def append_batch(
        self,
        batch: Sequence[tuple[Sequence[dict[str, Any]], RecordIndex | None, RecordEnd | None]],
    ) -> None:
        """Several records' events in ONE transaction (the lineage writer's group commit).

        While another process holds the write lock, tries again from the event loop
        (`RETRY_DELAYS_S`) for up to `BUSY_TIMEOUT_MS`, instead of SQLite's busy handler
        sleeping with the loop blocked. The rows are encoded once for all tries."""
        rows = lineage_rows(batch)
        deadline = 0.0
        tries = 0
        while not self._try_append(*rows):
            now = time.monotonic()
            if not deadline:
                deadline = now + BUSY_TIMEOUT_MS / 1000
            elif now >= deadline:
                raise StateUnavailable(
                    "Lineage could not be written: another process held the SQLite write "
                    f"lock for {BUSY_TIMEOUT_MS / 1000:.0f} s"
                )
            await asyncio.sleep(RETRY_DELAYS_S[min(tries, len(RETRY_DELAYS_S) - 1)])
            tries += 1

    def append_batch_now(
        self,
        batch: Sequence[tuple[Sequence[dict[str, Any]], RecordIndex | None, RecordEnd | None]],
    ) -> bool:
        """`append_batch` without awaiting: nothing can run while it commits.

        False, with nothing written, when another process holds the write lock now."""
        return self._try_append(*lineage_rows(batch))

    def _try_append(self, events: list[Any], begins: list[Any], ends: list[Any]) -> bool:
        db = self._lineage_db
        if db is None:
            raise StateUnavailable("The state store is not open")
        try:
            try:
                db.execute("BEGIN IMMEDIATE")  # busy_timeout 0: at once, or SQLITE_BUSY
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                    return False
                raise
            try:
                db.executemany(
                    "INSERT INTO lineage_events (chain, seq, lineage_id, type, at, event)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    events,
                )
                if begins:
                    db.executemany(
                        "INSERT INTO lineage_records (lineage_id, client, case_id, customer_hash,"
                        " use_case, started_ms, chain) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        begins,
                    )
                if ends:
                    db.executemany(
                        "UPDATE lineage_records SET ended = ?, decision = ? WHERE lineage_id = ?",
                        ends,
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StateUnavailable(f"Lineage could not be written: {exc}") from None
        return True

    async def events_for(self, lineage_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT event FROM lineage_events WHERE lineage_id = ? ORDER BY at, chain, seq",
            (lineage_id,),
        ).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    async def all_events(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT event FROM lineage_events ORDER BY chain, seq").fetchall()
        return [orjson.loads(r[0]) for r in rows]

    async def unfinished_records(self, chains_alive: Sequence[str]) -> list[RecordIndex]:
        rows = self.db.execute(
            "SELECT lineage_id, client, case_id, customer_hash, use_case, started_ms, chain"
            " FROM lineage_records WHERE ended IS NULL"
        ).fetchall()
        alive = set(chains_alive)
        return [RecordIndex(*r) for r in rows if r[6] not in alive]

    # -- pseudonym vaults -----------------------------------------------------
    async def load_vault(self, case_key: str, now_ms: int) -> tuple[bytes, int] | None:
        row = self.db.execute(
            "SELECT blob, version, expires_ms FROM pseudonym_vaults WHERE case_key = ?",
            (case_key,),
        ).fetchone()
        if row is None:
            return None
        if row[2] <= now_ms:
            # expired: the values are gone for good, but the version lives on so that a
            # concurrent writer still sees a conflict
            return b"", int(row[1])
        return bytes(row[0]), int(row[1])

    async def save_vault(
        self, case_key: str, blob: bytes, *, expected_version: int | None, expires_ms: int
    ) -> bool:
        db = self.db
        try:
            if expected_version is None:
                cur = db.execute(
                    "INSERT INTO pseudonym_vaults VALUES (?, ?, 1, ?) ON CONFLICT DO NOTHING",
                    (case_key, blob, expires_ms),
                )
            else:
                cur = db.execute(
                    "UPDATE pseudonym_vaults SET blob = ?, version = version + 1, expires_ms = ?"
                    " WHERE case_key = ? AND version = ?",
                    (blob, expires_ms, case_key, expected_version),
                )
        except sqlite3.Error as exc:
            raise StateUnavailable(f"The pseudonym map could not be written: {exc}") from None
        return cur.rowcount == 1

    # -- policy ----------------------------------------------------------------
    async def put_bundle(self, bundle: StoredBundle) -> bool:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT sha256 FROM policy_bundles WHERE version = ?", (bundle.version,)
            ).fetchone()
            if row is not None:
                db.execute("COMMIT")
                if row[0] != bundle.sha256:
                    raise VersionConflict(
                        f"Policy version {bundle.version!r} is already stored with another sha256"
                    )
                return False
            db.execute(
                "INSERT INTO policy_bundles VALUES (?, ?, ?, ?, ?)",
                (bundle.version, bundle.sha256, bundle.text, bundle.stored_ms, bundle.stored_by),
            )
            db.execute("COMMIT")
            return True
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise

    async def get_bundle(self, version: str) -> StoredBundle | None:
        row = self.db.execute(
            "SELECT version, sha256, text, stored_ms, stored_by FROM policy_bundles"
            " WHERE version = ?",
            (version,),
        ).fetchone()
        return StoredBundle(*row) if row else None

    async def list_bundles(self) -> list[StoredBundle]:
        rows = self.db.execute(
            "SELECT version, sha256, text, stored_ms, stored_by FROM policy_bundles"
            " ORDER BY stored_ms, version"
        ).fetchall()
        return [StoredBundle(*r) for r in rows]

    async def activate(self, activation: Activation) -> None:
        a = activation
        self.db.execute(
            "INSERT INTO policy_activations (version, mode, at_ms, actor, reason)"
            " VALUES (?, ?, ?, ?, ?)",
            (a.version, a.mode, a.at_ms, a.by, a.reason),
        )

    async def activations(self) -> list[Activation]:
        rows = self.db.execute(
            "SELECT version, mode, at_ms, actor, reason FROM policy_activations ORDER BY id"
        ).fetchall()
        return [Activation(*r) for r in rows]
