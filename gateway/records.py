"""A lineage record is the fold of its events (DESIGN.md section 8).

Usage::

    record = fold(events)                  # the events of one lineage id, any order
    records = fold_many(events)            # {lineage_id: record}

The record carries what the events say and nothing else: codes, names, counts, hashes
and times, never message text, argument values or raw identifiers (the events never
hold them). Its schema is documented in the README ("Lineage records").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import Conflict, NotFound
from gateway.lineage import LineageWriter, now_ms
from gateway.stores import StateStore

__all__ = ["OutcomeBody", "fold", "fold_many", "order_events", "record_outcome"]


class OutcomeBody(BaseModel):
    """``POST /v1/lineage/{id}/outcome``: how the case went, for the scorecard."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["resolved_first_contact", "misroute", "complaint", "handled"]
    handle_time_s: int | None = Field(default=None, ge=0, le=10_000_000)


class OutcomeExists(Conflict):
    default_code = "outcome_exists"


def order_events(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return sorted((dict(e) for e in events), key=lambda e: (e["at"], e["chain"], e["seq"]))


def _approval(draft: Any, decisions: list[dict[str, Any]]) -> dict[str, Any] | None:
    if draft is None and not decisions:
        return None
    out: dict[str, Any] = dict(draft) if isinstance(draft, Mapping) else {}
    if decisions:
        last = decisions[-1]
        out["status"] = last.get("decision")
        for key in ("draft_id", "by", "reason", "edited", "edit_distance", "latency_ms"):
            if key in last:
                out[key] = last[key]
        out["decided_at_ms"] = last.get("at_ms")
        out.setdefault("id", last.get("draft_id"))
    return out


def fold(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One record from the events of one lineage id."""
    ordered = order_events(events)
    if not ordered:
        raise ValueError("a record needs at least one event")
    start: dict[str, Any] = {}
    end: dict[str, Any] = {}
    started_at = ended_at = None
    decisions: list[dict[str, Any]] = []
    outcome: dict[str, Any] | None = None
    for e in ordered:
        data = e.get("data") or {}
        if e["type"] == "request.started":
            start, started_at = data, e["at"]
        elif e["type"] == "request.ended" and not end:
            end, ended_at = data, e["at"]
        elif e["type"] == "approval.decided":
            decisions.append(data)
        elif e["type"] == "outcome.recorded" and outcome is None:
            outcome = {
                "type": data.get("type"),
                "handle_time_s": data.get("handle_time_s"),
                "by": data.get("client"),
                "at": e["at"],
            }
    timings = dict(end.get("timings") or {})
    timings.update(started_at=started_at, ended_at=ended_at)
    return {
        "id": ordered[0]["lineage_id"],
        "case_id": start.get("case_id"),
        "customer_ref": start.get("customer_ref"),
        "client": start.get("client"),
        "request_id": start.get("request_id"),
        "use_case": start.get("use_case"),
        "queue": start.get("queue"),
        "segment": start.get("segment"),
        "policy": start.get("policy"),
        "action_class_requested": end.get(
            "action_class_requested", start.get("action_class_requested")
        ),
        "action_class_applied": end.get("action_class_applied"),
        "decision": end.get("decision"),
        "end": end.get("end"),
        "fields": end.get("fields") or {"used": [], "stripped": []},
        "redactions": end.get("redactions") or {},
        "checks": end.get("checks") or [],
        "consent_basis": end.get("consent_basis"),
        "route": start.get("route"),
        "model_served": end.get("model_served"),
        "attempts": end.get("attempts") or [],
        "tool_calls": end.get("tool_calls") or {"allowed": [], "blocked": [], "removed": []},
        "approval": _approval(end.get("approval"), decisions),
        "kill_switches": end.get("kill_switches") or [],
        "outcome": outcome,
        "refusal": end.get("refusal"),
        "usage": end.get("usage"),
        "stream": start.get("stream"),
        "dry_run": start.get("dry_run"),
        "trace_id": start.get("trace_id"),
        "timings": timings,
        "complete": bool(start) and bool(end),
        "events": ordered,
    }


def fold_many(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        by_id.setdefault(e["lineage_id"], []).append(e)
    return {lid: fold(evs) for lid, evs in by_id.items()}


async def record_outcome(
    store: StateStore, writer: LineageWriter, *, client: str, lineage_id: str, body: OutcomeBody
) -> dict[str, Any]:
    """One outcome per record, only from the client that made the call (else 404)."""
    events = await store.events_for(lineage_id)
    start = next((e for e in events if e["type"] == "request.started"), None)
    if start is None or (start.get("data") or {}).get("client") != client:
        raise NotFound(f"No lineage record {lineage_id!r} for this key", param="id")
    at = now_ms()
    if not await store.put_outcome(lineage_id, client, body.type, body.handle_time_s, at):
        raise OutcomeExists(f"Lineage record {lineage_id!r} already has an outcome")
    data = {"type": body.type, "handle_time_s": body.handle_time_s, "client": client}
    try:
        event = await writer.event("outcome.recorded", lineage_id, data)
    except BaseException:
        await store.delete_outcome(lineage_id)
        raise
    return {
        "lineage_id": lineage_id,
        "outcome": {"type": body.type, "handle_time_s": body.handle_time_s, "at": event["at"]},
    }
