"""PostgreSQL counters for rate limits and budgets (shared by every replica)."""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["PostgresCounters"]

_UPSERT = (
    "INSERT INTO budget_counters (key, window_start, value) VALUES (%s, %s, %s)"
    " ON CONFLICT (key, window_start) DO UPDATE SET value = budget_counters.value + excluded.value"
    " RETURNING value"
)


class PostgresCounters:
    # provided by the host class (PostgresStore._conn), which takes precedence
    def _conn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        raise RuntimeError("PostgresCounters is a mixin of PostgresStore")

    async def take_counter(self, key: str, window: int, amount: int, limit: int) -> int | None:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(_UPSERT, (key, window, amount))
            row = await cur.fetchone()
            total = int(row[0])
            if total > limit:
                # over the cap: undo within the same transaction (row lock held)
                await conn.execute(
                    "UPDATE budget_counters SET value = value - %s"
                    " WHERE key = %s AND window_start = %s",
                    (amount, key, window),
                )
                return None
            return total

    async def add_counter(self, key: str, window: int, amount: int) -> None:
        async with self._conn() as conn:
            await conn.execute(_UPSERT, (key, window, amount))

    async def sweep_counters(self, before_window: int) -> int:
        async with self._conn() as conn:
            cur = await conn.execute(
                "DELETE FROM budget_counters WHERE window_start < %s", (before_window,)
            )
            return int(cur.rowcount)
