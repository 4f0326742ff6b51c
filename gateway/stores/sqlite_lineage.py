"""SQLite side of lineage beyond the append path (a mixin of ``SqliteStore``).

Usage::

    await store.register_writer(chain, host, pid, now_ms)     # then heartbeat_writer(...)
    rows = await store.query_records(RecordQuery(case_id="C-1"))
    ok = await store.append_interrupted([event], lineage_id)  # False: someone else did

``append_interrupted`` is the recovery's compare-and-set: the ``interrupted`` end event
lands only together with ``UPDATE lineage_records ... WHERE ended IS NULL``, so two
recovering workers never both finish one record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.stores.base import (
    RecordIndex,
    RecordQuery,
    RecordRow,
    StateUnavailable,
    WriterRow,
)

__all__ = ["SqliteLineage"]

_RECORD = (
    "SELECT lineage_id, client, case_id, customer_hash, use_case, started_ms, ended,"
    " decision, chain FROM lineage_records"
)


def record_where(q: RecordQuery, mark: str) -> tuple[str, list[Any]]:
    """The WHERE clause of a record query, for either dialect (``?`` or ``%s``)."""
    where: list[str] = []
    args: list[Any] = []
    if q.case_id is not None:
        where.append(f"case_id = {mark}")
        args.append(q.case_id)
    if q.customer_hashes:
        where.append(f"customer_hash IN ({', '.join([mark] * len(q.customer_hashes))})")
        args.extend(q.customer_hashes)
    if q.from_ms is not None:
        where.append(f"started_ms >= {mark}")
        args.append(q.from_ms)
    if q.to_ms is not None:
        where.append(f"started_ms < {mark}")
        args.append(q.to_ms)
    if q.use_case is not None:
        where.append(f"use_case = {mark}")
        args.append(q.use_case)
    if q.decision is not None:
        where.append(f"decision = {mark}")
        args.append(q.decision)
    if q.after is not None:
        where.append(f"(started_ms > {mark} OR (started_ms = {mark} AND lineage_id > {mark}))")
        args.extend([q.after[0], q.after[0], q.after[1]])
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    return clause + f" ORDER BY started_ms, lineage_id LIMIT {mark}", [*args, q.limit]


class SqliteLineage:
    @property
    def db(self) -> sqlite3.Connection:
        raise NotImplementedError  # provided by SqliteStore

    def _run(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StateUnavailable(f"The SQLite state store failed: {exc}") from None

    # -- writers ---------------------------------------------------------------
    async def register_writer(self, chain: str, host: str, pid: int, now_ms: int) -> None:
        self._run(
            "INSERT INTO lineage_writers VALUES (?, ?, ?, ?, ?, NULL, 0, ?)",
            (chain, host, pid, now_ms, now_ms, "0" * 64),
        )

    async def heartbeat_writer(
        self, chain: str, now_ms: int, head: tuple[int, str], *, close: bool = False
    ) -> None:
        if close:
            self._run(
                "UPDATE lineage_writers SET heartbeat_ms = ?, head_seq = ?, head_hash = ?,"
                " closed_ms = COALESCE(closed_ms, ?) WHERE chain = ?",
                (now_ms, head[0], head[1], now_ms, chain),
            )
        else:
            self._run(
                "UPDATE lineage_writers SET heartbeat_ms = ?, head_seq = ?, head_hash = ?"
                " WHERE chain = ? AND closed_ms IS NULL",
                (now_ms, head[0], head[1], chain),
            )

    async def writers(self) -> list[WriterRow]:
        rows = self._run(
            "SELECT chain, host, pid, started_ms, heartbeat_ms, closed_ms, head_seq, head_hash"
            " FROM lineage_writers ORDER BY started_ms, chain"
        ).fetchall()
        return [WriterRow(*r) for r in rows]

    async def chain_head(self, chain: str) -> tuple[int, str] | None:
        row = self._run(
            "SELECT seq, event FROM lineage_events WHERE chain = ? ORDER BY seq DESC LIMIT 1",
            (chain,),
        ).fetchone()
        return None if row is None else (int(row[0]), orjson.loads(row[1])["hash"])

    async def orphaned_records(self, stale_before_ms: int, *, limit: int) -> list[RecordIndex]:
        rows = self._run(
            "SELECT r.lineage_id, r.client, r.case_id, r.customer_hash, r.use_case,"
            " r.started_ms, r.chain FROM lineage_records r"
            " LEFT JOIN lineage_writers w ON w.chain = r.chain"
            " WHERE r.ended IS NULL AND ("
            "  (w.chain IS NULL AND r.started_ms < ?)"
            "  OR w.closed_ms IS NOT NULL OR w.heartbeat_ms < ?)"
            " ORDER BY r.started_ms LIMIT ?",
            (stale_before_ms, stale_before_ms, limit),
        ).fetchall()
        return [RecordIndex(*r) for r in rows]

    async def append_interrupted(self, events: Sequence[dict[str, Any]], lineage_id: str) -> bool:
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "UPDATE lineage_records SET ended = 'interrupted'"
                    " WHERE lineage_id = ? AND ended IS NULL",
                    (lineage_id,),
                )
                if cur.rowcount != 1:
                    db.execute("ROLLBACK")
                    return False
                db.executemany(
                    "INSERT INTO lineage_events (chain, seq, lineage_id, type, at, event)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
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
                db.execute("COMMIT")
                return True
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StateUnavailable(f"Lineage could not be written: {exc}") from None

    # -- checkpoints -----------------------------------------------------------
    async def put_checkpoint(self, checkpoint: dict[str, Any], *, writer: str, at_ms: int) -> None:
        self._run(
            "INSERT INTO lineage_checkpoints (at, at_ms, writer, checkpoint) VALUES (?, ?, ?, ?)",
            (checkpoint["at"], at_ms, writer, orjson.dumps(checkpoint).decode()),
        )

    async def checkpoints(
        self, from_ms: int | None = None, to_ms: int | None = None
    ) -> list[dict[str, Any]]:
        rows = self._run(
            "SELECT checkpoint FROM lineage_checkpoints WHERE at_ms >= ? AND at_ms < ?"
            " ORDER BY at_ms, id",
            (from_ms if from_ms is not None else -(2**62), to_ms if to_ms is not None else 2**62),
        ).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    async def put_public_key(self, kid: str, jwk: dict[str, Any], now_ms: int) -> None:
        self._run(
            "INSERT INTO lineage_public_keys VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (kid, orjson.dumps(jwk).decode(), now_ms),
        )

    async def public_keys(self) -> list[dict[str, Any]]:
        rows = self._run("SELECT jwk FROM lineage_public_keys ORDER BY first_ms, kid").fetchall()
        return [orjson.loads(r[0]) for r in rows]

    # -- queries ---------------------------------------------------------------
    async def query_records(self, query: RecordQuery) -> list[RecordRow]:
        clause, args = record_where(query, "?")
        rows = self._run(_RECORD + clause, args).fetchall()
        return [RecordRow(*r) for r in rows]

    async def events_for_many(self, lineage_ids: Sequence[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        ids = list(lineage_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ", ".join("?" * len(part))
            sql = f"SELECT event FROM lineage_events WHERE lineage_id IN ({marks})"  # noqa: S608
            rows = self._run(sql + " ORDER BY at, chain, seq", part).fetchall()
            out.extend(orjson.loads(r[0]) for r in rows)
        return out

    async def chain_events(self, chains: Sequence[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for chain in chains:
            rows = self._run(
                "SELECT event FROM lineage_events WHERE chain = ? ORDER BY seq", (chain,)
            ).fetchall()
            out.extend(orjson.loads(r[0]) for r in rows)
        return out

    async def chains_between(self, from_at: str, to_at: str) -> list[str]:
        rows = self._run(
            "SELECT DISTINCT chain FROM lineage_events WHERE at >= ? AND at < ? ORDER BY chain",
            (from_at, to_at),
        ).fetchall()
        return [r[0] for r in rows]

    # -- outcomes --------------------------------------------------------------
    async def put_outcome(
        self, lineage_id: str, client: str, kind: str, handle_time_s: int | None, at_ms: int
    ) -> bool:
        cur = self._run(
            "INSERT INTO lineage_outcomes VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (lineage_id, client, kind, handle_time_s, at_ms),
        )
        return cur.rowcount == 1

    async def delete_outcome(self, lineage_id: str) -> None:
        self._run("DELETE FROM lineage_outcomes WHERE lineage_id = ?", (lineage_id,))

    # -- personal data ---------------------------------------------------------
    async def erase_vault(self, case_key: str) -> int:
        return self._run("DELETE FROM pseudonym_vaults WHERE case_key = ?", (case_key,)).rowcount

    async def sweep_vaults(self, now_ms: int) -> int:
        return self._run("DELETE FROM pseudonym_vaults WHERE expires_ms <= ?", (now_ms,)).rowcount

    async def sweep_draft_texts(self, decided_before_ms: int) -> int:
        """Retention: the texts of drafts decided (or expired) before the cut-off."""
        return self._run(
            "UPDATE drafts SET texts = ?, approved_text = NULL WHERE status <> 'pending'"
            " AND decided_ms < ? AND (length(texts) > 0 OR approved_text IS NOT NULL)",
            (b"", decided_before_ms),
        ).rowcount
