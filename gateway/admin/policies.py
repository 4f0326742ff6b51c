"""Operator endpoints: policy versions (DESIGN.md section 4).

Usage::

    GET  /admin/policies                                  any operator
    GET  /admin/policies/{version}                        any operator: the bytes as stored
    POST /admin/policies {bundle, reason}                 admin: store a version
    POST /admin/policies/{version}/activate {mode, reason}  admin: enforce or observe
    POST /admin/policies/rollback {to_version?, reason}   incident_responder
    GET  /admin/policy-observations?from=&to=&version=    any operator: what the observed
                                                          version would have changed

The state store holds every version and the append-only activation history (see
gateway/policy_admin.py for what it means). An activation bumps the control-state
version, so every worker of every replica swaps its policy within a second, and is a
``policy.activated`` lineage event (who, when, why; ``rollback: true`` for a rollback).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.common import Operation, parse_body, require, runtime
from gateway.api import JSONBytes
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.lineage import new_lineage_id
from gateway.policy_admin import diff_observed, fold_activations, rollback_target
from gateway.runtime import Runtime, compile_policy
from gateway.settings import ConfigError
from gateway.stores import Activation, StoredBundle
from policies import BundleError, load_bundle
from tracing import rfc3339_ms

__all__ = ["OPERATIONS", "routes"]


class StoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle: str = Field(min_length=1, description="the bundle's YAML text, stored byte for byte")
    reason: str = Field(min_length=1, max_length=1000)


class ActivateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["enforce", "observe"] = "enforce"
    reason: str = Field(min_length=1, max_length=1000)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_version: str | None = Field(default=None, min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=1000)


def _reason(text: str) -> str:
    if not text.strip():
        raise InvalidRequest("A reason is required", param="reason")
    return text.strip()


async def overview(rt: Runtime) -> dict[str, Any]:
    history = await rt.store.activations()
    bundles = {b.version: b for b in await rt.store.list_bundles()}
    enforced, observed = fold_activations(history)

    def current(a: Activation | None) -> dict[str, Any] | None:
        if a is None:
            return None
        stored = bundles.get(a.version)
        return {"version": a.version, "sha256": stored.sha256 if stored else None, "mode": a.mode}

    return {
        "active": current(enforced),
        "observed": current(observed),
        "versions": [
            {
                "version": b.version,
                "sha256": b.sha256,
                "stored_at": rfc3339_ms(b.stored_ms),
                "stored_by": b.stored_by,
            }
            for b in bundles.values()
        ],
        "history": [
            {
                "version": a.version,
                "mode": a.mode,
                "at": rfc3339_ms(a.at_ms),
                "by": a.by,
                "reason": a.reason,
            }
            for a in history
        ],
    }


async def list_policies(request: Request) -> Response:
    require(request, None)
    return JSONBytes(await overview(runtime(request)))


async def get_policy(request: Request) -> Response:
    require(request, None)
    version = request.path_params["version"]
    stored = await runtime(request).store.get_bundle(version)
    if stored is None:
        raise NotFound(f"No policy version {version!r}", param="version")
    return Response(
        stored.text.encode("utf-8"),
        media_type="application/yaml",
        headers={"X-Casegate-Policy-Sha256": stored.sha256},
    )


async def store_policy(request: Request) -> Response:
    op = require(request, "admin")
    body = await parse_body(request, StoreBody)
    reason = _reason(body.reason)
    rt = runtime(request)
    try:
        loaded = load_bundle(body.bundle, source="bundle")
        compile_policy(loaded, "enforce", source="bundle")
    except BundleError as exc:
        where = exc.errors[0][0] if exc.errors else None
        raise InvalidRequest(str(exc), param=f"bundle.{where}" if where else "bundle") from None
    except ConfigError as exc:
        raise InvalidRequest(str(exc), param="bundle") from None
    for name, uc in loaded.policy.use_cases.items():
        if uc.route not in rt.deployments:
            raise InvalidRequest(
                f"bundle: use_cases.{name}.route: route {uc.route!r} is not configured "
                f"(configured: {', '.join(sorted(rt.deployments))})",
                param=f"bundle.use_cases.{name}.route",
            )
    now = int(time.time() * 1000)
    stored = await rt.store.put_bundle(
        StoredBundle(loaded.version, loaded.sha256, loaded.text, now, op.name)
    )
    if stored:
        await rt.lineage.event(
            "policy.stored",
            new_lineage_id(),
            {"version": loaded.version, "sha256": loaded.sha256, "reason": reason, "by": op.name},
        )
    return JSONBytes(
        {"version": loaded.version, "sha256": loaded.sha256, "stored": stored},
        status_code=201 if stored else 200,
    )


async def _activate(
    rt: Runtime, version: str, mode: str, reason: str, by: str, *, rollback: bool
) -> dict[str, Any]:
    stored = await rt.store.get_bundle(version)
    if stored is None:
        raise NotFound(f"No policy version {version!r}", param="version")
    previous, _ = fold_activations(await rt.store.activations())
    control = await rt.store.activate_policy(
        Activation(version, mode, int(time.time() * 1000), by, reason)
    )
    board = rt.switchboard
    assert board is not None
    await board.after_write(control)
    await rt.lineage.event(
        "policy.activated",
        new_lineage_id(),
        {
            "version": version,
            "sha256": stored.sha256,
            "mode": mode,
            "reason": reason,
            "by": by,
            "previous": previous.version if previous is not None else None,
            "rollback": rollback,
        },
    )
    return await overview(rt)


async def activate(request: Request) -> Response:
    op = require(request, "admin")
    body = await parse_body(request, ActivateBody)
    rt = runtime(request)
    version = request.path_params["version"]
    return JSONBytes(
        await _activate(rt, version, body.mode, _reason(body.reason), op.name, rollback=False)
    )


async def rollback(request: Request) -> Response:
    op = require(request, "incident_responder")
    body = await parse_body(request, RollbackBody)
    rt = runtime(request)
    target = rollback_target(await rt.store.activations(), body.to_version)
    if target is None:
        raise Conflict(
            "There is no earlier enforcing version to roll back to; name one with to_version",
            code="no_earlier_version",
        )
    return JSONBytes(
        await _activate(rt, target, "enforce", _reason(body.reason), op.name, rollback=True)
    )


def _instant(text: str | None, param: str, default: datetime) -> datetime:
    if not text:
        return default
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{param!r} must be an ISO 8601 date or datetime", param=param
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def observations(request: Request) -> Response:
    require(request, None)
    now = datetime.now(UTC)
    start = _instant(request.query_params.get("from"), "from", now - timedelta(days=7))
    end = _instant(request.query_params.get("to"), "to", now + timedelta(seconds=1))
    events = await runtime(request).store.ended_events(
        rfc3339_ms(int(start.timestamp() * 1000)), rfc3339_ms(int(end.timestamp() * 1000))
    )
    report = diff_observed(events, version=request.query_params.get("version"))
    return JSONBytes(
        {
            "from": rfc3339_ms(int(start.timestamp() * 1000)),
            "to": rfc3339_ms(int(end.timestamp() * 1000)),
            **report,
        }
    )


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/admin/policies"): (
        "Policy versions, the active and observed ones, and the activation history",
        "operator",
        None,
        (401, 403),
    ),
    ("GET", "/admin/policies/{version}"): (
        "One policy version's bundle text, byte for byte as stored",
        "operator",
        None,
        (401, 403, 404),
    ),
    ("POST", "/admin/policies"): (
        "Store a policy version (same version, other sha256: 409 version_conflict)",
        "admin",
        StoreBody,
        (400, 401, 403, 409),
    ),
    ("POST", "/admin/policies/{version}/activate"): (
        "Activate a version to enforce, or to observe beside the enforcing one",
        "admin",
        ActivateBody,
        (400, 401, 403, 404),
    ),
    ("POST", "/admin/policies/rollback"): (
        "Re-activate the version enforced before the current one (or to_version)",
        "incident_responder",
        RollbackBody,
        (400, 401, 403, 404, 409),
    ),
    ("GET", "/admin/policy-observations"): (
        "What the observed version would have changed: refusals, tools blocked, fields",
        "operator",
        None,
        (400, 401, 403),
    ),
}


def routes() -> list[Route]:
    return [
        Route("/admin/policies", list_policies, methods=["GET"]),
        Route("/admin/policies", store_policy, methods=["POST"]),
        Route("/admin/policies/rollback", rollback, methods=["POST"]),
        Route("/admin/policies/{version:path}/activate", activate, methods=["POST"]),
        Route("/admin/policies/{version:path}", get_policy, methods=["GET"]),
        Route("/admin/policy-observations", observations, methods=["GET"]),
    ]
