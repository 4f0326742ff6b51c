"""What every console handler shares: the session guard, CSRF, forms, redirects.

Usage::

    @view("approver")                      # sign-in, role (None: any) and POST CSRF checks
    async def drafts_page(request: Request, session: Session) -> Response: ...

A request without a valid session is sent to the sign-in page (or 401 for JSON); an
operator without the page's role gets a 403 page; a POST whose ``csrf`` field is not
the session's token is refused with 403 before the handler runs.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from gateway.admin.common import runtime
from gateway.api import read_body
from gateway.console.html import esc, page, secure
from gateway.console.session import Session, Sessions

__all__ = ["Form", "redirect", "sessions", "view"]

FORM_LIMIT = 256 * 1024
Handler = Callable[[Request, Session], Awaitable[Response]]


def sessions(request: Request) -> Sessions:
    state = request.app.state
    found: Sessions | None = getattr(state, "console_sessions", None)
    if found is None:
        found = state.console_sessions = Sessions.for_runtime(runtime(request))
    return found


class Form:
    """An ``application/x-www-form-urlencoded`` body (no multipart: the console sends none)."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields

    @classmethod
    async def read(cls, request: Request) -> Form:
        raw = await read_body(request, FORM_LIMIT)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return cls({})
        return cls(parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True))

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default


def redirect(url: str) -> Response:
    return secure(RedirectResponse(url, status_code=303))


def forbidden(session: Session, message: str) -> Response:
    return page(
        session,
        "Not allowed",
        f'<p class="notice error" role="alert">{esc(message)}</p>',
        status=403,
    )


Endpoint = Callable[[Request], Awaitable[Response]]


def view(role: str | None, *, json: bool = False) -> Callable[[Handler], Endpoint]:
    def wrap(handler: Handler) -> Endpoint:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            session = sessions(request).read(request)
            if session is None:
                if json or request.method != "GET":
                    return secure(JSONResponse({"error": "signed_out"}, status_code=401))
                return redirect("/console/login?next=" + quote(request.url.path, safe="/"))
            if role is not None and not session.operator.has(role):
                if json:
                    return secure(JSONResponse({"error": "role_required"}, status_code=403))
                return forbidden(
                    session,
                    f"Operator {session.operator.name!r} lacks the {role!r} role for this page.",
                )
            if request.method == "POST":
                form = await Form.read(request)
                if not Sessions.check_csrf(session, form.get("csrf")):
                    return forbidden(session, "The form's CSRF token is missing or wrong.")
                request.state.form = form
            return await handler(request, session)

        return run

    return wrap


def form_of(request: Request) -> Form:
    form: Form = request.state.form
    return form


def query(request: Request, name: str) -> str | None:
    value: Any = request.query_params.get(name)
    return value if isinstance(value, str) and value else None
