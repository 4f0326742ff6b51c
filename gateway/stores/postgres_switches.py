"""PostgreSQL storage of kill switches and the control state (a mixin of `PostgresStore`).

Usage::

    version = await store.engage_switch(SwitchRow("global", "halt", "incident 7", "ann", now))
    state = await store.read_control()          # version + switches, one snapshot

A flip and the bump of the control-state version are one transaction; the ``UPDATE``
of the counter row serialises concurrent flips, so versions are gapless and each one
stands for exactly one state. Replicas learn of a new version through Redis pub/sub or
LISTEN/NOTIFY (gateway/fanout.py) and re-read it here.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
import psycopg

from gateway.stores.base import Activation, ControlState, SwitchAck, SwitchRow

__all__ = ["PostgresSwitches"]

_BUMP = "UPDATE control_state SET value = value + 1 WHERE name = 'version' RETURNING value"


class PostgresSwitches:
    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        raise NotImplementedError  # provided by PostgresStore

    async def installation_id(self) -> str:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO control_state (name, value) VALUES ('installation', %s)"
                " ON CONFLICT DO NOTHING",
                (secrets.randbits(62) + 1,),
            )
            cur = await conn.execute("SELECT value FROM control_state WHERE name = 'installation'")
            row = await cur.fetchone()
        assert row is not None
        return f"{int(row[0]):x}"

    async def control_version(self) -> int:
        async with self._conn() as conn:
            cur = await conn.execute("SELECT value FROM control_state WHERE name = 'version'")
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def read_control(self) -> ControlState:
        # one statement: one snapshot of the version and the switches it stands for
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT c.value, k.scope, k.mode, k.reason, k.engaged_by, k.engaged_ms"
                " FROM control_state c LEFT JOIN kill_switches k ON TRUE"
                " WHERE c.name = 'version' ORDER BY k.engaged_ms, k.scope"
            )
            rows = await cur.fetchall()
        switches = tuple(SwitchRow(r[1], r[2], r[3], r[4], int(r[5])) for r in rows if r[1])
        return ControlState(int(rows[0][0]), switches)

    async def engage_switch(self, row: SwitchRow) -> int:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO kill_switches (scope, mode, reason, engaged_by, engaged_ms)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (scope) DO UPDATE SET"
                " mode = excluded.mode, reason = excluded.reason,"
                " engaged_by = excluded.engaged_by, engaged_ms = excluded.engaged_ms",
                (row.scope, row.mode, row.reason, row.engaged_by, row.engaged_ms),
            )
            cur = await conn.execute(_BUMP)
            bumped = await cur.fetchone()
        assert bumped is not None
        return int(bumped[0])

    async def release_switch(self, scope: str) -> int | None:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute("DELETE FROM kill_switches WHERE scope = %s", (scope,))
            if cur.rowcount != 1:
                return None
            cur = await conn.execute(_BUMP)
            bumped = await cur.fetchone()
        assert bumped is not None
        return int(bumped[0])

    async def activate_policy(self, activation: Activation) -> int:
        a = activation
        async with self._conn() as conn, conn.transaction():
            # bump first: the row lock orders concurrent activations by version
            cur = await conn.execute(_BUMP)
            bumped = await cur.fetchone()
            await conn.execute(
                "INSERT INTO policy_activations (version, mode, at_ms, actor, reason)"
                " VALUES (%s, %s, %s, %s, %s)",
                (a.version, a.mode, a.at_ms, a.by, a.reason),
            )
        assert bumped is not None
        return int(bumped[0])

    async def acknowledge(self, ack: SwitchAck) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO switch_acks (replica, worker, version, at_ms)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (replica, worker) DO UPDATE SET"
                " version = excluded.version, at_ms = excluded.at_ms",
                (ack.replica, ack.worker, ack.version, ack.at_ms),
            )

    async def acknowledgements(self, since_ms: int) -> list[SwitchAck]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT replica, worker, version, at_ms FROM switch_acks WHERE at_ms >= %s"
                " ORDER BY replica, worker",
                (since_ms,),
            )
            rows = await cur.fetchall()
        return [SwitchAck(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    async def forget_worker(self, replica: str, worker: str) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "DELETE FROM switch_acks WHERE replica = %s AND worker = %s", (replica, worker)
            )

    async def ended_events(self, from_at: str, to_at: str) -> list[dict[str, Any]]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT event FROM lineage_events WHERE type = 'request.ended'"
                " AND at >= %s AND at < %s ORDER BY at, chain, seq",
                (from_at, to_at),
            )
            rows = await cur.fetchall()
        return [orjson.loads(r[0]) for r in rows]
