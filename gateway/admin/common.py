"""What every operator endpoint shares: the operator, the role check, typed bodies.

Usage::

    async def engage(request: Request) -> Response:
        op = require(request, "incident_responder")      # 401 / 403
        body = await parse_body(request, EngageBody)     # 400 naming the field
        ...
        return JSONBytes({...})

A client key on an operator endpoint is 401 (the operator directory holds only
operator-token digests); an operator without the role is 403. ``admin`` holds every
role.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gateway.api import read_body
from gateway.auth import Operator
from gateway.errors import InvalidRequest, PermissionDenied
from gateway.runtime import Runtime

__all__ = ["SESSION_OPERATOR", "Operation", "parse_body", "require", "runtime"]

M = TypeVar("M", bound=BaseModel)

#: (method, path) -> (summary, auth, request model or None, error statuses): see gateway.openapi
Operation = tuple[str, str, type[BaseModel] | None, tuple[int, ...]]


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


#: Scope key of an operator already authenticated in-process (a console session, see
#: gateway/console/dispatch.py). Only in-process dispatch sets it: a scope is built by the
#: server for each request, so no client can.
SESSION_OPERATOR = "casegate.session_operator"


def require(request: Request, role: str | None) -> Operator:
    """The calling operator; ``role=None`` means any operator role."""
    op = request.scope.get(SESSION_OPERATOR)
    if not isinstance(op, Operator):
        op = runtime(request).directory.operator_for(request.headers.get("authorization"))
    request.scope["casegate.operator"] = op.name
    if role is not None and not op.has(role):
        raise PermissionDenied(
            f"Operator {op.name!r} lacks the {role!r} role for this endpoint",
            code="role_required",
        )
    return op


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


async def parse_body(request: Request, model: type[M], *, allow_empty: bool = False) -> M:
    raw = await read_body(request, runtime(request).settings.limits.max_body_bytes)
    data: Any = {}
    if raw.strip():
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest("The request body is not valid JSON") from None
    elif not allow_empty:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _loc(tuple(err["loc"])) or None
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise InvalidRequest(f"Invalid '{where}': {msg}" if where else msg, param=where) from None
