"""Retries and fallback: the one place that decides to try again (tenacity).

Usage::

    router = Router(routes, settings.retry)
    result = await router.complete("support-default", body, deadline=loop_time + 60)
    opened = await router.open_stream(
        "support-default", body, deadline=..., first_chunk_timeout_s=30
    )

Deployments of a route are tried in order. On one deployment, transient failures
(timeouts, resets, 408, 429, 5xx, malformed answers) are retried up to
``retry.attempts`` tries in all, waiting the provider's ``Retry-After`` (capped by
``retry.max_retry_after_s``: a longer wait falls back at once) or a short
exponential backoff, never past the request's deadline. Then the next deployment.
The provider's own 4xx (other than 408/429) is the client's to see and ends the
call. A stream is only handed on once its first chunk has arrived, so there is
never a retry after the first byte.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from gateway.errors import (
    Unavailable,
    UpstreamFailed,
    UpstreamStatusError,
    UpstreamTimeout,
    sanitise_upstream_message,
)
from gateway.providers.base import AttemptError, Deployment, Provider, UpstreamStream
from gateway.providers.breaker import CircuitBreaker
from gateway.settings import RetryConfig

__all__ = ["AttemptObserver", "Router", "Served", "ServedStream"]


class AttemptHandle(Protocol):
    def succeeded(self, reply: dict[str, Any] | None) -> None: ...
    def failed(self, error: AttemptError) -> None: ...


AttemptObserver = Callable[[Deployment, int], AttemptHandle]


class _NoHandle:
    def succeeded(self, reply: dict[str, Any] | None) -> None:
        pass

    def failed(self, error: AttemptError) -> None:
        pass


_NO_HANDLE = _NoHandle()


def _no_observer(dep: Deployment, attempt: int) -> AttemptHandle:
    return _NO_HANDLE


@dataclass
class Served:
    reply: dict[str, Any]
    deployment: Deployment
    attempts: list[dict[str, Any]]
    provider_s: float


@dataclass
class ServedStream:
    stream: UpstreamStream
    first: dict[str, Any]
    deployment: Deployment
    attempts: list[dict[str, Any]]
    ttfc_s: float
    opened_at: float = field(default_factory=time.monotonic)


class _DeadlineReached(Exception):
    pass


class Router:
    def __init__(
        self,
        routes: dict[str, list[Deployment]],
        retry: RetryConfig,
        providers: dict[str, Provider],
        *,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.breaker = breaker or CircuitBreaker(failures=0, cooldown_s=0)
        self.routes = routes
        self.retry = retry
        self.providers = providers
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s

    def _candidates(self, route: str, removed_models: frozenset[str]) -> list[Deployment]:
        deployments = [d for d in self.routes[route] if d.model not in removed_models]
        if not deployments:
            names = ", ".join(f"model:{d.model}" for d in self.routes[route])
            raise Unavailable(
                f"Every deployment of route {route!r} is switched off ({names})",
                code="kill_switch_engaged",
            )
        return deployments

    def _delay(self, exc: BaseException | None, attempt: int) -> float:
        """The wait after failed try number ``attempt``: Retry-After, else backoff."""
        if isinstance(exc, AttemptError) and exc.retry_after is not None:
            return float(exc.retry_after)
        backoff: float = self.backoff_base_s * 2.0 ** (attempt - 1)
        jitter: float = 0.5 + random.random() / 2  # noqa: S311 - not for security
        return min(self.backoff_max_s, backoff) * jitter

    def _stopping(self, exc: BaseException | None, attempt: int, deadline: float) -> bool:
        """No further try on this deployment after failed try number ``attempt``."""
        if attempt >= self.retry.attempts:
            return True
        if isinstance(exc, AttemptError) and exc.retry_after is not None:
            if exc.retry_after > self.retry.max_retry_after_s:
                return True  # the provider asks for longer than we wait: fall back
        return deadline - time.monotonic() <= self._delay(exc, attempt)

    def _retrying(self, deadline: float) -> AsyncRetrying:
        """Tenacity for the tries after the first (its numbering starts again at 1)."""

        def outcome(state: RetryCallState) -> BaseException | None:
            return state.outcome.exception() if state.outcome else None

        return AsyncRetrying(
            stop=lambda s: self._stopping(outcome(s), s.attempt_number + 1, deadline),
            wait=lambda s: self._delay(outcome(s), s.attempt_number + 1),
            retry=retry_if_exception(lambda e: isinstance(e, AttemptError) and e.transient),
            reraise=True,
            sleep=asyncio.sleep,
        )

    async def _run(
        self,
        route: str,
        removed_models: frozenset[str],
        deadline: float,
        observer: AttemptObserver,
        call: Callable[[Deployment, float], Any],
    ) -> tuple[Any, Deployment, list[dict[str, Any]]]:
        attempts: list[dict[str, Any]] = []
        errors: list[AttemptError] = []
        skipped = 0
        for dep in self._candidates(route, removed_models):
            if not self.breaker.allow(dep.model):
                skipped += 1
                attempts.append(
                    {
                        "deployment": dep.model,
                        "attempt": 0,
                        "duration_ms": 0,
                        "outcome": "circuit_open",
                    }
                )
                continue
            counter = 0

            async def one_try(dep: Deployment = dep) -> Any:
                nonlocal counter
                counter += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _DeadlineReached
                timeout = min(dep.timeout_s, remaining)
                handle = observer(dep, counter)
                started = time.monotonic()
                try:
                    result = await call(dep, timeout)
                except AttemptError as exc:
                    handle.failed(exc)
                    attempts.append(_attempt(dep, counter, started, exc))
                    if exc.transient:
                        self.breaker.failure(dep.model)
                    else:
                        self.breaker.release_probe(dep.model)
                    raise
                self.breaker.success(dep.model)
                handle.succeeded(result[1] if isinstance(result, tuple) else result)
                attempts.append(_attempt(dep, counter, started, None))
                return result

            try:
                try:
                    # The first try goes without tenacity: its per-call set-up costs tens of
                    # microseconds, and most calls need no retry at all.
                    result: Any = await one_try()
                except AttemptError as first:
                    if not first.transient or self._stopping(first, 1, deadline):
                        raise
                    await asyncio.sleep(self._delay(first, 1))
                    result = await self._retrying(deadline)(one_try)
            except _DeadlineReached:
                break
            except AttemptError as exc:
                errors.append(exc)
                if not exc.falls_back:
                    raise UpstreamStatusError(
                        sanitise_upstream_message(exc.message),
                        status=exc.status or 502,
                        code=exc.code or "upstream_error",
                        attempts=attempts,
                    ) from None
                continue
            return result, dep, attempts
        timed_out = time.monotonic() >= deadline or (errors and errors[-1].kind == "timeout")
        tried = len({a["deployment"] for a in attempts if a["outcome"] != "circuit_open"})
        if timed_out:
            raise UpstreamTimeout(
                f"Route {route!r}: no deployment answered within the deadline "
                f"({len(attempts)} attempt(s) on {tried} deployment(s))",
                attempts=attempts,
            )
        if skipped and not errors:
            raise UpstreamFailed(
                f"Route {route!r}: every deployment's circuit is open after repeated "
                "failures; they are probed again after the cool-down",
                attempts=attempts,
            )
        last = errors[-1].error_type if errors else "none"
        raise UpstreamFailed(
            f"Route {route!r}: every deployment failed ({len(attempts)} attempt(s) on "
            f"{tried} deployment(s); last error: {last})",
            attempts=attempts,
        )

    async def complete(
        self,
        route: str,
        body: dict[str, Any],
        *,
        deadline: float,
        removed_models: frozenset[str] = frozenset(),
        observer: AttemptObserver = _no_observer,
    ) -> Served:
        started = time.monotonic()

        async def call(dep: Deployment, limit_s: float) -> dict[str, Any]:
            return await self.providers[dep.via].complete(dep, body, timeout_s=limit_s)

        reply, dep, attempts = await self._run(route, removed_models, deadline, observer, call)
        return Served(reply, dep, attempts, time.monotonic() - started)

    async def open_stream(
        self,
        route: str,
        body: dict[str, Any],
        *,
        deadline: float,
        first_chunk_timeout_s: float,
        removed_models: frozenset[str] = frozenset(),
        observer: AttemptObserver = _no_observer,
    ) -> ServedStream:
        started = time.monotonic()

        async def call(dep: Deployment, limit_s: float) -> tuple[UpstreamStream, dict[str, Any]]:
            limit = min(limit_s, first_chunk_timeout_s)
            try:
                async with asyncio.timeout(limit):
                    stream = await self.providers[dep.via].open_stream(dep, body, timeout_s=limit)
                    try:
                        first = await stream.__anext__()
                    except StopAsyncIteration:
                        await stream.aclose()
                        raise AttemptError("malformed", "The provider's stream was empty") from None
                    except BaseException:
                        await stream.aclose()
                        raise
            except TimeoutError:
                raise AttemptError("timeout", f"No first chunk within {limit:g}s") from None
            return stream, first

        (stream, first), dep, attempts = await self._run(
            route, removed_models, deadline, observer, call
        )
        return ServedStream(stream, first, dep, attempts, time.monotonic() - started)


def _attempt(dep: Deployment, n: int, started: float, error: AttemptError | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "deployment": dep.model,
        "attempt": n,
        "duration_ms": int((time.monotonic() - started) * 1000),
        "outcome": "ok" if error is None else error.error_type,
    }
    return out


def deployments_of(routes: dict[str, list[Deployment]]) -> dict[str, Sequence[str]]:
    return {name: [d.model for d in deps] for name, deps in routes.items()}
