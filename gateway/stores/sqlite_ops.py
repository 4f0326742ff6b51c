"""SQLite reads for operations: tripwire window counts and the draft queue's gauges.

Tripwire counts live in the ``budget_counters`` table of gateway/limits.py (key,
window, value), under keys of their own (``tripwire:...``), so no migration is needed.
"""

from __future__ import annotations

import sqlite3

from gateway.stores.base import StateUnavailable

__all__ = ["SqliteOps"]


class SqliteOps:
    @property
    def db(self) -> sqlite3.Connection:  # provided by the host class (SqliteStore.db)
        raise RuntimeError("SqliteOps is a mixin of SqliteStore")

    async def counter_series(self, key: str, first: int, last: int) -> dict[int, int]:
        """``{window: value}`` of *key* for windows ``first..last`` (inclusive)."""
        try:
            rows = self.db.execute(
                "SELECT window_start, value FROM budget_counters"
                " WHERE key = ? AND window_start BETWEEN ? AND ?",
                (key, first, last),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StateUnavailable(f"Counters unavailable: {exc}") from None
        return {int(w): int(v) for w, v in rows}

    async def draft_queue(self) -> tuple[int, int | None]:
        """``(pending drafts, created_ms of the oldest)``."""
        row = self.db.execute(
            "SELECT COUNT(*), MIN(created_ms) FROM drafts WHERE status = 'pending'"
        ).fetchone()
        return int(row[0]), (int(row[1]) if row[1] is not None else None)
