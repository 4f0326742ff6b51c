"""A circuit breaker per deployment: a dead provider is skipped quickly and probed back.

Usage::

    breaker = CircuitBreaker(failures=5, cooldown_s=10)
    if breaker.allow("openai/gpt-4o-mini"):      # closed, or the one half-open probe
        ... breaker.success(model) / breaker.failure(model)

After ``failures`` consecutive transient failures (timeouts, resets, 408/429/5xx,
malformed answers) the circuit opens and the router skips the deployment, falling
back at once instead of spending the deadline on it. After ``cooldown_s`` one call is
let through as a probe: success closes the circuit, failure opens it again. The state
is per worker process (each worker learns on its own; nothing to share or lose).
``failures=0`` disables the breaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CircuitBreaker"]


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    def __init__(
        self,
        *,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def state(self, key: str) -> str:
        c = self._circuits.get(key)
        if c is None or c.opened_at is None:
            return "closed"
        if c.probing or self.clock() - c.opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def allow(self, key: str) -> bool:
        if self.threshold <= 0:
            return True
        c = self._circuits.get(key)
        if c is None or c.opened_at is None:
            return True
        if c.probing:
            return False  # one probe at a time
        if self.clock() - c.opened_at >= self.cooldown_s:
            c.probing = True
            return True
        return False

    def success(self, key: str) -> None:
        self._circuits.pop(key, None)

    def failure(self, key: str) -> None:
        if self.threshold <= 0:
            return
        c = self._circuits.setdefault(key, _Circuit())
        c.failures += 1
        if c.probing or c.failures >= self.threshold:
            c.opened_at = self.clock()
            c.probing = False

    def release_probe(self, key: str) -> None:
        """The probe ended without a verdict on the provider (e.g. the client's own 4xx)."""
        c = self._circuits.get(key)
        if c is not None:
            c.probing = False
