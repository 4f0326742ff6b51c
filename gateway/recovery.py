"""The lineage writer's life cycle: heartbeat, recovery, checkpoints, retention.

Usage::

    service = LineageService(store, writer, keys, LineageTiming.from_env(os.environ))
    await service.start(background)     # registers the chain, starts the loops
    ...
    await service.close()               # a last checkpoint; the chain is closed

Chains belong to processes (one per worker), and several workers and replicas share
the store, so a record is only ever finished by recovery when its chain's writer is
gone: its heartbeat is older than ``stale_ms`` or it closed. A start without an end on
such a chain gets a ``request.ended`` event with ``end: "interrupted"``, written on the
*recovering* process's chain; the compare-and-set on ``lineage_records.ended`` makes
sure that two recovering workers never both write it. Recovery runs at start and then
every ``stale_ms / 2``.

Environment (for tests and tuning): ``CASEGATE_LINEAGE_STALE_MS`` (15000),
``CASEGATE_HEARTBEAT_MS`` (a third of the stale time, at least 100), ``CASEGATE_CHECKPOINT_S`` (10),
``CASEGATE_RETENTION_SWEEP_S`` (60: deletes expired pseudonym maps, and erases the
texts of drafts decided more than ``CASEGATE_DRAFT_TEXT_RETENTION_S`` ago, default 30
days).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.checkpoints import write_checkpoint
from gateway.keys import KeyMaterial
from gateway.lineage import LineageWriter, now_ms
from gateway.settings import ConfigError
from gateway.stores import StateStore

if TYPE_CHECKING:
    from gateway.runtime import Runtime

__all__ = ["LineageService", "LineageTiming", "start_lineage_service"]

log = logging.getLogger("casegate.lineage")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment: {name} must be an integer, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"environment: {name} must be positive, not {value}")
    return value


@dataclass(frozen=True)
class LineageTiming:
    stale_ms: int = 15_000
    heartbeat_ms: int = 5_000
    checkpoint_ms: int = 10_000
    sweep_ms: int = 60_000
    draft_text_retention_ms: int = 30 * 86_400_000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LineageTiming:
        stale = _int(env, "CASEGATE_LINEAGE_STALE_MS", 15_000)
        return cls(
            stale_ms=stale,
            heartbeat_ms=_int(env, "CASEGATE_HEARTBEAT_MS", max(100, stale // 3)),
            checkpoint_ms=_int(env, "CASEGATE_CHECKPOINT_S", 10) * 1000,
            sweep_ms=_int(env, "CASEGATE_RETENTION_SWEEP_S", 60) * 1000,
            draft_text_retention_ms=_int(env, "CASEGATE_DRAFT_TEXT_RETENTION_S", 30 * 86400) * 1000,
        )


class LineageService:
    def __init__(
        self,
        store: StateStore,
        writer: LineageWriter,
        keys: KeyMaterial,
        timing: LineageTiming,
    ) -> None:
        self.store = store
        self.writer = writer
        self.keys = keys
        self.timing = timing
        self._closed = False

    async def start(self, background: list[asyncio.Task[Any]]) -> None:
        now = now_ms()
        await self.store.register_writer(
            self.writer.chain_id, socket.gethostname(), os.getpid(), now
        )
        for jwk in self.keys.public_jwks()["keys"]:
            await self.store.put_public_key(jwk["kid"], jwk, now)
        t = self.timing
        for name, period_ms, job in (
            ("heartbeat", t.heartbeat_ms, self.heartbeat),
            ("recovery", max(100, t.stale_ms // 2), self.recover),
            ("checkpoint", t.checkpoint_ms, self.checkpoint),
            ("retention", t.sweep_ms, self.sweep),
        ):
            background.append(
                asyncio.create_task(_every(period_ms, job, name), name=f"lineage-{name}")
            )

    async def heartbeat(self) -> None:
        head = await self.writer.committed_head()
        await self.store.heartbeat_writer(self.writer.chain_id, now_ms(), head)

    async def checkpoint(self) -> None:
        await write_checkpoint(self.store, self.writer, self.keys)

    async def sweep(self) -> None:
        now = now_ms()
        removed = await self.store.sweep_vaults(now)
        erased = await self.store.sweep_draft_texts(now - self.timing.draft_text_retention_ms)
        if removed or erased:
            log.info(
                "retention: %d expired pseudonym map(s) deleted, %d draft text(s) erased",
                removed,
                erased,
            )

    async def recover(self) -> int:
        """Finish the records of dead chains as ``interrupted``; close those chains."""
        now = now_ms()
        cutoff = now - self.timing.stale_ms
        done = 0
        while True:
            orphans = await self.store.orphaned_records(cutoff, limit=200)
            orphans = [o for o in orphans if o.chain != self.writer.chain_id]
            if not orphans:
                break
            for rec in orphans:
                event = await self.writer.interrupt(
                    rec,
                    {
                        "end": "interrupted",
                        "decision": None,
                        "refusal": None,
                        "writer": rec.chain,
                        "reason": "the writing process stopped before the record ended",
                    },
                )
                done += event is not None
            if len(orphans) < 200:
                break
        for row in await self.store.writers():
            if row.chain == self.writer.chain_id or row.closed_ms is not None:
                continue
            if row.heartbeat_ms < cutoff:
                head = await self.store.chain_head(row.chain) or (0, "0" * 64)
                await self.store.heartbeat_writer(row.chain, now, head, close=True)
        if done:
            log.warning("lineage recovery: %d record(s) marked interrupted", done)
        return done

    async def close(self) -> None:
        """At shutdown: a last checkpoint over this chain's final head, then close it."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self.checkpoint()
        with contextlib.suppress(Exception):
            head = await self.writer.committed_head()
            await self.store.heartbeat_writer(self.writer.chain_id, now_ms(), head, close=True)


async def _every(period_ms: int, job: Callable[[], Awaitable[Any]], name: str) -> None:
    """Run ``job`` now and then every ``period_ms``; a failure is logged, never fatal."""
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("lineage %s failed: %s", name, exc.__class__.__name__)
        await asyncio.sleep(period_ms / 1000)


async def start_lineage_service(rt: Runtime, env: Mapping[str, str]) -> LineageService:
    """Register this worker's chain and start its loops; closed by ``rt.stop()``."""
    service = LineageService(rt.store, rt.lineage, rt.keys, LineageTiming.from_env(env))
    await service.start(rt.background)
    rt.closers.append(service.close)
    return service
