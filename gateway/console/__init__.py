"""The operator console at ``/console``: server-rendered pages over the operator API.

Usage::

    console_routes()        # mounted by gateway.app
    CONSOLE_OPERATIONS      # their OpenAPI entries, merged by gateway.openapi

Sign in with an operator token; the session cookie (HttpOnly, SameSite=Strict, Secure
over TLS) names the operator, never the token. Each page needs the role its operator
API needs (switches: ``incident_responder``; approvals: ``approver``; lineage and
scorecard: ``auditor``; ``admin`` sees all), and every read and write is the operator
API itself, called in-process (gateway/console/dispatch.py). Scripts and styles are
served from ``static/`` under a strict Content-Security-Policy; nothing is loaded from
the internet.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.common import Operation
from gateway.console import drafts, lineage, scorecard, signin, switches
from gateway.console.html import secure
from gateway.errors import NotFound

__all__ = ["CONSOLE_OPERATIONS", "console_routes"]

STATIC = Path(__file__).parent / "static"
_ASSET = re.compile(r"^[a-z][a-z0-9-]*\.(css|js)$")
_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}


async def static(request: Request) -> Response:
    name = str(request.path_params["name"])
    match = _ASSET.match(name)
    path = STATIC / name
    if match is None or not path.is_file():
        raise NotFound(f"No such console asset: {name}")
    resp = Response(
        path.read_bytes(),
        media_type=_TYPES[match.group(1)],
        headers={"Cache-Control": "no-cache"},
    )
    return secure(resp)


def console_routes() -> list[Route]:
    return [
        Route("/console", signin.home, methods=["GET"]),
        Route("/console/login", signin.login_form, methods=["GET"]),
        Route("/console/login", signin.login_submit, methods=["POST"]),
        Route("/console/logout", signin.logout, methods=["POST"]),
        Route("/console/static/{name}", static, methods=["GET"]),
        Route("/console/switches", switches.switches_page, methods=["GET"]),
        Route("/console/switches/live", switches.live, methods=["GET"]),
        Route("/console/switches/engage", switches.engage, methods=["POST"]),
        Route("/console/switches/release", switches.release, methods=["POST"]),
        Route("/console/drafts", drafts.drafts_page, methods=["GET"]),
        Route("/console/drafts/{draft_id}/approve", drafts.approve, methods=["POST"]),
        Route("/console/drafts/{draft_id}/reject", drafts.reject, methods=["POST"]),
        Route("/console/lineage", lineage.lineage_page, methods=["GET"]),
        Route("/console/scorecard", scorecard.scorecard_page, methods=["GET"]),
    ]


def _html(summary: str, auth: str = "session") -> Operation:
    return (summary, auth, None, (401, 403))


CONSOLE_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/console"): _html("Console: the first page the session's roles allow", "none"),
    ("GET", "/console/login"): _html("Console sign-in form (HTML)", "none"),
    ("POST", "/console/login"): _html("Console sign-in: form token, csrf, next", "none"),
    ("POST", "/console/logout"): _html("Console sign-out (form, csrf)"),
    ("GET", "/console/static/{name}"): _html("Console script or stylesheet", "none"),
    ("GET", "/console/switches"): _html("Console: kill switches (incident_responder)"),
    ("GET", "/console/switches/live"): _html(
        "Console: switch table for polling, {version, rows, acks} (incident_responder)"
    ),
    ("POST", "/console/switches/engage"): _html(
        "Console: engage a switch (form scope, mode, reason, csrf; then confirm=yes)"
    ),
    ("POST", "/console/switches/release"): _html(
        "Console: release a switch (form scope, csrf; then reason and confirm=yes)"
    ),
    ("GET", "/console/drafts"): _html("Console: the approval queue (approver)"),
    ("POST", "/console/drafts/{draft_id}/approve"): _html(
        "Console: approve a draft (form action=approve|edit, text, csrf)"
    ),
    ("POST", "/console/drafts/{draft_id}/reject"): _html(
        "Console: reject a draft (form reason, csrf)"
    ),
    ("GET", "/console/lineage"): _html("Console: a case's lineage timeline (auditor)"),
    ("GET", "/console/scorecard"): _html("Console: the weekly scorecard (auditor)"),
}
