"""Fail safe: a worker that never read the switch state refuses automation; a worker
whose store stops answering keeps enforcing the last state it read.

The store is replaced at our own seam (the `SwitchStore` protocol) by one that can be
told to fail, which a real database cannot be on demand without disturbing the other
tests sharing it.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from gateway.fanout import PollingFanout
from gateway.stores import Activation, StateUnavailable
from gateway.stores.base import ControlState, SwitchAck, SwitchRow
from gateway.switchboard import UNREAD, Switchboard
from policies import Switch, decide, default_bundle_path, load_bundle_file
from policies.facts import Facts


class FlakyStore:
    def __init__(self) -> None:
        self.down = False
        self.state = ControlState(0, ())
        self.acks: list[SwitchAck] = []

    def _check(self) -> None:
        if self.down:
            raise StateUnavailable("PostgreSQL is unavailable: OperationalError")

    async def read_control(self) -> ControlState:
        self._check()
        return self.state

    async def control_version(self) -> int:
        self._check()
        return self.state.version

    async def activations(self) -> list[Activation]:
        self._check()
        return []

    async def acknowledge(self, ack: SwitchAck) -> None:
        self._check()
        self.acks.append(ack)


def board_for(store: FlakyStore) -> Switchboard:
    rt: Any = SimpleNamespace(store=store, policy=SimpleNamespace(version="v1"), observed=None)
    return Switchboard(rt, PollingFanout(poll_s=0.005), replica="r1", worker="42")


def halt(scope: str) -> SwitchRow:
    return SwitchRow(scope, "halt", "drill", "oncall", 0)


def test_a_worker_that_never_read_the_state_refuses_automation_only() -> None:
    store = FlakyStore()
    store.down = True
    board = board_for(store)
    assert board.current() == UNREAD
    policy = load_bundle_file(default_bundle_path()).policy
    facts = Facts(authenticated=True, consent={"ai_assist": True}, region="GB")

    def refusal(cls: str) -> str | None:
        decision = decide(
            policy,
            use_case="triage",
            requested_class=cls,
            route="support-default",
            facts=facts,
            switches=board.current(),
        )
        return decision.refusal.code if decision.refusal else None

    assert refusal("automation") == "kill_switch_engaged"
    assert refusal("draft") is None and refusal("recommendation") is None


def test_store_down_keeps_the_last_state_and_catches_up_after() -> None:
    async def scenario() -> None:
        store = FlakyStore()
        store.state = ControlState(3, (halt("global"),))
        board = board_for(store)
        assert await board.refresh()
        assert board.current() == (Switch("global", "halt"),)
        assert store.acks[-1] == SwitchAck("r1", "42", 3, store.acks[-1].at_ms)

        task = asyncio.create_task(board.run())
        try:
            store.down = True
            store.state = ControlState(4, ())  # released, but this worker cannot see it
            await asyncio.sleep(0.05)
            assert board.current() == (Switch("global", "halt"),)  # still enforced
            assert board.version == 3
            store.down = False
            for _ in range(200):
                if board.version == 4:
                    break
                await asyncio.sleep(0.005)
            assert board.version == 4 and board.current() == ()
            assert store.acks[-1].version == 4
        finally:
            task.cancel()

    asyncio.run(scenario())


def test_a_failed_first_read_keeps_automation_refused_until_the_loop_reads() -> None:
    async def scenario() -> None:
        store = FlakyStore()
        store.down = True
        board = board_for(store)
        task = asyncio.create_task(board.run())
        try:
            await asyncio.sleep(0.03)
            assert board.current() == UNREAD and board.version is None
            store.down = False
            for _ in range(200):
                if board.version is not None:
                    break
                await asyncio.sleep(0.005)
            assert board.current() == () and board.version == 0
        finally:
            task.cancel()

    asyncio.run(scenario())
