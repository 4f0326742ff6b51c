"""Console: kill switches (role ``incident_responder``).

Usage::

    GET  /console/switches            the engaged switches and the engage form
    GET  /console/switches/live       {version, html}: polled every 1.5 s by console.js
    POST /console/switches/engage     scope, mode, reason -> a confirmation step -> engage
    POST /console/switches/release    scope -> a confirmation step (with reason) -> release

Every read and write goes through ``/admin/kill-switches`` in-process
(gateway/console/dispatch.py), so role checks, scope validation, fan-out and the
``switch.*`` lineage events are the operator API's own. A flip made elsewhere (the CLI,
another replica) shows up at the next poll.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.admin.common import runtime
from gateway.console.dispatch import AdminResult, call_admin
from gateway.console.html import esc, form_csrf, notice, page, secure
from gateway.console.session import Session
from gateway.console.views import form_of, query, redirect, view
from policies import valid_scopes

__all__ = ["engage", "live", "release", "switches_page"]

_DONE = {"engaged": "Engaged", "released": "Released"}


def _rows(session: Session, state: dict[str, Any]) -> str:
    switches = state.get("switches") or []
    if not switches:
        return '<tr class="empty"><td colspan="6">No kill switch is engaged.</td></tr>'
    out = []
    for s in switches:
        mode = str(s.get("mode"))
        out.append(
            f'<tr data-scope="{esc(s.get("scope"))}">'
            f"<td><code>{esc(s.get('scope'))}</code></td>"
            f'<td><span class="badge {esc(mode)}">{esc(mode)}</span></td>'
            f"<td>{esc(s.get('reason'))}</td><td>{_engaged_by(s.get('engaged_by'))}</td>"
            f"<td><time>{esc(s.get('engaged_at'))}</time></td>"
            '<td><form method="post" action="/console/switches/release">'
            f'{form_csrf(session)}<input type="hidden" name="scope" value="{esc(s.get("scope"))}">'
            '<button type="submit" class="danger">Release…</button></form></td></tr>'
        )
    return "".join(out)


def _engaged_by(by: Any) -> str:
    """An operator's name, or a tripwire (issue 11) marked as an automatic engagement;
    the figures that tripped it are in the reason beside it."""
    text = str(by or "")
    if text.startswith("tripwire:"):
        return (
            '<span class="badge tripwire" title="engaged automatically by a bundle tripwire; '
            f'never released automatically">automatic</span> <code>{esc(text)}</code>'
        )
    return esc(text)


def _acks(state: dict[str, Any]) -> str:
    acks = state.get("acknowledged_by") or []
    version = state.get("version")
    parts = [
        f'<span class="ack{" stale" if a.get("version") != version else ""}">'
        f"{esc(a.get('replica'))}/{esc(a.get('worker'))} v{esc(a.get('version'))}</span>"
        for a in acks
    ]
    return f"State version {esc(version)}; acknowledged by " + (" ".join(parts) or "no worker yet")


def _table(session: Session, state: dict[str, Any]) -> str:
    return (
        f'<table id="switches" data-version="{esc(state.get("version"))}"><thead><tr>'
        "<th>Scope</th><th>Mode</th><th>Why</th><th>Engaged by</th><th>When (UTC)</th><th></th>"
        f'</tr></thead><tbody id="switch-rows">{_rows(session, state)}</tbody></table>'
        f'<p class="hint" id="switch-acks">{_acks(state)}</p>'
    )


async def _state(request: Request, session: Session) -> AdminResult:
    return await call_admin(request, session.operator, "GET", "/admin/kill-switches")


def _scopes(request: Request) -> list[str]:
    rt = runtime(request)
    deployments = {route: [d.model for d in deps] for route, deps in rt.deployments.items()}
    return valid_scopes(rt.policy.loaded.policy, deployments)


def _engage_form(session: Session, scopes: list[str], values: dict[str, str]) -> str:
    options = "".join(f'<option value="{esc(s)}">' for s in scopes)
    mode = values.get("mode", "halt")
    return (
        '<form method="post" action="/console/switches/engage" class="card" id="engage">'
        f"<h2>Engage a switch</h2>{form_csrf(session)}"
        '<label for="scope">Scope</label>'
        f'<input id="scope" name="scope" list="scopes" required value="{esc(values.get("scope"))}"'
        ' placeholder="global, use_case:triage, tool:set_priority …">'
        f'<datalist id="scopes">{options}</datalist>'
        '<label for="mode">Mode</label><select id="mode" name="mode">'
        f'<option value="halt"{" selected" if mode == "halt" else ""}>halt — refuse (503)</option>'
        f'<option value="degrade"{" selected" if mode == "degrade" else ""}>'
        "degrade — lower the action class one step</option></select>"
        '<label for="reason">Reason (required)</label>'
        '<input id="reason" name="reason" required maxlength="1000" '
        f'value="{esc(values.get("reason"))}">'
        '<button type="submit" class="danger">Engage…</button></form>'
    )


@view("incident_responder")
async def switches_page(request: Request, session: Session) -> Response:
    res = await _state(request, session)
    if not res.ok:
        body = notice(res.error_message, kind="error")
        return page(session, "Kill switches", body, active="switches", status=res.status)
    done, scope = query(request, "done"), query(request, "scope")
    msg = f"{_DONE[done]} {scope}." if done in _DONE and scope else None
    body = (
        notice(msg)
        + '<section class="live" data-live="/console/switches/live" aria-live="polite">'
        + _table(session, res.data)
        + "</section>"
        + _engage_form(session, _scopes(request), {})
    )
    return page(session, "Kill switches", body, active="switches")


@view("incident_responder", json=True)
async def live(request: Request, session: Session) -> Response:
    res = await _state(request, session)
    if not res.ok:
        return secure(JSONResponse({"error": res.error_message}, status_code=res.status))
    state = res.data
    return secure(
        JSONResponse(
            {
                "version": state.get("version"),
                "rows": _rows(session, state),
                "acks": _acks(state),
            }
        )
    )


def _confirm(
    session: Session, action: str, fields: dict[str, str], question: str, extra: str
) -> Response:
    hidden = "".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in fields.items()
    )
    body = (
        f'<form method="post" action="/console/switches/{esc(action)}" class="card confirm">'
        f'{form_csrf(session)}{hidden}<input type="hidden" name="confirm" value="yes">'
        f'<p class="question">{question}</p>{extra}'
        f'<button type="submit" class="danger" id="confirm">Confirm {esc(action)}</button> '
        '<a href="/console/switches" class="button">Cancel</a></form>'
    )
    return page(session, "Confirm", body, active="switches")


@view("incident_responder")
async def engage(request: Request, session: Session) -> Response:
    form = form_of(request)
    fields = {k: form.get(k).strip() for k in ("scope", "mode", "reason")}
    if form.get("confirm") != "yes":
        if not fields["reason"]:
            body = notice("A reason is required.", kind="error") + _engage_form(
                session, _scopes(request), fields
            )
            return page(session, "Kill switches", body, active="switches", status=400)
        question = (
            f"Engage <strong>{esc(fields['mode'])}</strong> on <code>{esc(fields['scope'])}</code>?"
        )
        extra = f"<p>Reason: <q>{esc(fields['reason'])}</q></p>"
        return _confirm(session, "engage", fields, question, extra)
    res = await call_admin(request, session.operator, "POST", "/admin/kill-switches", body=fields)
    if not res.ok:
        state = await _state(request, session)
        body = notice(res.error_message, kind="error")
        if state.ok:
            body += _table(session, state.data)
        body += _engage_form(session, _scopes(request), fields)
        return page(session, "Kill switches", body, active="switches", status=res.status)
    return redirect("/console/switches?done=engaged&scope=" + quote(fields["scope"], safe=""))


@view("incident_responder")
async def release(request: Request, session: Session) -> Response:
    form = form_of(request)
    scope, reason = form.get("scope").strip(), form.get("reason").strip()
    if form.get("confirm") != "yes" or not reason:
        extra = (
            (notice("A reason is required.", kind="error") if form.get("confirm") == "yes" else "")
            + '<label for="reason">Reason (required)</label>'
            '<input id="reason" name="reason" required maxlength="1000" autofocus>'
        )
        question = f"Release <code>{esc(scope)}</code>?"
        return _confirm(session, "release", {"scope": scope}, question, extra)
    res = await call_admin(
        request,
        session.operator,
        "DELETE",
        "/admin/kill-switches/" + scope,
        body={"reason": reason},
    )
    if not res.ok:
        back = '<p><a href="/console/switches">Back</a></p>'
        body = notice(res.error_message, kind="error") + back
        return page(session, "Kill switches", body, active="switches", status=res.status)
    return redirect("/console/switches?done=released&scope=" + quote(scope, safe=""))
