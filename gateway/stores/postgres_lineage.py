"""PostgreSQL side of lineage beyond the append path (a mixin of ``PostgresStore``).

Usage::

    await store.register_writer(chain, host, pid, now_ms)     # then heartbeat_writer(...)
    rows = await store.query_records(RecordQuery(case_id="C-1"))
    ok = await store.append_interrupted([event], lineage_id)  # False: someone else did

Same tables and semantics as :mod:`gateway.stores.sqlite_lineage`; the recovery's
compare-and-set is one transaction on any number of replicas.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
import psycopg

from gateway.stores.base import RecordIndex, RecordQuery, RecordRow, WriterRow
from gateway.stores.sqlite_lineage import record_where

__all__ = ["PostgresLineage"]

_RECORD = (
    "SELECT lineage_id, client, case_id, customer_hash, use_case, started_ms, ended,"
    " decision, chain FROM lineage_records"
)
_FAR = 2**62


class PostgresLineage:
    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        raise NotImplementedError  # provided by PostgresStore

    async def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        async with self._conn() as conn:
            cur = await conn.execute(sql, args)
            return await cur.fetchall()

    async def _exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        async with self._conn() as conn:
            cur = await conn.execute(sql, args)
            return cur.rowcount

    # -- writers ---------------------------------------------------------------
    async def register_writer(self, chain: str, host: str, pid: int, now_ms: int) -> None:
        await self._exec(
            "INSERT INTO lineage_writers VALUES (%s, %s, %s, %s, %s, NULL, 0, %s)",
            (chain, host, pid, now_ms, now_ms, "0" * 64),
        )

    async def heartbeat_writer(
        self, chain: str, now_ms: int, head: tuple[int, str], *, close: bool = False
    ) -> None:
        if close:
            await self._exec(
                "UPDATE lineage_writers SET heartbeat_ms = %s, head_seq = %s, head_hash = %s,"
                " closed_ms = COALESCE(closed_ms, %s) WHERE chain = %s",
                (now_ms, head[0], head[1], now_ms, chain),
            )
        else:
            await self._exec(
                "UPDATE lineage_writers SET heartbeat_ms = %s, head_seq = %s, head_hash = %s"
                " WHERE chain = %s AND closed_ms IS NULL",
                (now_ms, head[0], head[1], chain),
            )

    async def writers(self) -> list[WriterRow]:
        rows = await self._rows(
            "SELECT chain, host, pid, started_ms, heartbeat_ms, closed_ms, head_seq, head_hash"
            " FROM lineage_writers ORDER BY started_ms, chain"
        )
        return [WriterRow(*r) for r in rows]

    async def chain_head(self, chain: str) -> tuple[int, str] | None:
        rows = await self._rows(
            "SELECT seq, event FROM lineage_events WHERE chain = %s ORDER BY seq DESC LIMIT 1",
            (chain,),
        )
        return None if not rows else (int(rows[0][0]), orjson.loads(rows[0][1])["hash"])

    async def orphaned_records(self, stale_before_ms: int, *, limit: int) -> list[RecordIndex]:
        rows = await self._rows(
            "SELECT r.lineage_id, r.client, r.case_id, r.customer_hash, r.use_case,"
            " r.started_ms, r.chain FROM lineage_records r"
            " LEFT JOIN lineage_writers w ON w.chain = r.chain"
            " WHERE r.ended IS NULL AND ("
            "  (w.chain IS NULL AND r.started_ms < %s)"
            "  OR w.closed_ms IS NOT NULL OR w.heartbeat_ms < %s)"
            " ORDER BY r.started_ms LIMIT %s",
            (stale_before_ms, stale_before_ms, limit),
        )
        return [RecordIndex(*r) for r in rows]

    async def append_interrupted(self, events: Sequence[dict[str, Any]], lineage_id: str) -> bool:
        async with self._conn() as conn, conn.transaction() as tx:
            cur = await conn.execute(
                "UPDATE lineage_records SET ended = 'interrupted'"
                " WHERE lineage_id = %s AND ended IS NULL",
                (lineage_id,),
            )
            if cur.rowcount != 1:
                raise psycopg.Rollback(tx)
            async with conn.cursor() as c:
                await c.executemany(
                    "INSERT INTO lineage_events (chain, seq, lineage_id, type, at, event)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    [
                        (
                            e["chain"],
                            e["seq"],
                            e["lineage_id"],
                            e["type"],
                            e["at"],
                            orjson.dumps(e).decode(),
                        )
                        for e in events
                    ],
                )
            return True
        return False

    # -- checkpoints -----------------------------------------------------------
    async def put_checkpoint(self, checkpoint: dict[str, Any], *, writer: str, at_ms: int) -> None:
        await self._exec(
            "INSERT INTO lineage_checkpoints (at, at_ms, writer, checkpoint)"
            " VALUES (%s, %s, %s, %s)",
            (checkpoint["at"], at_ms, writer, orjson.dumps(checkpoint).decode()),
        )

    async def checkpoints(
        self, from_ms: int | None = None, to_ms: int | None = None
    ) -> list[dict[str, Any]]:
        rows = await self._rows(
            "SELECT checkpoint FROM lineage_checkpoints WHERE at_ms >= %s AND at_ms < %s"
            " ORDER BY at_ms, id",
            (from_ms if from_ms is not None else -_FAR, to_ms if to_ms is not None else _FAR),
        )
        return [orjson.loads(r[0]) for r in rows]

    async def put_public_key(self, kid: str, jwk: dict[str, Any], now_ms: int) -> None:
        await self._exec(
            "INSERT INTO lineage_public_keys VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (kid, orjson.dumps(jwk).decode(), now_ms),
        )

    async def public_keys(self) -> list[dict[str, Any]]:
        rows = await self._rows("SELECT jwk FROM lineage_public_keys ORDER BY first_ms, kid")
        return [orjson.loads(r[0]) for r in rows]

    # -- queries ---------------------------------------------------------------
    async def query_records(self, query: RecordQuery) -> list[RecordRow]:
        clause, args = record_where(query, "%s")
        rows = await self._rows(_RECORD + clause, args)
        return [RecordRow(*r) for r in rows]

    async def events_for_many(self, lineage_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not lineage_ids:
            return []
        rows = await self._rows(
            "SELECT event FROM lineage_events WHERE lineage_id = ANY(%s) ORDER BY at, chain, seq",
            (list(lineage_ids),),
        )
        return [orjson.loads(r[0]) for r in rows]

    async def chain_events(self, chains: Sequence[str]) -> list[dict[str, Any]]:
        if not chains:
            return []
        rows = await self._rows(
            "SELECT event FROM lineage_events WHERE chain = ANY(%s) ORDER BY chain, seq",
            (list(chains),),
        )
        return [orjson.loads(r[0]) for r in rows]

    async def chains_between(self, from_at: str, to_at: str) -> list[str]:
        rows = await self._rows(
            "SELECT DISTINCT chain FROM lineage_events WHERE at >= %s AND at < %s ORDER BY chain",
            (from_at, to_at),
        )
        return [r[0] for r in rows]

    # -- outcomes --------------------------------------------------------------
    async def put_outcome(
        self, lineage_id: str, client: str, kind: str, handle_time_s: int | None, at_ms: int
    ) -> bool:
        n = await self._exec(
            "INSERT INTO lineage_outcomes VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (lineage_id, client, kind, handle_time_s, at_ms),
        )
        return n == 1

    async def delete_outcome(self, lineage_id: str) -> None:
        await self._exec("DELETE FROM lineage_outcomes WHERE lineage_id = %s", (lineage_id,))

    # -- personal data ---------------------------------------------------------
    async def erase_vault(self, case_key: str) -> int:
        return await self._exec("DELETE FROM pseudonym_vaults WHERE case_key = %s", (case_key,))

    async def sweep_vaults(self, now_ms: int) -> int:
        return await self._exec("DELETE FROM pseudonym_vaults WHERE expires_ms <= %s", (now_ms,))

    async def sweep_draft_texts(self, decided_before_ms: int) -> int:
        """Retention: the texts of drafts decided (or expired) before the cut-off."""
        return await self._exec(
            "UPDATE drafts SET texts = %s, approved_text = NULL WHERE status <> 'pending'"
            " AND decided_ms < %s AND (length(texts) > 0 OR approved_text IS NOT NULL)",
            (b"", decided_before_ms),
        )
