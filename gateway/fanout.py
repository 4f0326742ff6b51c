"""Tell every worker of every replica that the control state changed.

Usage::

    fanout = make_fanout(settings, store_kind="postgres", channel_id="1f3a...")
    task = asyncio.create_task(fanout.listen(wake))   # wake() on every notification
    await fanout.publish(version)                     # after the change has committed

A notification carries no state: it only wakes the switchboard, which re-reads the
state store (the truth). So a lost or duplicated message costs nothing but latency,
and the switchboard also polls the version on a timer as a backstop:

========================  ==========================  ==============
configuration             notification                poll interval
========================  ==========================  ==============
``redis:`` set            Redis pub/sub               0.5 s backstop
PostgreSQL, no Redis      LISTEN/NOTIFY               0.5 s backstop
SQLite (one machine)      none                        0.1 s
========================  ==========================  ==============

The channel is named after the installation id held in the state store, so
deployments (or test runs) sharing one Redis or one PostgreSQL database never wake
each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Fanout", "PollingFanout", "PostgresFanout", "RedisFanout", "make_fanout"]

log = logging.getLogger("casegate.fanout")

_BACKOFF_MAX_S = 2.0


class Fanout(Protocol):
    kind: str
    #: how often the switchboard polls the version besides listening
    poll_s: float

    async def publish(self, version: int) -> None: ...
    async def listen(self, wake: Callable[[], None]) -> None: ...
    async def close(self) -> None: ...


class PollingFanout:
    """One machine, SQLite: every worker polls the version (a ~20 µs indexed read)."""

    kind = "poll"

    def __init__(self, poll_s: float = 0.1) -> None:
        self.poll_s = poll_s

    async def publish(self, version: int) -> None:
        return None

    async def listen(self, wake: Callable[[], None]) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisFanout:
    kind = "redis"
    poll_s = 0.5

    def __init__(self, url: str, channel: str) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.channel = channel
        self._client: Any = aioredis.Redis.from_url(url, socket_connect_timeout=2)

    async def publish(self, version: int) -> None:
        try:
            async with asyncio.timeout(1.0):
                await self._client.publish(self.channel, str(version))
        except Exception as exc:  # the poll backstop still carries the change
            log.warning("redis publish failed (%s); replicas will poll", type(exc).__name__)

    async def listen(self, wake: Callable[[], None]) -> None:
        import redis.asyncio as aioredis

        backoff = 0.05
        while True:
            client: Any = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=2, health_check_interval=10
            )
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    if message.get("type") == "subscribe":
                        backoff = 0.05
                    wake()  # also on (re)subscribe: catch up on what was missed
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis subscription lost (%s); retrying", type(exc).__name__)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()


class PostgresFanout:
    kind = "postgres"
    poll_s = 0.5

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self._publisher: Any = None

    async def _connect(self) -> Any:
        import psycopg

        return await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5)

    async def publish(self, version: int) -> None:
        try:
            async with asyncio.timeout(1.0):
                if self._publisher is None or self._publisher.closed:
                    self._publisher = await self._connect()
                await self._publisher.execute(
                    "SELECT pg_notify(%s, %s)", (self.channel, str(version))
                )
        except Exception as exc:
            log.warning("pg_notify failed (%s); replicas will poll", type(exc).__name__)
            self._publisher = None

    async def listen(self, wake: Callable[[], None]) -> None:
        backoff = 0.05
        while True:
            conn: Any = None
            try:
                conn = await self._connect()
                await conn.execute(f'LISTEN "{self.channel}"')
                backoff = 0.05
                wake()  # catch up on what was missed while not listening
                async for _ in conn.notifies():
                    wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LISTEN connection lost (%s); retrying", type(exc).__name__)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def close(self) -> None:
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.close()


def make_fanout(redis_url: str | None, state_url: str, store_kind: str, channel_id: str) -> Fanout:
    if redis_url:
        return RedisFanout(redis_url, f"casegate:control:{channel_id}")
    if store_kind == "postgres":
        return PostgresFanout(state_url, f"casegate_control_{channel_id}")
    return PollingFanout()
