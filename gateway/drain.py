"""Graceful shutdown of one worker: calls in flight end, cleanly, within the grace.

Usage::

    drain = current()                            # one per worker process
    uninstall = drain.install(grace_s(environ))  # lifespan start: hook the server's SIGTERM
    async with drain.bounded():                  # a provider wait that must not outlive
        reply = await router.complete(...)       #   the grace: GatewayError shutting_down
    drain.watch(timer); ...; drain.unwatch(timer)  # or fire an asyncio.timeout() at the cut,
    drain.check()                                #   then raise shutting_down if that was why
    drain.track(task)                            # a lineage write shutdown must wait for
    await drain.settle()                         # lifespan end, before the store closes

On SIGTERM uvicorn stops accepting connections, waits up to its
``timeout_graceful_shutdown`` (``CASEGATE_GRACE_S``) for the requests in flight, then
cancels what is left and runs the lifespan shutdown. A cancelled stream would just be
cut (no error frame) and a cancelled call dropped, so the drain ends them itself a
little before that moment (the *cut*, at ``grace - min(1 s, grace / 4)``): every wait
on a provider inside :meth:`Drain.bounded` raises a 503 ``shutting_down``, which the
pipeline sends as the stream's error frame or the call's error, and records as the
lineage end event. :meth:`Drain.settle` then makes the lifespan shutdown wait for the
end events still being written before the state store closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType, TracebackType
from typing import Any

from gateway.errors import GatewayError

__all__ = ["DEFAULT_GRACE_S", "Drain", "current", "grace_s", "shutting_down"]

log = logging.getLogger("casegate")

DEFAULT_GRACE_S = 20


def grace_s(environ: Mapping[str, str]) -> int:
    """``CASEGATE_GRACE_S``: seconds calls in flight get after SIGTERM (default 20)."""
    return int(environ.get("CASEGATE_GRACE_S", str(DEFAULT_GRACE_S)))


def shutting_down() -> GatewayError:
    # 503 without x-should-retry: false, so the OpenAI SDK retries on another replica.
    return GatewayError(
        "This gateway replica is shutting down; retry the call",
        code="shutting_down",
        status=503,
    )


class Drain:
    def __init__(self) -> None:
        #: True once the grace is (nearly) over: provider waits end with shutting_down
        self.cut = False
        self._armed = False
        self._scopes: set[asyncio.Timeout] = set()
        self._writes: set[asyncio.Future[Any]] = set()

    def install(self, grace: float) -> Callable[[], None]:
        """Chain onto the running server's SIGTERM handler; returns the undo.

        Only where a server (uvicorn) handles SIGTERM in this process's main thread;
        elsewhere (an in-process test client) it does nothing.
        """
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return lambda: None
        loop = asyncio.get_running_loop()

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(self._arm, loop, grace)
            previous(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)

        def uninstall() -> None:
            if signal.getsignal(signal.SIGTERM) is on_sigterm:
                signal.signal(signal.SIGTERM, previous)

        return uninstall

    def _arm(self, loop: asyncio.AbstractEventLoop, grace: float) -> None:
        if self._armed:
            return
        self._armed = True
        margin = min(1.0, grace / 4)
        loop.call_later(max(0.0, grace - margin), self._cut_now, loop)

    def _cut_now(self, loop: asyncio.AbstractEventLoop) -> None:
        self.cut = True
        if self._scopes:
            log.warning("grace period ending: %d provider wait(s) cut", len(self._scopes))
        now = loop.time()
        for scope in list(self._scopes):
            scope.reschedule(now)

    def check(self) -> None:
        """Raise the 503 ``shutting_down`` once the grace is (nearly) over."""
        if self.cut:
            raise shutting_down()

    def watch(self, timer: asyncio.Timeout) -> None:
        """Fire ``timer`` at the cut (then :meth:`check` tells why it fired), until
        :meth:`unwatch`. Plain calls: streams use them around every chunk."""
        self._scopes.add(timer)

    def unwatch(self, timer: asyncio.Timeout) -> None:
        self._scopes.discard(timer)

    def bounded(self, timeout_s: float | None = None) -> _Bounded:
        """``asyncio.timeout(timeout_s)`` that also expires at the cut (then 503)."""
        return _Bounded(self, timeout_s)

    def track(self, write: asyncio.Future[Any]) -> None:
        """A lineage write that the lifespan shutdown must wait for."""
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) for the tracked writes, e.g. of calls cancelled at the grace."""
        pending = set(self._writes)
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)


class _Bounded:
    """`Drain.bounded`'s context: a class, as an ``asynccontextmanager`` generator costs
    a provider call a few microseconds more."""

    __slots__ = ("_drain", "_timeout_s", "_timer")

    def __init__(self, drain: Drain, timeout_s: float | None) -> None:
        self._drain = drain
        self._timeout_s = timeout_s
        self._timer: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        self._drain.check()
        timer = asyncio.timeout(self._timeout_s)
        await timer.__aenter__()
        self._timer = timer
        self._drain.watch(timer)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        timer = self._timer
        assert timer is not None
        self._drain.unwatch(timer)
        try:
            await timer.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            self._drain.check()  # fired at the cut: the 503 instead
            raise
        if exc_type is not None and issubclass(exc_type, TimeoutError):
            self._drain.check()


_CURRENT = Drain()


def current() -> Drain:
    """This worker process's drain (signals are per process)."""
    return _CURRENT
