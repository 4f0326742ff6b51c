"""DESIGN.md 10.17 and section 8 on hand-made records: removed calls and dry runs."""

from __future__ import annotations

from gateway.scorecard import figures


def record(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "end": "completed",
        "complete": True,
        "decision": "allowed",
        "tool_calls": {"allowed": [], "blocked": [], "removed": []},
        "events": [],
    }
    base.update(kw)
    return base


def test_a_downgrade_counts_every_call_it_removed_as_a_policy_exception() -> None:
    downgraded = record(
        decision="degraded",
        tool_calls={"allowed": [], "blocked": ["route_to_queue"], "removed": ["set_priority"]},
    )
    ineligible = record(end="refused", decision="refused", refusal="ineligible")
    out = figures([downgraded, ineligible, record()])
    assert out["policy_exceptions"] == 3  # one blocked + one removed + one ineligible


def test_a_dry_run_is_a_call_but_not_ai_assisted() -> None:
    out = figures([record(dry_run=True), record()])
    assert out["calls"] == 2
    assert out["ai_assisted"] == 1
