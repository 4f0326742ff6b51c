"""SQLite counters for rate limits and budgets (shared by the workers of one machine)."""

from __future__ import annotations

import sqlite3

from gateway.stores.base import StateUnavailable

__all__ = ["SqliteCounters"]


class SqliteCounters:
    @property
    def db(self) -> sqlite3.Connection:  # provided by the host class (SqliteStore.db)
        raise RuntimeError("SqliteCounters is a mixin of SqliteStore")

    async def take_counter(self, key: str, window: int, amount: int, limit: int) -> int | None:
        """Add ``amount`` unless the total would pass ``limit``; the new total, or None."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT value FROM budget_counters WHERE key = ? AND window_start = ?",
                    (key, window),
                ).fetchone()
                current = int(row[0]) if row else 0
                if current + amount > limit:
                    db.execute("COMMIT")
                    return None
                db.execute(
                    "INSERT INTO budget_counters (key, window_start, value) VALUES (?, ?, ?)"
                    " ON CONFLICT (key, window_start) DO UPDATE SET value = value + excluded.value",
                    (key, window, amount),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StateUnavailable(f"Budget counters unavailable: {exc}") from None
        return current + amount

    async def add_counter(self, key: str, window: int, amount: int) -> None:
        try:
            self.db.execute(
                "INSERT INTO budget_counters (key, window_start, value) VALUES (?, ?, ?)"
                " ON CONFLICT (key, window_start) DO UPDATE SET value = value + excluded.value",
                (key, window, amount),
            )
        except sqlite3.Error as exc:
            raise StateUnavailable(f"Budget counters unavailable: {exc}") from None

    async def sweep_counters(self, before_window: int) -> int:
        cur = self.db.execute(
            "DELETE FROM budget_counters WHERE window_start < ?", (before_window,)
        )
        return cur.rowcount
