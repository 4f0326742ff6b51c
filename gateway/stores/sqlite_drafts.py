"""SQLite storage of drafts (a mixin of :class:`gateway.stores.sqlite.SqliteStore`).

Usage::

    await store.put_draft(StoredDraft(...))
    ok = await store.decide_draft(draft_id, status="approved", ...)   # compare-and-set

A decision is one ``UPDATE ... WHERE status = 'pending'``: of two approvers (or an
approver and the expiry sweep) exactly one wins, on any number of workers.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from gateway.stores.base import StateUnavailable, StoredDraft

__all__ = ["SqliteDrafts"]

_COLUMNS = (
    "id, client, lineage_id, case_id, use_case, model, redactions, created_ms, expires_ms,"
    " status, texts, approved_text, release_token, decided_ms, decided_by, reason"
)
_SELECT = f"SELECT {_COLUMNS} FROM drafts"  # noqa: S608 - constant text, no input
_INSERT = f"INSERT INTO drafts ({_COLUMNS}) VALUES ({', '.join(['?'] * 16)})"  # noqa: S608


def _row(row: Any) -> StoredDraft:
    return StoredDraft(
        id=row[0],
        client=row[1],
        lineage_id=row[2],
        case_id=row[3],
        use_case=row[4],
        model=row[5],
        redactions=orjson.loads(row[6]),
        created_ms=int(row[7]),
        expires_ms=int(row[8]),
        status=row[9],
        texts=bytes(row[10]),
        approved_text=None if row[11] is None else bytes(row[11]),
        release_token=row[12],
        decided_ms=row[13],
        decided_by=row[14],
        reason=row[15],
    )


class SqliteDrafts:
    @property
    def db(self) -> sqlite3.Connection:
        raise NotImplementedError  # provided by SqliteStore

    async def put_draft(self, draft: StoredDraft) -> None:
        d = draft
        try:
            self.db.execute(
                _INSERT,
                (
                    d.id,
                    d.client,
                    d.lineage_id,
                    d.case_id,
                    d.use_case,
                    d.model,
                    orjson.dumps(d.redactions).decode(),
                    d.created_ms,
                    d.expires_ms,
                    d.status,
                    d.texts,
                    d.approved_text,
                    d.release_token,
                    d.decided_ms,
                    d.decided_by,
                    d.reason,
                ),
            )
        except sqlite3.Error as exc:
            raise StateUnavailable(f"The draft could not be stored: {exc}") from None

    async def get_draft(self, draft_id: str) -> StoredDraft | None:
        row = self.db.execute(_SELECT + " WHERE id = ?", (draft_id,)).fetchone()
        return _row(row) if row else None

    async def list_drafts(
        self, status: str, *, after: tuple[int, str] | None, limit: int
    ) -> list[StoredDraft]:
        created, last = after if after is not None else (-1, "")
        rows = self.db.execute(
            _SELECT + " WHERE status = ?"
            " AND (created_ms > ? OR (created_ms = ? AND id > ?))"
            " ORDER BY created_ms, id LIMIT ?",
            (status, created, created, last, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    async def due_drafts(self, now_ms: int, *, limit: int) -> list[StoredDraft]:
        rows = self.db.execute(
            _SELECT + " WHERE status = 'pending' AND expires_ms <= ?"
            " ORDER BY expires_ms, id LIMIT ?",
            (now_ms, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    async def decide_draft(
        self,
        draft_id: str,
        *,
        status: str,
        decided_ms: int,
        decided_by: str,
        reason: str | None = None,
        approved_text: bytes | None = None,
        release_token: str | None = None,
        unexpired_at_ms: int | None = None,
    ) -> bool:
        # `unexpired_at_ms`: decide only a draft that has not expired by then
        limit = -1 if unexpired_at_ms is None else unexpired_at_ms
        try:
            cur = self.db.execute(
                "UPDATE drafts SET status = ?, decided_ms = ?, decided_by = ?, reason = ?,"
                " approved_text = ?, release_token = ?"
                " WHERE id = ? AND status = 'pending' AND expires_ms > ?",
                (
                    status,
                    decided_ms,
                    decided_by,
                    reason,
                    approved_text,
                    release_token,
                    draft_id,
                    limit,
                ),
            )
        except sqlite3.Error as exc:
            raise StateUnavailable(f"The draft decision could not be stored: {exc}") from None
        return cur.rowcount == 1

    async def erase_draft_texts(self, case_id: str) -> int:
        try:
            cur = self.db.execute(
                "UPDATE drafts SET texts = ?, approved_text = NULL"
                " WHERE case_id = ? AND (length(texts) > 0 OR approved_text IS NOT NULL)",
                (b"", case_id),
            )
        except sqlite3.Error as exc:
            raise StateUnavailable(f"Draft texts could not be erased: {exc}") from None
        return cur.rowcount
