"""The scorecard of DESIGN.md section 8, computed from folded lineage records.

Usage::

    card = scorecard(records, group_by="queue", window=(from_ms, to_ms))
    # {"from", "to", "group_by", "groups": [{"key", "figures"}], "total"}

The window is by request start (UTC; ``from`` inclusive, ``to`` exclusive); the
caller selects the records. Definitions, each over the records of a group:

- ``calls``: records; ``ai_assisted``: records whose end is ``completed`` (dry runs
  excluded: no provider was called);
- ``refusals``: ``{code: n}`` over records with decision ``refused``;
- ``policy_exceptions``: every blocked tool call, every valid call a downgrade removed
  with them (``tool_calls.removed``) + every ``ineligible`` refusal;
- ``manual_override_rate``: (approvals with an edit + rejections) / decided drafts
  (``approval.decided`` with decision approved or rejected);
- ``expired_drafts``: ``approval.decided`` events with decision ``expired``;
- ``approval_latency_p50_s`` / ``p90_s``: nearest-rank percentiles of the decided
  drafts' ``latency_ms``, in seconds;
- ``mean_edit_distance``: mean of ``edit_distance`` over approved drafts (an unedited
  approval counts 0);
- ``misroute_rate``, ``complaint_rate``, ``first_contact_resolution_rate``: outcomes of
  that type / records with an outcome; ``mean_handle_time_s``: mean over the outcomes
  that carry ``handle_time_s``;
- ``lineage_complete``: records with both a start and an end event / records;
- ``kill_switch_refusals``: refusals with code ``kill_switch_engaged``.

A figure whose denominator is 0 is ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tracing import rfc3339_ms

__all__ = ["GROUPS", "figures", "nearest_rank", "scorecard"]

GROUPS = ("queue", "segment", "use_case")


def nearest_rank(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile: the ceil(p/100 * n)-th smallest value."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _mean(values: Sequence[float]) -> float | None:
    return None if not values else sum(values) / len(values)


def figures(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    calls = ai_assisted = exceptions = complete = kill = 0
    refusals: dict[str, int] = {}
    decided = overrides = expired = 0
    latencies: list[float] = []
    distances: list[float] = []
    outcomes: list[Mapping[str, Any]] = []
    for r in records:
        calls += 1
        # a dry run completes without a provider call: it assisted nobody
        ai_assisted += r.get("end") == "completed" and not r.get("dry_run")
        complete += bool(r.get("complete"))
        tool_calls = r.get("tool_calls") or {}
        # each blocked call, and each valid call a downgrade removed with them
        exceptions += len(tool_calls.get("blocked") or []) + len(tool_calls.get("removed") or [])
        code = r.get("refusal")
        if r.get("decision") == "refused" and code:
            refusals[code] = refusals.get(code, 0) + 1
            exceptions += code == "ineligible"
            kill += code == "kill_switch_engaged"
        for e in r.get("events") or []:
            if e.get("type") != "approval.decided":
                continue
            data = e.get("data") or {}
            decision = data.get("decision")
            if decision == "expired":
                expired += 1
                continue
            if decision not in ("approved", "rejected"):
                continue
            decided += 1
            edited = bool(data.get("edited"))
            overrides += decision == "rejected" or edited
            if isinstance(data.get("latency_ms"), int):
                latencies.append(data["latency_ms"] / 1000)
            if decision == "approved":
                distances.append(int(data.get("edit_distance") or 0) if edited else 0)
        if r.get("outcome"):
            outcomes.append(r["outcome"])
    kinds = [o.get("type") for o in outcomes]
    handle = [o["handle_time_s"] for o in outcomes if isinstance(o.get("handle_time_s"), int)]
    return {
        "calls": calls,
        "ai_assisted": ai_assisted,
        "refusals": dict(sorted(refusals.items())),
        "policy_exceptions": exceptions,
        "manual_override_rate": _ratio(overrides, decided),
        "expired_drafts": expired,
        "approval_latency_p50_s": nearest_rank(latencies, 50),
        "approval_latency_p90_s": nearest_rank(latencies, 90),
        "mean_edit_distance": _mean(distances),
        "misroute_rate": _ratio(kinds.count("misroute"), len(outcomes)),
        "complaint_rate": _ratio(kinds.count("complaint"), len(outcomes)),
        "first_contact_resolution_rate": _ratio(
            kinds.count("resolved_first_contact"), len(outcomes)
        ),
        "mean_handle_time_s": _mean(handle),
        "lineage_complete": _ratio(complete, calls),
        "kill_switch_refusals": kill,
    }


def scorecard(
    records: Sequence[Mapping[str, Any]], *, group_by: str | None, window: tuple[int, int]
) -> dict[str, Any]:
    groups: dict[str | None, list[Mapping[str, Any]]] = {}
    if group_by is not None:
        for r in records:
            groups.setdefault(r.get(group_by), []).append(r)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    return {
        "from": rfc3339_ms(window[0]),
        "to": rfc3339_ms(window[1]),
        "group_by": group_by,
        "groups": [{"key": key, "figures": figures(rs)} for key, rs in ordered],
        "total": figures(records),
    }
