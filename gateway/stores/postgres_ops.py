"""PostgreSQL reads for operations: tripwire window counts and the draft queue's gauges.

Tripwire counts live in the ``budget_counters`` table of gateway/limits.py (key,
window, value), under keys of their own (``tripwire:...``), so no migration is needed.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["PostgresOps"]


class PostgresOps:
    # provided by the host class (PostgresStore._conn), which takes precedence
    def _conn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        raise RuntimeError("PostgresOps is a mixin of PostgresStore")

    async def counter_series(self, key: str, first: int, last: int) -> dict[int, int]:
        """``{window: value}`` of *key* for windows ``first..last`` (inclusive)."""
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT window_start, value FROM budget_counters"
                " WHERE key = %s AND window_start BETWEEN %s AND %s",
                (key, first, last),
            )
            rows = await cur.fetchall()
        return {int(w): int(v) for w, v in rows}

    async def draft_queue(self) -> tuple[int, int | None]:
        """``(pending drafts, created_ms of the oldest)``."""
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT COUNT(*), MIN(created_ms) FROM drafts WHERE status = 'pending'"
            )
            row = await cur.fetchone()
        return int(row[0]), (int(row[1]) if row[1] is not None else None)
