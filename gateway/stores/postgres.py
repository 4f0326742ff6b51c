"""PostgreSQL backend: the shared store of many stateless replicas.

Usage::

    store = PostgresStore("postgresql://127.0.0.1:5432/test"); await store.open()
    await store.migrate()       # safe to run from several replicas at once

A small pool of async connections (psycopg 3). Every write is one transaction and
returns after COMMIT. ``migrate`` takes a session advisory lock, so concurrent
``casegate migrate`` runs apply each version exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import psycopg

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
from gateway.stores.postgres_drafts import PostgresDrafts
from gateway.stores.postgres_limits import PostgresCounters
from gateway.stores.postgres_lineage import PostgresLineage
from gateway.stores.postgres_ops import PostgresOps
from gateway.stores.postgres_switches import PostgresSwitches

__all__ = ["PostgresStore"]

_MIGRATE_LOCK = 0x6361736567617465  # "casegate"


class PostgresStore(
    PostgresDrafts, PostgresCounters, PostgresSwitches, PostgresLineage, PostgresOps
):
    kind = "postgres"

    def __init__(self, url: str, *, pool_size: int = 4, schema: str | None = None) -> None:
        self.url = url
        self.pool_size = pool_size
        self.schema = schema
        self._pool: asyncio.Queue[psycopg.AsyncConnection[Any]] | None = None
        self._all: list[psycopg.AsyncConnection[Any]] = []

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5)
        if self.schema:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(f'SET search_path TO "{self.schema}"')
        return conn

    async def open(self) -> None:
        pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        try:
            for _ in range(self.pool_size):
                conn = await self._connect()
                self._all.append(conn)
                pool.put_nowait(conn)
        except psycopg.Error as exc:
            await self.close()
            raise StateUnavailable(
                f"PostgreSQL cannot be reached: {exc.__class__.__name__}"
            ) from None
        self._pool = pool

    async def close(self) -> None:
        for conn in self._all:
            with contextlib.suppress(Exception):
                await conn.close()
        self._all.clear()
        self._pool = None

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise StateUnavailable("The state store is not open")
        conn = await self._pool.get()
        try:
            if conn.closed:
                conn = await self._connect()
            yield conn
        except psycopg.OperationalError as exc:
            with contextlib.suppress(Exception):
                await conn.close()
            raise StateUnavailable(f"PostgreSQL is unavailable: {exc.__class__.__name__}") from None
        finally:
            self._pool.put_nowait(conn)

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.execute("SELECT 1")

    async def migrate(self) -> list[int]:
        applied: list[int] = []
        async with self._conn() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations"
                    " (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)"
                )
                cur = await conn.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in await cur.fetchall()}
                for version, statements in sorted(MIGRATIONS["postgres"]):
                    if version in done:
                        continue
                    async with conn.transaction():
                        for statement in statements:
                            await conn.execute(statement)
                        await conn.execute(
                            "INSERT INTO schema_migrations VALUES"
                            " (%s, (extract(epoch from now()) * 1000)::bigint)",
                            (version,),
                        )
                    applied.append(version)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))
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
        """Several records' events in ONE transaction (the lineage writer's group commit)."""
        rows, begins, ends = lineage_rows(batch)
        async with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO lineage_events (chain, seq, lineage_id, type, at, event)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
            if begins:
                await cur.executemany(
                    "INSERT INTO lineage_records (lineage_id, client, case_id, customer_hash,"
                    " use_case, started_ms, chain) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    begins,
                )
            if ends:
                await cur.executemany(
                    "UPDATE lineage_records SET ended = %s, decision = %s WHERE lineage_id = %s",
                    ends,
                )

    async def events_for(self, lineage_id: str) -> list[dict[str, Any]]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT event FROM lineage_events WHERE lineage_id = %s ORDER BY at, chain, seq",
                (lineage_id,),
            )
            return [orjson.loads(r[0]) for r in await cur.fetchall()]

    async def all_events(self) -> list[dict[str, Any]]:
        async with self._conn() as conn:
            cur = await conn.execute("SELECT event FROM lineage_events ORDER BY chain, seq")
            return [orjson.loads(r[0]) for r in await cur.fetchall()]

    async def unfinished_records(self, chains_alive: Sequence[str]) -> list[RecordIndex]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT lineage_id, client, case_id, customer_hash, use_case, started_ms, chain"
                " FROM lineage_records WHERE ended IS NULL"
            )
            rows = await cur.fetchall()
        alive = set(chains_alive)
        return [RecordIndex(*r) for r in rows if r[6] not in alive]

    # -- pseudonym vaults -----------------------------------------------------
    async def load_vault(self, case_key: str, now_ms: int) -> tuple[bytes, int] | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT blob, version, expires_ms FROM pseudonym_vaults WHERE case_key = %s",
                (case_key,),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        if row[2] <= now_ms:
            return b"", int(row[1])
        return bytes(row[0]), int(row[1])

    async def save_vault(
        self, case_key: str, blob: bytes, *, expected_version: int | None, expires_ms: int
    ) -> bool:
        async with self._conn() as conn:
            if expected_version is None:
                cur = await conn.execute(
                    "INSERT INTO pseudonym_vaults VALUES (%s, %s, 1, %s) ON CONFLICT DO NOTHING",
                    (case_key, blob, expires_ms),
                )
            else:
                cur = await conn.execute(
                    "UPDATE pseudonym_vaults SET blob = %s, version = version + 1,"
                    " expires_ms = %s WHERE case_key = %s AND version = %s",
                    (blob, expires_ms, case_key, expected_version),
                )
            return cur.rowcount == 1

    # -- policy ----------------------------------------------------------------
    async def put_bundle(self, bundle: StoredBundle) -> bool:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO policy_bundles VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (version) DO NOTHING",
                (bundle.version, bundle.sha256, bundle.text, bundle.stored_ms, bundle.stored_by),
            )
            if cur.rowcount == 1:
                return True
            cur = await conn.execute(
                "SELECT sha256 FROM policy_bundles WHERE version = %s", (bundle.version,)
            )
            row = await cur.fetchone()
        if row is not None and row[0] != bundle.sha256:
            raise VersionConflict(
                f"Policy version {bundle.version!r} is already stored with another sha256"
            )
        return False

    async def get_bundle(self, version: str) -> StoredBundle | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT version, sha256, text, stored_ms, stored_by FROM policy_bundles"
                " WHERE version = %s",
                (version,),
            )
            row = await cur.fetchone()
        return StoredBundle(*row) if row else None

    async def list_bundles(self) -> list[StoredBundle]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT version, sha256, text, stored_ms, stored_by FROM policy_bundles"
                " ORDER BY stored_ms, version"
            )
            return [StoredBundle(*r) for r in await cur.fetchall()]

    async def activate(self, activation: Activation) -> None:
        a = activation
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO policy_activations (version, mode, at_ms, actor, reason)"
                " VALUES (%s, %s, %s, %s, %s)",
                (a.version, a.mode, a.at_ms, a.by, a.reason),
            )

    async def activations(self) -> list[Activation]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT version, mode, at_ms, actor, reason FROM policy_activations ORDER BY id"
            )
            return [Activation(*r) for r in await cur.fetchall()]
