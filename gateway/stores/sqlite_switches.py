"""SQLite storage of kill switches and the control state (a mixin of `SqliteStore`).

Usage::

    version = await store.engage_switch(SwitchRow("global", "halt", "incident 7", "ann", now))
    state = await store.read_control()          # version + switches, one snapshot

A flip and the bump of the control-state version are one ``BEGIN IMMEDIATE``
transaction, so a worker that reads the version also reads what it stands for. Worker
processes on one machine notice a new version by polling it (gateway/fanout.py).
"""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

import orjson

from gateway.stores.base import Activation, ControlState, StateUnavailable, SwitchAck, SwitchRow

__all__ = ["SqliteSwitches"]

_BUMP = "UPDATE control_state SET value = value + 1 WHERE name = 'version' RETURNING value"


class SqliteSwitches:
    @property
    def db(self) -> sqlite3.Connection:
        raise NotImplementedError  # provided by SqliteStore

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Run *statements* in one immediate transaction; the last row of each."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = [db.execute(sql, args).fetchone() for sql, args in statements]
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StateUnavailable(f"The switch state could not be written: {exc}") from None
        return rows

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StateUnavailable(f"The switch state could not be read: {exc}") from None

    async def installation_id(self) -> str:
        self._write(
            [
                (
                    "INSERT INTO control_state (name, value) VALUES ('installation', ?)"
                    " ON CONFLICT DO NOTHING",
                    (secrets.randbits(62) + 1,),
                )
            ]
        )
        rows = self._read("SELECT value FROM control_state WHERE name = 'installation'")
        return f"{int(rows[0][0]):x}"

    async def control_version(self) -> int:
        rows = self._read("SELECT value FROM control_state WHERE name = 'version'")
        return int(rows[0][0])

    async def read_control(self) -> ControlState:
        # one statement: one snapshot of the version and the switches it stands for
        rows = self._read(
            "SELECT c.value, k.scope, k.mode, k.reason, k.engaged_by, k.engaged_ms"
            " FROM control_state c LEFT JOIN kill_switches k ON 1 = 1"
            " WHERE c.name = 'version' ORDER BY k.engaged_ms, k.scope"
        )
        switches = tuple(SwitchRow(r[1], r[2], r[3], r[4], int(r[5])) for r in rows if r[1])
        return ControlState(int(rows[0][0]), switches)

    async def engage_switch(self, row: SwitchRow) -> int:
        rows = self._write(
            [
                (
                    "INSERT INTO kill_switches (scope, mode, reason, engaged_by, engaged_ms)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope) DO UPDATE SET"
                    " mode = excluded.mode, reason = excluded.reason,"
                    " engaged_by = excluded.engaged_by, engaged_ms = excluded.engaged_ms",
                    (row.scope, row.mode, row.reason, row.engaged_by, row.engaged_ms),
                ),
                (_BUMP, ()),
            ]
        )
        return int(rows[-1][0])

    async def release_switch(self, scope: str) -> int | None:
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute("DELETE FROM kill_switches WHERE scope = ?", (scope,))
                if cur.rowcount != 1:
                    db.execute("ROLLBACK")
                    return None
                version = int(db.execute(_BUMP).fetchone()[0])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StateUnavailable(f"The switch state could not be written: {exc}") from None
        return version

    async def activate_policy(self, activation: Activation) -> int:
        a = activation
        rows = self._write(
            [
                (
                    "INSERT INTO policy_activations (version, mode, at_ms, actor, reason)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (a.version, a.mode, a.at_ms, a.by, a.reason),
                ),
                (_BUMP, ()),
            ]
        )
        return int(rows[-1][0])

    async def acknowledge(self, ack: SwitchAck) -> None:
        try:
            self.db.execute(
                "INSERT INTO switch_acks (replica, worker, version, at_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (replica, worker) DO UPDATE SET"
                " version = excluded.version, at_ms = excluded.at_ms",
                (ack.replica, ack.worker, ack.version, ack.at_ms),
            )
        except sqlite3.Error as exc:
            raise StateUnavailable(f"The acknowledgement could not be written: {exc}") from None

    async def acknowledgements(self, since_ms: int) -> list[SwitchAck]:
        rows = self._read(
            "SELECT replica, worker, version, at_ms FROM switch_acks WHERE at_ms >= ?"
            " ORDER BY replica, worker",
            (since_ms,),
        )
        return [SwitchAck(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    async def forget_worker(self, replica: str, worker: str) -> None:
        try:
            self.db.execute(
                "DELETE FROM switch_acks WHERE replica = ? AND worker = ?", (replica, worker)
            )
        except sqlite3.Error as exc:
            raise StateUnavailable(f"The acknowledgement could not be removed: {exc}") from None

    async def ended_events(self, from_at: str, to_at: str) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT event FROM lineage_events WHERE type = 'request.ended'"
            " AND at >= ? AND at < ? ORDER BY at, chain, seq",
            (from_at, to_at),
        )
        return [orjson.loads(r[0]) for r in rows]
