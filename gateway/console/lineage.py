"""Console: case lineage (role ``auditor``).

Usage::

    GET /console/lineage?case_id=CASE-1001      the case's timeline and a chain badge

The records come from ``GET /admin/lineage?case_id=…`` (every page), in-process. The
badge is :func:`gateway.checkpoints.verify_lineage` (the function behind
``casegate lineage verify``) over ``GET /admin/lineage/export``: every hash chain
recomputed, every signed checkpoint checked against the gateway's public keys. It
verifies the whole log, not one case: a case's events share chains with everything else.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.checkpoints import verify_lineage
from gateway.console.dispatch import AdminResult, call_admin
from gateway.console.html import esc, notice, page
from gateway.console.session import Session
from gateway.console.views import query, view

__all__ = ["lineage_page"]

MAX_PAGES = 20


def _names(values: Any) -> str:
    if not values:
        return '<span class="none">none</span>'
    return " ".join(f"<code>{esc(v)}</code>" for v in values)


def _counts(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return '<span class="none">none</span>'
    return ", ".join(f"{esc(k)} &times;{esc(v)}" for k, v in sorted(counts.items()))


def _get(record: dict[str, Any], *path: str) -> Any:
    cur: Any = record
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _approval(value: Any) -> str:
    if not isinstance(value, dict):
        return '<span class="none">—</span>'
    out = f'<span class="badge {esc(value.get("status"))}">{esc(value.get("status"))}</span>'
    if value.get("by"):
        out += f" by {esc(value.get('by'))}"
    if value.get("edited"):
        out += f", edited (edit distance {esc(value.get('edit_distance'))})"
    if value.get("reason"):
        out += f", reason <q>{esc(value.get('reason'))}</q>"
    return out + f" <small><code>{esc(value.get('id') or value.get('draft_id'))}</code></small>"


def _events(record: dict[str, Any]) -> str:
    events = record.get("events") or []
    items = []
    for e in events:
        if not isinstance(e, dict):
            continue
        items.append(
            f"<li><time>{esc(e.get('at'))}</time> <code>{esc(e.get('type'))}</code>"
            f' <span class="hint">{esc(e.get("chain"))}#{esc(e.get("seq"))}</span></li>'
        )
    return f'<ol class="events">{"".join(items)}</ol>' if items else ""


def _record(r: dict[str, Any]) -> str:
    decision = str(r.get("decision") or "unknown")
    requested, applied = r.get("action_class_requested"), r.get("action_class_applied")
    action = esc(applied or "—")
    if requested and applied and requested != applied:
        action = f"{esc(requested)} → {esc(applied)}"
    outcome = r.get("outcome")
    outcome_text = esc(outcome.get("type")) if isinstance(outcome, dict) else esc(outcome or "—")
    refusal = r.get("refusal")
    refusal_text = esc(refusal.get("code") if isinstance(refusal, dict) else refusal)
    rows = [
        ("Use case", esc(r.get("use_case"))),
        ("Action", action),
        ("Fields used", _names(_get(r, "fields", "used"))),
        ("Fields stripped", _names(_get(r, "fields", "stripped"))),
        ("Redactions", _counts(r.get("redactions"))),
        (
            "Model",
            esc(r.get("model_served") or "—") + f" <small>route {esc(r.get('route'))}</small>",
        ),
        ("Tool calls allowed", _names(_get(r, "tool_calls", "allowed"))),
        ("Tool calls blocked", _names(_get(r, "tool_calls", "blocked"))),
        ("Approval", _approval(r.get("approval"))),
        ("Kill switches", _names(r.get("kill_switches"))),
        ("Outcome", outcome_text),
    ]
    if refusal:
        rows.append(("Refusal", f"<code>{refusal_text}</code>"))
    policy = r.get("policy")
    if isinstance(policy, dict):
        rows.append(("Policy", f"{esc(policy.get('version'))} ({esc(policy.get('mode'))})"))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    when = r.get("started_at") or ""
    events = r.get("events")
    if not when and isinstance(events, list) and events and isinstance(events[0], dict):
        when = events[0].get("at") or ""
    return (
        f'<li class="call"><div class="dot {esc(decision)}"></div><article class="card">'
        f"<header><time>{esc(when)}</time> "
        f'<span class="badge {esc(decision)}">{esc(decision)}</span>'
        f' <code class="hint">{esc(r.get("id"))}</code></header>'
        f'<dl class="meta">{dl}</dl>{_events(r)}</article></li>'
    )


async def _records(request: Request, session: Session, case_id: str) -> AdminResult:
    data: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        res = await call_admin(
            request,
            session.operator,
            "GET",
            "/admin/lineage",
            query={"case_id": case_id, "cursor": cursor},
        )
        if not res.ok:
            return res
        data += res.data.get("data") or []
        cursor = res.data.get("next_cursor")
        if not cursor:
            break
    return AdminResult(200, {"data": data, "truncated": bool(cursor)})


async def _badge(request: Request, session: Session) -> str:
    res = await call_admin(request, session.operator, "GET", "/admin/lineage/export")
    if not res.ok:
        return (
            '<span class="badge unknown" id="chain-badge">chain not verified: '
            f"{esc(res.error_message)}</span>"
        )
    export = res.data
    report = verify_lineage(
        export.get("events") or [], export.get("checkpoints") or [], export.get("public_keys")
    )
    if report.ok:
        return (
            '<span class="badge verified" id="chain-badge" title="every hash chain recomputed, '
            f'every signed checkpoint checked">✓ chain verified ({report.events} events, '
            f"{len(report.heads)} chains)</span>"
        )
    first = report.first_broken
    where = f"{first.chain}#{first.seq}: {first.reason}" if first else "unknown"
    return f'<span class="badge broken" id="chain-badge">✗ chain broken at {esc(where)}</span>'


@view("auditor")
async def lineage_page(request: Request, session: Session) -> Response:
    case_id = (query(request, "case_id") or "").strip()
    search = (
        '<form method="get" action="/console/lineage" class="search" role="search">'
        '<label for="case_id">Case id</label>'
        f'<input id="case_id" name="case_id" value="{esc(case_id)}" required maxlength="128"'
        ' placeholder="CASE-1001"><button type="submit" class="primary">Look up</button></form>'
    )
    if not case_id:
        return page(session, "Case lineage", search, active="lineage")
    res = await _records(request, session, case_id)
    if not res.ok:
        body = search + notice(res.error_message, kind="error")
        return page(session, "Case lineage", body, active="lineage", status=res.status)
    records = res.data["data"]
    badge = await _badge(request, session)
    summary = (
        f'<p class="summary">{len(records)} call(s) for case <code>{esc(case_id)}</code>, '
        f"oldest first. {badge}</p>"
    )
    if res.data["truncated"]:
        summary += notice(f"Showing the first {len(records)} records only.", kind="warn")
    timeline = (
        f'<ol class="timeline">{"".join(_record(r) for r in records if isinstance(r, dict))}</ol>'
        if records
        else '<p class="empty">No calls recorded for this case.</p>'
    )
    return page(session, "Case lineage", search + summary + timeline, active="lineage")
