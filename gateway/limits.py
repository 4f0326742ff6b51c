"""Rate limits and hard token/spend budgets per client key and per use case.

Usage::

    limiter = Limiter(settings.budgets, counters, deployments)
    held = await limiter.reserve(client="helpdesk", use_case="triage", route="support-default",
                                 messages=upstream["messages"], max_tokens=800)   # RateLimited
    ...
    await limiter.settle(held, usage=reply["usage"], model=dep.model)

A budget is a cap that refuses, not an alert. Before a call goes upstream its cost is
bounded from above — input tokens at most UTF-8 bytes / 3 plus 4 per message (no
tokenizer download is possible, and a bound must never be an under-estimate), output
tokens at most the applied ``max_tokens`` (or ``budgets.default_max_output_tokens``),
priced at the most expensive deployment of the route — and that bound is reserved
against every applicable cap atomically; a reservation that would pass a cap is
refused with 429 ``budget_exhausted`` (``rate_limited`` for requests per minute) and a
``Retry-After`` to the end of the window. After the call the reservation is settled to
the usage the provider reported (released when nothing was used).

Counters live in Redis when ``redis:`` is configured (shared by every replica; one Lua
script per check-and-take), else in the state store (shared by the workers and, on
PostgreSQL, the replicas). Windows are fixed: the UTC minute and the UTC day. Spend is
counted in micro-units (integers), never floats.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from gateway.errors import RateLimited
from gateway.providers.base import Deployment
from gateway.settings import BudgetsConfig, ConfigError, LimitSpec

__all__ = ["Counters", "Limiter", "RedisCounters", "Reservation", "check_budgets"]

MICRO = 1_000_000


class Counters(Protocol):
    async def take_counter(self, key: str, window: int, amount: int, limit: int) -> int | None: ...
    async def add_counter(self, key: str, window: int, amount: int) -> None: ...


_TAKE = """
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if v == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if v > tonumber(ARGV[3]) then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return -1
end
return v
"""


class RedisCounters:
    """Counters in Redis: one atomic Lua check-and-take per cap."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(url)
        self._take: Any = self._redis.register_script(_TAKE)

    @staticmethod
    def _key(key: str, window: int) -> str:
        return f"casegate:budget:{key}:{window}"

    async def take_counter(self, key: str, window: int, amount: int, limit: int) -> int | None:
        from gateway.stores import StateUnavailable

        try:
            value = int(
                await self._take(keys=[self._key(key, window)], args=[amount, 172800, limit])
            )
        except Exception as exc:  # redis errors: fail closed
            raise StateUnavailable(
                f"Budget counters unavailable: {exc.__class__.__name__}"
            ) from None
        return None if value < 0 else value

    async def add_counter(self, key: str, window: int, amount: int) -> None:
        from gateway.stores import StateUnavailable

        try:
            await self._redis.incrby(self._key(key, window), amount)
        except Exception as exc:
            raise StateUnavailable(
                f"Budget counters unavailable: {exc.__class__.__name__}"
            ) from None

    async def close(self) -> None:
        await self._redis.aclose()


@dataclass
class Reservation:
    taken: list[tuple[str, int, int]] = field(default_factory=list)  # (key, window, amount)
    tokens: int = 0
    spend: int = 0
    token_keys: list[tuple[str, int]] = field(default_factory=list)
    spend_keys: list[tuple[str, int]] = field(default_factory=list)


def estimate_input_tokens(messages: Sequence[Any]) -> int:
    return sum(len(orjson.dumps(m)) // 3 + 4 for m in messages)


def check_budgets(
    cfg: BudgetsConfig,
    deployments: Mapping[str, Sequence[Deployment]],
    client_names: Sequence[str],
    use_cases: Sequence[str],
    *,
    source: str,
) -> None:
    for name in cfg.clients:
        if name not in client_names:
            raise ConfigError(f"{source}: budgets.clients.{name}: no such client")
    for name in cfg.use_cases:
        if name not in use_cases:
            raise ConfigError(f"{source}: budgets.use_cases.{name}: no such use case")
    if any(s.spend_per_day for s in [*cfg.clients.values(), *cfg.use_cases.values()]):
        for route, deps in deployments.items():
            for i, dep in enumerate(deps):
                if dep.model not in cfg.prices:
                    raise ConfigError(
                        f"{source}: budgets.prices: spend caps need a price for every "
                        f"deployment; routes.{route}[{i}] ({dep.model}) has none"
                    )


class Limiter:
    def __init__(
        self,
        cfg: BudgetsConfig,
        counters: Counters,
        deployments: Mapping[str, Sequence[Deployment]],
        *,
        clock: Any = time.time,
    ) -> None:
        self.cfg = cfg
        self.counters = counters
        self.clock = clock
        self.max_price: dict[str, tuple[int, int]] = {}
        for route, deps in deployments.items():
            prices = [cfg.prices[d.model] for d in deps if d.model in cfg.prices]
            self.max_price[route] = (
                max((int(p.input_per_1k * MICRO) for p in prices), default=0),
                max((int(p.output_per_1k * MICRO) for p in prices), default=0),
            )

    def specs(self, client: str, use_case: str) -> list[tuple[str, LimitSpec]]:
        out = []
        if client in self.cfg.clients:
            out.append((f"client:{client}", self.cfg.clients[client]))
        if use_case in self.cfg.use_cases:
            out.append((f"use_case:{use_case}", self.cfg.use_cases[use_case]))
        return out

    async def _take(
        self,
        held: Reservation,
        key: str,
        window: int,
        amount: int,
        limit: int,
        *,
        code: str,
        what: str,
        window_s: int,
        now: float,
    ) -> None:
        if await self.counters.take_counter(key, window, amount, limit) is None:
            await self.release(held)
            retry = max(1, int((window + 1) * window_s - now) + 1)
            raise RateLimited(
                f"{what} reached for {key.replace(':', ' ')}; try again in {retry}s",
                code=code,
                headers={"Retry-After": str(retry)},
            )
        held.taken.append((key, window, amount))

    async def reserve(
        self,
        *,
        client: str,
        use_case: str,
        route: str,
        messages: Sequence[Any],
        max_tokens: int | None,
    ) -> Reservation | None:
        specs = self.specs(client, use_case)
        if not specs:
            return None
        now = self.clock()
        minute, day = int(now // 60), int(now // 86400)
        held = Reservation()
        tokens_in = estimate_input_tokens(messages)
        tokens_out = max_tokens or self.cfg.default_max_output_tokens
        price_in, price_out = self.max_price.get(route, (0, 0))
        held.tokens = tokens_in + tokens_out
        held.spend = (tokens_in * price_in + tokens_out * price_out) // 1000
        for key, spec in specs:
            if spec.requests_per_minute:
                await self._take(
                    held,
                    f"{key}:rpm",
                    minute,
                    1,
                    spec.requests_per_minute,
                    code="rate_limited",
                    what="The request rate limit",
                    window_s=60,
                    now=now,
                )
            if spec.tokens_per_day:
                await self._take(
                    held,
                    f"{key}:tokens",
                    day,
                    held.tokens,
                    spec.tokens_per_day,
                    code="budget_exhausted",
                    what="The daily token budget",
                    window_s=86400,
                    now=now,
                )
                held.token_keys.append((f"{key}:tokens", day))
            if spec.spend_per_day:
                await self._take(
                    held,
                    f"{key}:spend",
                    day,
                    held.spend,
                    int(spec.spend_per_day * MICRO),
                    code="budget_exhausted",
                    what="The daily spend budget",
                    window_s=86400,
                    now=now,
                )
                held.spend_keys.append((f"{key}:spend", day))
        return held

    async def release(self, held: Reservation) -> None:
        for key, window, amount in held.taken:
            if not key.endswith(":rpm"):
                await self.counters.add_counter(key, window, -amount)
        held.taken.clear()

    async def settle(
        self, held: Reservation, *, usage: Mapping[str, Any] | None, model: str | None
    ) -> None:
        """Replace the estimate by what the provider reported; release it if nothing was."""
        if not usage:
            await self.release(held)
            return
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        price = self.cfg.prices.get(model or "")
        spend = 0
        if price is not None:
            spend = (
                prompt * int(price.input_per_1k * MICRO)
                + completion * int(price.output_per_1k * MICRO)
            ) // 1000
        for key, window in held.token_keys:
            await self.counters.add_counter(key, window, prompt + completion - held.tokens)
        for key, window in held.spend_keys:
            await self.counters.add_counter(key, window, spend - held.spend)
