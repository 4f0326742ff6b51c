"""``GET /openapi.json``: generated from the same pydantic models the routes parse with.

Usage::

    doc = openapi_document()          # dict; a test checks every mounted route is in it

Each operation names its request model (when it has a body); schemas come from
``model_json_schema`` so the document cannot drift from validation.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.models import ChatRequest
from gateway.records import OutcomeBody

__all__ = ["OPERATIONS", "openapi_document", "openapi_route"]

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": "string"},
                "param": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "code", "param"],
        }
    },
    "required": ["error"],
}

#: (method, path) -> (summary, auth, request model or None, error statuses)
OPERATIONS: dict[tuple[str, str], tuple[str, str, type[BaseModel] | None, tuple[int, ...]]] = {
    ("POST", "/v1/chat/completions"): (
        "Governed chat completion (OpenAI-compatible; stream or not)",
        "client",
        ChatRequest,
        (400, 401, 403, 404, 413, 422, 429, 502, 503, 504),
    ),
    ("GET", "/v1/models"): ("The route names this key may use", "client", None, (401,)),
    ("GET", "/v1/drafts/{draft_id}"): (
        "A draft of this client: status, and once approved its text and release token",
        "client",
        None,
        (401, 404),
    ),
    ("GET", "/.well-known/casegate-release-keys"): (
        "The public keys (JWKS) that verify release tokens offline",
        "none",
        None,
        (),
    ),
    ("POST", "/v1/lineage/{id}/outcome"): (
        "Record the outcome of a call (one per record; only the client that made it)",
        "client",
        OutcomeBody,
        (400, 401, 404, 409),
    ),
    ("GET", "/v1/{rest}"): ("Any other OpenAI path: 404 not_supported", "none", None, (404,)),
    ("POST", "/v1/{rest}"): ("Any other OpenAI path: 404 not_supported", "none", None, (404,)),
    ("PUT", "/v1/{rest}"): ("Any other OpenAI path: 404 not_supported", "none", None, (404,)),
    ("PATCH", "/v1/{rest}"): ("Any other OpenAI path: 404 not_supported", "none", None, (404,)),
    ("DELETE", "/v1/{rest}"): ("Any other OpenAI path: 404 not_supported", "none", None, (404,)),
    ("GET", "/healthz"): ("Liveness", "none", None, ()),
    ("GET", "/readyz"): ("Readiness, naming the dependency that is down", "none", None, (503,)),
    ("GET", "/openapi.json"): ("This document", "none", None, ()),
}


def openapi_document() -> dict[str, Any]:
    from gateway.admin import ADMIN_OPERATIONS
    from gateway.console import CONSOLE_OPERATIONS

    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": _ERROR}
    for (method, path), (summary, auth, model, errors) in {
        **OPERATIONS,
        **ADMIN_OPERATIONS,
        **CONSOLE_OPERATIONS,
    }.items():
        op: dict[str, Any] = {
            "summary": summary,
            "operationId": method.lower() + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_"),
            "responses": {"200": {"description": "OK"}},
        }
        if auth == "session":  # the console: an HTML page behind its session cookie
            op["security"] = [{"console_session": []}]
            op["x-casegate-auth"] = auth
        elif auth != "none":
            op["security"] = [{"bearer": []}]
            op["x-casegate-auth"] = auth
        if model is not None:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas[name] = sub
            schemas[model.__name__] = schema
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
        for status in errors:
            op["responses"][str(status)] = {
                "description": "Error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        params = re.findall(r"\{([a-z_]+)\}", path)
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Casegate", "version": "0.1.0"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "console_session": {"type": "apiKey", "in": "cookie", "name": "casegate_console"},
            },
        },
    }


async def _serve(request: Request) -> Response:
    from gateway.api import JSONBytes

    doc = getattr(request.app.state, "openapi", None)
    if doc is None:
        doc = request.app.state.openapi = openapi_document()
    return JSONBytes(doc)


def openapi_route() -> Route:
    return Route("/openapi.json", _serve, methods=["GET"])
