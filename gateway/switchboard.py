"""The switch state and the policy version one worker enforces, kept in step with the store.

Usage::

    board = await start_switchboard(rt, os.environ)   # by Runtime.start
    rt.switches()                                      # -> board.current()
    version = await rt.store.engage_switch(row)        # an admin endpoint...
    await board.after_write(version)                   # ...fans it out, enforces it here
    with watch_stream(rt, rec, policy, decision, chat, gov, model, guard) as cut:
        ...  # cut.check() raises kill_switch_engaged once a switch covers the stream

The state store is the truth. A notification (gateway/fanout.py) or the poll timer
wakes the worker, which re-reads the control state in one snapshot, swaps
``rt.switches()`` and, when the activation history moved, ``rt.policy`` and
``rt.observed`` (one attribute assignment each, so a call sees one or the other), and
then acknowledges the version it now enforces as ``(replica, worker, version, at)``.

Fail safe: when the store cannot be read the worker keeps enforcing the last state it
read. A worker that has never read the switch state enforces :data:`UNREAD`, a
synthetic ``action_class:automation`` halt: it refuses automation (recommendations and
drafts still work) until its first successful read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gateway.errors import Unavailable
from gateway.fanout import Fanout, make_fanout
from gateway.policy_admin import fold_activations
from gateway.runtime import ActivePolicy, compile_policy
from gateway.stores.base import SwitchAck, SwitchRow
from policies import (
    ACTION_CLASSES,
    Decision,
    Facts,
    Switch,
    decide,
    facts_from_customer,
    load_bundle,
)

if TYPE_CHECKING:
    from gateway.lineage import LineageRecord
    from gateway.models import ChatRequest, Governance
    from gateway.runtime import Runtime
    from gateway.stages.respond import ToolGuard

__all__ = [
    "UNREAD",
    "StreamCut",
    "Switchboard",
    "engage_switch",
    "start_switchboard",
    "watch_stream",
]

log = logging.getLogger("casegate.switchboard")

#: What a worker that has never read the switch state enforces: no automation.
UNREAD: tuple[Switch, ...] = (Switch("action_class:automation", "halt"),)
#: Acknowledgements are re-written this often, and listed while younger than ACK_LIVE_MS.
HEARTBEAT_S = 5.0
ACK_LIVE_MS = 30_000


def replica_id(environ: Mapping[str, str]) -> str:
    """``CASEGATE_REPLICA_ID``; `casegate serve` defaults it to ``hostname:port``."""
    return environ.get("CASEGATE_REPLICA_ID") or socket.gethostname()


class Switchboard:
    def __init__(self, rt: Runtime, fanout: Fanout, *, replica: str, worker: str) -> None:
        self.rt = rt
        self.fanout = fanout
        self.replica = replica
        self.worker = worker
        self.version: int | None = None  # None: never read
        self.rows: tuple[SwitchRow, ...] = ()
        self._switches: tuple[Switch, ...] = UNREAD
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._watchers: set[Callable[[], None]] = set()
        self._failing = False
        self._last_ack = 0.0

    # -- what the pipeline reads --------------------------------------------------
    def current(self) -> tuple[Switch, ...]:
        return self._switches

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._watchers.add(callback)
        return lambda: self._watchers.discard(callback)

    # -- keeping in step -------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    async def refresh(self) -> bool:
        """Re-read the control state; apply it if its version moved. True if it did."""
        async with self._lock:
            state = await self.rt.store.read_control()
            if state.version == self.version:
                return False
            await self._sync_policy()
            self.rows = state.switches
            self._switches = tuple(Switch(r.scope, r.mode) for r in state.switches)  # type: ignore[arg-type]
            self.version = state.version
            for callback in list(self._watchers):
                try:
                    callback()
                except Exception:
                    log.exception("a switch watcher failed")
        await self._ack()
        return True

    async def _sync_policy(self) -> None:
        rt = self.rt
        enforced, observed = fold_activations(await rt.store.activations())
        if enforced is not None and enforced.version != rt.policy.version:
            policy = await self._compile(enforced.version, "enforce")
            if policy is not None:
                rt.policy = policy
                log.warning("policy version %r now enforces", policy.version)
        want = observed.version if observed is not None else None
        have = rt.observed.version if rt.observed is not None else None
        if want != have:
            rt.observed = None if want is None else await self._compile(want, "observe")

    async def _compile(self, version: str, mode: str) -> ActivePolicy | None:
        stored = await self.rt.store.get_bundle(version)
        if stored is None:
            log.error("active policy version %r is missing from the store", version)
            return None
        source = f"state store policy {version!r}"
        try:
            return compile_policy(load_bundle(stored.text, source=source), mode, source=source)
        except Exception:
            # validated when it was stored; keep the last good version rather than none
            log.exception("policy version %r cannot be compiled; keeping the current one", version)
            return None

    async def _ack(self) -> None:
        if self.version is None:
            return
        now_ms = int(time.time() * 1000)
        try:
            await self.rt.store.acknowledge(
                SwitchAck(self.replica, self.worker, self.version, now_ms)
            )
            self._last_ack = time.monotonic()
        except Exception as exc:
            log.warning("switch acknowledgement not written (%s)", type(exc).__name__)

    async def after_write(self, version: int) -> None:
        """This worker changed the state (to *version*): tell the others, enforce it here."""
        await self.fanout.publish(version)
        try:
            await self.refresh()
        except Exception:
            self.wake()  # the loop retries; the write itself is durable

    async def run(self) -> None:
        """Poll the version (the backstop) and refresh whenever woken."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.fanout.poll_s):
                    await self._wake.wait()
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                if woken or self.version is None:
                    await self.refresh()
                elif await self.rt.store.control_version() != self.version:
                    await self.refresh()
                if time.monotonic() - self._last_ack >= HEARTBEAT_S:
                    await self._ack()
                if self._failing:
                    log.warning("switch state readable again (version %s)", self.version)
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._failing:
                    log.warning(
                        "switch state unreadable (%s): enforcing the last known state, version %s",
                        type(exc).__name__,
                        self.version,
                    )
                self._failing = True

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.rt.store.forget_worker(self.replica, self.worker)
        await self.fanout.close()


async def start_switchboard(rt: Runtime, environ: Mapping[str, str]) -> Switchboard:
    store = rt.store
    channel = await store.installation_id()
    fanout = make_fanout(rt.settings.redis, rt.settings.state, store.kind, channel)
    board = Switchboard(rt, fanout, replica=replica_id(environ), worker=str(os.getpid()))
    rt.switchboard = board
    try:
        await board.refresh()
    except Exception as exc:  # UNREAD stays in force until the loop's first read
        log.warning("switch state not read at start (%s)", type(exc).__name__)
    rt.background.append(asyncio.create_task(board.run(), name="casegate-switchboard"))
    rt.background.append(asyncio.create_task(fanout.listen(board.wake), name="casegate-fanout"))
    rt.closers.append(board.stop)
    return board


async def engage_switch(
    rt: Runtime,
    scope: str,
    mode: str,
    reason: str,
    by: str,
    *,
    extra: Mapping[str, Any] | None = None,
) -> int:
    """Engage (or re-engage) *scope*: durable in the store, fanned out, in force on this
    worker, and a ``switch.engaged`` lineage event ``{scope, mode, reason, by, version}``
    (plus *extra*). The one path of an operator's flip (the admin API) and of a tripwire
    (gateway/tripwires.py), so both are enforced, acknowledged and audited alike."""
    from gateway.lineage import new_lineage_id

    row = SwitchRow(scope, mode, reason, by, int(time.time() * 1000))
    version = await rt.store.engage_switch(row)
    board = rt.switchboard
    assert board is not None
    await board.after_write(version)
    data: dict[str, Any] = {
        "scope": scope,
        "mode": mode,
        "reason": reason,
        "by": by,
        "version": version,
        **(extra or {}),
    }
    await rt.lineage.event("switch.engaged", new_lineage_id(), data)
    return version


# -- streams in flight --------------------------------------------------------------


class StreamCut:
    """Ends a stream once a switch comes to cover it (DESIGN.md section 4).

    Covered means: a halt now refuses the call, a degrade now lowers its class, or its
    deployment's model is switched off. A ``tool:`` switch does not cut: the tool joins
    the guard's removed tools, so a returned call to it is a violation. While the
    stream awaits the provider, :meth:`armed` lets the cut fire the timeout at once.
    """

    def __init__(
        self,
        board: Switchboard,
        rec: LineageRecord,
        decision: Decision,
        evaluate: Callable[[tuple[Switch, ...]], Decision],
        model: str,
        guard: ToolGuard | None,
        decided_under: tuple[Switch, ...] | None = None,
    ) -> None:
        """``decided_under``: the switchboard's tuple `decision` was made under; while
        the board still holds that very tuple, nothing can have changed the decision."""
        self.board = board
        self.rec = rec
        self.decision = decision
        self.evaluate = evaluate
        self.model = model
        self.guard = guard
        self.error: Unavailable | None = None
        self._timeout: asyncio.Timeout | None = None
        self._unwatch = board.watch(self._changed)
        if board.current() is not decided_under:
            self._changed()  # a switch landed between the decision and now

    def _changed(self) -> None:
        if self.error is not None:
            return
        decision = self.evaluate(self.board.current())
        scope = mode = None
        refusal = decision.refusal
        if refusal is not None and refusal.code == "kill_switch_engaged":
            scope, mode = decision.switches[0], "halt"
        elif ACTION_CLASSES.index(decision.action_class_applied) < ACTION_CLASSES.index(
            self.decision.action_class_applied
        ):
            scope, mode = decision.switches[0], "degrade"
        elif self.model in decision.removed_models:
            scope, mode = f"model:{self.model}", "halt"
        if self.guard is not None:
            self.guard.removed_tools = self.guard.removed_tools | decision.removed_tools
        if scope is None:
            return
        self.error = Unavailable(
            f"kill switch {scope!r} is engaged ({mode}); the stream was ended",
            code="kill_switch_engaged",
        )
        if scope not in self.rec.kill_switches:
            self.rec.kill_switches.append(scope)
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def arm(self, timeout: asyncio.Timeout) -> None:
        """Fire ``timeout`` at once if a switch comes to cover the stream (until
        :meth:`disarm`); raise now if one already does. Plain calls, not a context
        manager: this runs around every chunk of every stream."""
        self._timeout = timeout
        self.check()

    def disarm(self) -> None:
        self._timeout = None

    def close(self) -> None:
        # dropped as it runs: the function refers to this cut (a cycle would keep the
        # call's objects alive until the collector came by)
        unwatch, self._unwatch = self._unwatch, _unwatched
        unwatch()


def _unwatched() -> None:
    """A closed cut's `_unwatch`."""


def watch_stream(
    rt: Runtime,
    rec: LineageRecord,
    policy: ActivePolicy,
    decision: Decision,
    chat: ChatRequest,
    gov: Governance,
    model: str,
    guard: ToolGuard | None,
    *,
    decided_under: tuple[Switch, ...] | None = None,
) -> StreamCut:
    facts: list[Facts] = []  # worked out at the first switch change, if one comes

    def evaluate(switches: tuple[Switch, ...]) -> Decision:
        if not facts:
            customer = chat.casegate.customer.model_dump()
            facts.append(facts_from_customer(customer, queue=gov.queue, segment=gov.segment))
        return decide(
            policy.loaded.policy,
            use_case=gov.use_case,
            requested_class=decision.action_class_requested,
            route=chat.model,
            facts=facts[0],
            switches=switches,
        )

    board = rt.switchboard
    assert board is not None
    return StreamCut(board, rec, decision, evaluate, model, guard, decided_under)


def describe(rows: tuple[SwitchRow, ...]) -> list[dict[str, Any]]:
    from tracing import rfc3339_ms

    return [
        {
            "scope": r.scope,
            "mode": r.mode,
            "reason": r.reason,
            "engaged_by": r.engaged_by,
            "engaged_at": rfc3339_ms(r.engaged_ms),
        }
        for r in rows
    ]
