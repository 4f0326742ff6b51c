"""Operator endpoints: kill switches (DESIGN.md section 4).

Usage::

    GET    /admin/kill-switches                      any operator
    POST   /admin/kill-switches {scope, mode, reason} incident_responder
    DELETE /admin/kill-switches/{scope}?reason=...    incident_responder (or {reason})

An engage or release is durable in the state store before it answers; it bumps the
control-state version, is fanned out to every worker and replica (gateway/fanout.py),
is in force on the answering worker before the answer, and is a ``switch.engaged`` /
``switch.released`` lineage event under its own lineage id (who, when, why).
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.common import Operation, parse_body, require, runtime
from gateway.api import JSONBytes
from gateway.errors import InvalidRequest, NotFound
from gateway.lineage import new_lineage_id
from gateway.runtime import Runtime
from gateway.switchboard import ACK_LIVE_MS, describe, engage_switch
from policies import ScopeError, parse_scope, valid_scopes

__all__ = ["OPERATIONS", "routes"]


class EngageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: str = Field(min_length=1, max_length=300)
    mode: Literal["halt", "degrade"] = "halt"
    reason: str = Field(min_length=1, max_length=1000)


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, min_length=1, max_length=1000)


def _scope(rt: Runtime, text: str, *, param: str) -> str:
    deployments = {route: [d.model for d in deps] for route, deps in rt.deployments.items()}
    try:
        return parse_scope(text, valid_scopes(rt.policy.loaded.policy, deployments))
    except ScopeError as exc:
        raise InvalidRequest(
            f"Scope {text!r} names nothing; valid scopes: {', '.join(exc.valid)}", param=param
        ) from None


def _reason(text: str | None) -> str:
    reason = (text or "").strip()
    if not reason:
        raise InvalidRequest("A reason is required", param="reason")
    return reason


async def state(rt: Runtime) -> dict[str, object]:
    """The switch state as the store (the truth) has it, and who enforces which version.

    Read straight from the store, not from this worker's copy, so that asking does not
    itself make this worker catch up."""
    control = await rt.store.read_control()
    now = int(time.time() * 1000)
    acks = await rt.store.acknowledgements(now - ACK_LIVE_MS)
    return {
        "switches": describe(control.switches),
        "version": control.version,
        "acknowledged_by": [
            {"replica": a.replica, "worker": a.worker, "version": a.version} for a in acks
        ],
    }


async def list_switches(request: Request) -> Response:
    require(request, None)
    return JSONBytes(await state(runtime(request)))


async def engage(request: Request) -> Response:
    op = require(request, "incident_responder")
    body = await parse_body(request, EngageBody)
    rt = runtime(request)
    scope = _scope(rt, body.scope, param="scope")
    reason = _reason(body.reason)
    await engage_switch(rt, scope, body.mode, reason, op.name)  # shared with tripwires
    return JSONBytes(await state(rt))


async def release(request: Request) -> Response:
    op = require(request, "incident_responder")
    rt = runtime(request)
    body = await parse_body(request, ReleaseBody, allow_empty=True)
    reason = _reason(body.reason or request.query_params.get("reason"))
    text: str = request.path_params["scope"]
    board = rt.switchboard
    assert board is not None
    # an engaged scope can be released even if it no longer names anything (a tool
    # dropped by a newer bundle); only then is an unknown scope a 400
    engaged = {r.scope for r in board.rows}
    scope = text if text in engaged else _scope(rt, text, param="scope")
    version = await rt.store.release_switch(scope)
    if version is None:
        raise NotFound(f"Kill switch {scope!r} is not engaged", param="scope")
    await board.after_write(version)
    await rt.lineage.event(
        "switch.released",
        new_lineage_id(),
        {"scope": scope, "reason": reason, "by": op.name, "version": version},
    )
    return JSONBytes(await state(rt))


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/admin/kill-switches"): (
        "Engaged kill switches, the state version and which workers acknowledged it",
        "operator",
        None,
        (401, 403),
    ),
    ("POST", "/admin/kill-switches"): (
        "Engage (or re-engage) a kill switch; in force everywhere within a second",
        "operator:incident_responder",
        EngageBody,
        (400, 401, 403, 503),
    ),
    ("DELETE", "/admin/kill-switches/{scope}"): (
        "Release a kill switch (scope raw or percent-encoded; reason in body or ?reason=)",
        "operator:incident_responder",
        None,
        (400, 401, 403, 404, 503),
    ),
}


def routes() -> list[Route]:
    return [
        Route("/admin/kill-switches", list_switches, methods=["GET"]),
        Route("/admin/kill-switches", engage, methods=["POST"]),
        Route("/admin/kill-switches/{scope:path}", release, methods=["DELETE"]),
    ]
