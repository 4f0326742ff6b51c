"""Sign-in with an operator token, sign-out, and the console's front door.

Usage::

    GET  /console            -> the first page the operator's roles allow (or sign-in)
    GET  /console/login      -> the sign-in form (sets the login CSRF cookie)
    POST /console/login      -> token=…&csrf=…&next=… ; on success the session cookie
    POST /console/logout     -> clears the session cookie

The token is checked against the operator directory exactly as the operator API checks
a bearer token and then forgotten: the session cookie carries the operator's name only.
The sign-in form's CSRF protection is a double-submit cookie (there is no session yet).
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.common import runtime
from gateway.console.html import allowed_pages, esc, page
from gateway.console.session import COOKIE, LOGIN_CSRF_COOKIE, SESSION_TTL_S, Session, is_https
from gateway.console.views import Form, redirect, sessions, view
from gateway.errors import AuthenticationFailed

__all__ = ["home", "login_form", "login_submit", "logout"]


def _safe_next(target: str) -> str:
    # only our own pages: no scheme, no host, no protocol-relative "//"
    if target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console"


def _login_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    nxt = _safe_next(request.query_params.get("next", "/console"))
    err = f'<p class="notice error" role="alert">{esc(error)}</p>' if error else ""
    body = (
        f'{err}<form method="post" action="/console/login" class="card narrow">'
        f'<input type="hidden" name="csrf" value="{esc(token)}">'
        f'<input type="hidden" name="next" value="{esc(nxt)}">'
        '<label for="token">Operator token</label>'
        '<input id="token" name="token" type="password" autocomplete="off" required autofocus>'
        '<button type="submit" class="primary">Sign in</button>'
        '<p class="hint">The token is checked once; the session keeps only who you are '
        f"(for {SESSION_TTL_S // 3600} hours, or until you sign out).</p></form>"
    )
    resp = page(None, "Sign in", body, status=status, scripts=())
    resp.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=600,
        path="/console/login",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return resp


async def login_form(request: Request) -> Response:
    if sessions(request).read(request) is not None:
        return redirect(_safe_next(request.query_params.get("next", "/console")))
    return _login_page(request)


async def login_submit(request: Request) -> Response:
    form = await Form.read(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    presented = form.get("csrf")
    if not expected or not hmac.compare_digest(expected, presented):
        return _login_page(request, error="The sign-in form expired; try again.", status=403)
    try:
        operator = runtime(request).directory.operator_for("Bearer " + form.get("token"))
    except AuthenticationFailed:
        return _login_page(request, error="Unknown operator token.", status=401)
    resp = redirect(_safe_next(form.get("next", "/console")))
    resp.set_cookie(
        COOKIE,
        sessions(request).issue(operator),
        max_age=SESSION_TTL_S,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return resp


@view(None)
async def logout(request: Request, session: Session) -> Response:
    resp = redirect("/console/login")
    resp.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return resp


async def home(request: Request) -> Response:
    session = sessions(request).read(request)
    if session is None:
        return redirect("/console/login")
    pages = allowed_pages(session)
    if pages:
        return redirect(f"/console/{pages[0][0]}")
    return page(session, "Casegate console", "<p>Your roles give access to no console page.</p>")
