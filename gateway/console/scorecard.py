"""Console: the weekly scorecard (role ``auditor``).

Usage::

    GET /console/scorecard?weeks=8        the last 8 ISO weeks (UTC, Monday first)

Each week is one ``GET /admin/scorecard?from=MON&to=NEXT_MON&group_by=…`` in-process
(once by queue, once by segment), so every number is the operator API's own. The page
draws the totals as a trend over the weeks, each queue and segment as a line over the
weeks, and prints the numbers beside the charts; the current week is partial.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.console.charts import bars, fmt, lines, trend
from gateway.console.dispatch import call_admin
from gateway.console.html import esc, notice, page
from gateway.console.session import Session
from gateway.console.views import query, view

__all__ = ["scorecard_page"]

DEFAULT_WEEKS, MAX_WEEKS = 8, 26
#: (figure, label, is a rate) in the order the tables show them
FIGURES: tuple[tuple[str, str, bool], ...] = (
    ("calls", "Calls", False),
    ("ai_assisted", "AI-assisted (completed)", False),
    ("refusals", "Refusals", False),
    ("policy_exceptions", "Policy exceptions", False),
    ("kill_switch_refusals", "Kill-switch refusals", False),
    ("manual_override_rate", "Manual override rate", True),
    ("expired_drafts", "Expired drafts", False),
    ("approval_latency_p50_s", "Approval latency p50 (s)", False),
    ("approval_latency_p90_s", "Approval latency p90 (s)", False),
    ("mean_edit_distance", "Mean edit distance", False),
    ("first_contact_resolution_rate", "First-contact resolution", True),
    ("misroute_rate", "Misroute rate", True),
    ("complaint_rate", "Complaint rate", True),
    ("mean_handle_time_s", "Mean handle time (s)", False),
    ("lineage_complete", "Lineage complete", True),
)
CHARTED = (
    "calls",
    "ai_assisted",
    "policy_exceptions",
    "manual_override_rate",
    "first_contact_resolution_rate",
    "lineage_complete",
)


def weeks_ending(today: dt.date, count: int) -> list[tuple[dt.date, dt.date]]:
    monday = today - dt.timedelta(days=today.weekday())
    starts = [monday - dt.timedelta(weeks=i) for i in range(count - 1, -1, -1)]
    return [(s, s + dt.timedelta(days=7)) for s in starts]


def label(start: dt.date) -> str:
    week = start.isocalendar()[1]
    return f"W{week:02d}"


def value(figures: Any, name: str) -> float | None:
    if not isinstance(figures, dict):
        return None
    v = figures.get(name)
    if isinstance(v, dict):  # refusals by code
        return float(sum(x for x in v.values() if isinstance(x, (int, float))))
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _cell(figures: Any, name: str, rate: bool) -> str:
    v = value(figures, name)
    text = esc(fmt(v, rate=rate))
    raw = figures.get(name) if isinstance(figures, dict) else None
    if isinstance(raw, dict) and raw:
        detail = ", ".join(f"{k}: {n}" for k, n in sorted(raw.items()))
        return f'<span title="{esc(detail)}">{text}</span> <small>{esc(detail)}</small>'
    return text


def _figure_table(columns: list[str], figures: list[Any], cls: str) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    rows = "".join(
        f'<tr data-figure="{esc(name)}"><th scope="row">{esc(title)}</th>'
        + "".join(f'<td class="num">{_cell(f, name, rate)}</td>' for f in figures)
        + "</tr>"
        for name, title, rate in FIGURES
    )
    return (
        f'<table class="{cls}"><thead><tr><th></th>{head}</tr></thead><tbody>{rows}</tbody></table>'
    )


def _group_key(group: dict[str, Any]) -> str:
    key = group.get("key")
    return "(none)" if key in (None, "") else str(key)


def _breakdown(kind: str, labels: list[str], weeks: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for w in weeks:
        for g in w.get("groups") or []:
            if _group_key(g) not in keys:
                keys.append(_group_key(g))
    if not keys:
        return f'<p class="empty">No calls carried a {esc(kind)} in these weeks.</p>'
    per_week = [{_group_key(g): g.get("figures") for g in w.get("groups") or []} for w in weeks]
    calls = {k: [value(pw.get(k), "calls") for pw in per_week] for k in keys}
    override = {k: [value(pw.get(k), "manual_override_rate") for pw in per_week] for k in keys}
    latest = per_week[-1] if per_week else {}
    charts = (
        '<div class="charts">'
        + lines(f"Calls by {kind}", labels, calls)
        + lines(f"Manual override rate by {kind}", labels, override, rate=True)
        + bars(f"Calls by {kind}, {labels[-1]}", [(k, value(latest.get(k), "calls")) for k in keys])
        + "</div>"
    )
    table = _figure_table(keys, [latest.get(k) for k in keys], "figures")
    return f"{charts}<h3>{esc(labels[-1])} by {esc(kind)}</h3>{table}"


@view("auditor")
async def scorecard_page(request: Request, session: Session) -> Response:
    try:
        count = min(MAX_WEEKS, max(1, int(query(request, "weeks") or DEFAULT_WEEKS)))
    except ValueError:
        count = DEFAULT_WEEKS
    windows = weeks_ending(dt.datetime.now(dt.UTC).date(), count)
    labels = [label(s) for s, _ in windows]
    results: dict[str, list[dict[str, Any]]] = {"queue": [], "segment": []}
    for group_by in results:
        for start, end in windows:
            res = await call_admin(
                request,
                session.operator,
                "GET",
                "/admin/scorecard",
                query={"from": start.isoformat(), "to": end.isoformat(), "group_by": group_by},
            )
            if not res.ok:
                body = notice(res.error_message, kind="error")
                return page(session, "Scorecard", body, active="scorecard", status=res.status)
            results[group_by].append(res.data)
    totals = [w.get("total") for w in results["queue"]]
    rate_of = {name: rate for name, _, rate in FIGURES}
    title_of = {name: title for name, title, _ in FIGURES}
    charts = "".join(
        trend(
            title_of[n],
            [(lb, value(t, n)) for lb, t in zip(labels, totals, strict=True)],
            rate=rate_of[n],
        )
        for n in CHARTED
    )
    first, last = windows[0][0], windows[-1][1]
    picker = "".join(
        f'<a href="/console/scorecard?weeks={n}"{" aria-current=page" if n == count else ""}>'
        f"{n} weeks</a>"
        for n in (4, 8, 13, 26)
    )
    body = (
        f'<nav class="tabs">{picker}</nav>'
        f'<p class="summary">Weeks from {esc(first.isoformat())} to {esc(last.isoformat())} '
        f"(UTC, by request start; the last week is the current one, so far). "
        "A dash is a figure with no denominator.</p>"
        f'<section id="trend"><h2>Trend</h2><div class="charts">{charts}</div>'
        + _figure_table(labels, totals, "figures weekly")
        + "</section>"
        + '<section id="by-queue"><h2>By queue</h2>'
        + _breakdown("queue", labels, results["queue"])
        + '</section><section id="by-segment"><h2>By segment</h2>'
        + _breakdown("segment", labels, results["segment"])
        + "</section>"
    )
    return page(session, "Scorecard", body, active="scorecard")
