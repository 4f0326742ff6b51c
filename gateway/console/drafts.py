"""Console: the approval queue (role ``approver``).

Usage::

    GET  /console/drafts?status=pending&cursor=…   oldest first, one card per draft
    POST /console/drafts/{id}/approve              action=approve | action=edit (text=…)
    POST /console/drafts/{id}/reject               reason=…

Keyboard (console.js): ``j``/``k`` next/previous draft, ``a`` approve as written,
``e`` edit the text (then Ctrl+Enter approves the edited text), ``r`` reject (type the
reason, Enter). The queue and both decisions are ``/admin/drafts`` in-process, so the
conflict rules (decided twice, expired) and the ``approval.decided`` events are the
operator API's own.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from gateway.console.dispatch import call_admin
from gateway.console.html import esc, form_csrf, notice, page
from gateway.console.session import Session
from gateway.console.views import form_of, query, redirect, view

__all__ = ["approve", "drafts_page", "reject"]

STATUSES = ("pending", "approved", "rejected", "expired")
_DONE = {"approved": "Approved", "edited": "Approved with your edit", "rejected": "Rejected"}
SHORTCUTS = (
    '<details class="shortcuts" open><summary>Keyboard</summary><dl>'
    "<dt><kbd>j</kbd> / <kbd>k</kbd></dt><dd>next / previous draft</dd>"
    "<dt><kbd>a</kbd></dt><dd>approve the selected draft as written</dd>"
    "<dt><kbd>e</kbd></dt>"
    "<dd>edit its text; <kbd>Ctrl</kbd>+<kbd>Enter</kbd> approves the edit</dd>"
    "<dt><kbd>r</kbd></dt><dd>reject: type the reason, <kbd>Enter</kbd></dd>"
    "<dt><kbd>Esc</kbd></dt><dd>leave a text field</dd></dl></details>"
)


def _redactions(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return "none"
    return ", ".join(f"{esc(k)} &times;{esc(v)}" for k, v in sorted(counts.items()))


def _turns(turns: Any) -> str:
    if not turns:
        return '<p class="hint">No customer turns (or erased).</p>'
    return "".join(f'<blockquote class="turn">{esc(t)}</blockquote>' for t in turns)


def _card(session: Session, d: dict[str, Any], index: int) -> str:
    did = str(d.get("id"))
    path = "/console/drafts/" + quote(did, safe="")
    meta = (
        '<dl class="meta">'
        f"<dt>Case</dt><dd><code>{esc(d.get('case_id') or '—')}</code></dd>"
        f"<dt>Use case</dt><dd>{esc(d.get('use_case'))}</dd>"
        f"<dt>Model</dt><dd>{esc(d.get('model') or '—')}</dd>"
        f"<dt>Redactions</dt><dd>{_redactions(d.get('redactions'))}</dd>"
        f"<dt>Created</dt><dd><time>{esc(d.get('created_at'))}</time></dd>"
        f"<dt>Expires</dt><dd><time>{esc(d.get('expires_at'))}</time></dd>"
        "</dl>"
    )
    text = d.get("text")
    status = str(d.get("status"))
    head = (
        f"<header><h2><code>{esc(did)}</code></h2>"
        f'<span class="badge {esc(status)}">{esc(status)}</span></header>'
    )
    body = f"<h3>Customer</h3>{_turns(d.get('customer_turns'))}"
    if status != "pending":
        shown = d.get("approved_text") if status == "approved" else text
        decided = (
            f'<p class="hint">Decided by {esc(d.get("decided_by"))} at '
            f"<time>{esc(d.get('decided_at'))}</time>"
            + (f"; reason: <q>{esc(d.get('reason'))}</q>" if d.get("reason") else "")
            + "</p>"
        )
        return (
            f'<article class="draft card" data-index="{index}">{head}{meta}{body}'
            f'<h3>Text</h3><pre class="text">{esc(shown)}</pre>{decided}</article>'
        )
    actions = (
        f'<form method="post" action="{esc(path)}/approve" class="approve">{form_csrf(session)}'
        f'<label for="text-{index}">Draft reply</label>'
        f'<textarea id="text-{index}" name="text" rows="6">{esc(text)}</textarea>'
        '<div class="buttons">'
        '<button type="submit" name="action" value="approve" class="primary" data-key="a">'
        "Approve <kbd>a</kbd></button>"
        '<button type="submit" name="action" value="edit" data-key="e">'
        "Approve edited text</button></div></form>"
        f'<form method="post" action="{esc(path)}/reject" class="reject">{form_csrf(session)}'
        f'<label for="reason-{index}">Reason to reject</label>'
        f'<input id="reason-{index}" name="reason" required maxlength="1000">'
        '<button type="submit" class="danger" data-key="r">Reject <kbd>r</kbd></button></form>'
    )
    return (
        f'<article class="draft card pending" data-index="{index}" tabindex="-1">'
        f"{head}{meta}{body}{actions}</article>"
    )


@view("approver")
async def drafts_page(request: Request, session: Session) -> Response:
    status = query(request, "status") or "pending"
    res = await call_admin(
        request,
        session.operator,
        "GET",
        "/admin/drafts",
        query={"status": status, "cursor": query(request, "cursor")},
    )
    tabs = "".join(
        f'<a href="/console/drafts?status={s}"{" aria-current=page" if s == status else ""}>{s}</a>'
        for s in STATUSES
    )
    done = query(request, "done")
    top = notice(f"{_DONE[done]} {query(request, 'id') or ''}." if done in _DONE else None)
    top += notice(query(request, "error"), kind="error")
    if not res.ok:
        body = top + notice(res.error_message, kind="error")
        return page(session, "Approvals", body, active="drafts", status=res.status)
    items = res.data.get("data") or []
    cards = "".join(_card(session, d, i) for i, d in enumerate(items))
    if not items:
        cards = f'<p class="empty">No {esc(status)} drafts.</p>'
    more = ""
    if res.data.get("next_cursor"):
        nxt = urlencode({"status": status, "cursor": res.data["next_cursor"]})
        more = f'<p><a href="/console/drafts?{esc(nxt)}">Older…</a></p>'
    body = (
        f'{top}<nav class="tabs">{tabs}</nav>'
        + (SHORTCUTS if status == "pending" else "")
        + f'<section id="queue" data-count="{len(items)}">{cards}</section>{more}'
    )
    return page(session, "Approvals", body, active="drafts", scripts=("console.js", "drafts.js"))


def _after(res_ok: bool, message: str | None, done: str, draft_id: str) -> Response:
    if res_ok:
        return redirect("/console/drafts?" + urlencode({"done": done, "id": draft_id}))
    return redirect("/console/drafts?" + urlencode({"error": message or "failed"}))


@view("approver")
async def approve(request: Request, session: Session) -> Response:
    form = form_of(request)
    draft_id = str(request.path_params["draft_id"])
    body: dict[str, Any] = {}
    edited = form.get("action") == "edit"
    if edited:
        # browsers send textarea line breaks as CRLF; the draft's own are LF
        body["edited_text"] = form.get("text").replace("\r\n", "\n")
    res = await call_admin(
        request, session.operator, "POST", f"/admin/drafts/{draft_id}/approve", body=body
    )
    changed = edited and res.ok and res.data.get("text") is not None
    return _after(res.ok, res.error_message, "edited" if changed else "approved", draft_id)


@view("approver")
async def reject(request: Request, session: Session) -> Response:
    form = form_of(request)
    draft_id = str(request.path_params["draft_id"])
    res = await call_admin(
        request,
        session.operator,
        "POST",
        f"/admin/drafts/{draft_id}/reject",
        body={"reason": form.get("reason").strip()},
    )
    return _after(res.ok, res.error_message, "rejected", draft_id)
