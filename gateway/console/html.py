"""The console's HTML: escaping, the page frame, and the security headers.

Usage::

    body = f"<p>{esc(reason)}</p>"                  # every dynamic value goes through esc()
    return page(request, session, "Kill switches", body, active="switches")

No template engine: pages are small f-strings built from escaped values. Scripts and
styles are files under ``static/`` (the Content-Security-Policy allows no inline
script or style), so a value that slipped through escaping still could not run.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.responses import HTMLResponse, Response

if TYPE_CHECKING:
    from gateway.console.session import Session

__all__ = ["CSP", "PAGES", "allowed_pages", "esc", "form_csrf", "page", "secure"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)

#: (slug, title, role that sees it)
PAGES = (
    ("switches", "Kill switches", "incident_responder"),
    ("drafts", "Approvals", "approver"),
    ("lineage", "Case lineage", "auditor"),
    ("scorecard", "Scorecard", "auditor"),
)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def secure(response: Response) -> Response:
    h = response.headers
    h["Content-Security-Policy"] = CSP
    h["X-Frame-Options"] = "DENY"
    h["Referrer-Policy"] = "no-referrer"
    h["X-Content-Type-Options"] = "nosniff"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h.setdefault("Cache-Control", "no-store")
    return response


def allowed_pages(session: Session) -> list[tuple[str, str, str]]:
    return [p for p in PAGES if session.operator.has(p[2])]


def form_csrf(session: Session) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(session.csrf)}">'


def _nav(session: Session | None, active: str) -> str:
    if session is None:
        return ""
    links = "".join(
        f'<a href="/console/{slug}"{" aria-current=page" if slug == active else ""}>'
        f"{esc(title)}</a>"
        for slug, title, _ in allowed_pages(session)
    )
    roles = ", ".join(sorted(session.operator.roles))
    return (
        f'<nav class="top">{links}</nav>'
        f'<div class="who"><span title="roles: {esc(roles)}">{esc(session.operator.name)}</span>'
        f'<form method="post" action="/console/logout">{form_csrf(session)}'
        f'<button type="submit" class="link">Sign out</button></form></div>'
    )


def page(
    session: Session | None,
    title: str,
    body: str,
    *,
    active: str = "",
    status: int = 200,
    scripts: Iterable[str] = ("console.js",),
    headers: dict[str, str] | None = None,
) -> Response:
    script_tags = "".join(
        f'<script src="/console/static/{esc(s)}" defer></script>' for s in scripts
    )
    doc = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Casegate console</title>"
        '<link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/console/static/console.css">'
        f"{script_tags}</head>"
        f'<body data-page="{esc(active)}"><header class="bar">'
        '<a class="brand" href="/console">Casegate</a>'
        f"{_nav(session, active)}</header>"
        f"<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )
    return secure(HTMLResponse(doc, status_code=status, headers=headers))


def notice(text: str | None, *, kind: str = "ok") -> str:
    if not text:
        return ""
    role = "alert" if kind == "error" else "status"
    return f'<p class="notice {esc(kind)}" role="{role}">{esc(text)}</p>'


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, cls: str = "") -> str:
    """``rows`` are already-escaped cell HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
