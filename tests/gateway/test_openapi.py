"""`GET /openapi.json` documents every mounted route, from the models the routes parse with."""

from __future__ import annotations

import re

from starlette.routing import Route

from gateway.admin import admin_routes
from gateway.api import client_routes
from gateway.console import console_routes
from gateway.health import health_routes
from gateway.models import ChatRequest
from gateway.openapi import openapi_document, openapi_route


def mounted() -> set[tuple[str, str]]:
    routes: list[Route] = [
        *client_routes(),
        *admin_routes(),
        *console_routes(),
        *health_routes(),
        openapi_route(),
    ]
    out = set()
    for route in routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":
                out.add((method.lower(), path))
    return out


def test_every_mounted_route_is_documented() -> None:
    doc = openapi_document()
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert mounted() <= documented
    assert documented <= mounted()


def test_chat_schema_comes_from_the_request_model() -> None:
    doc = openapi_document()
    schema = doc["components"]["schemas"]["ChatRequest"]
    assert schema["properties"].keys() == ChatRequest.model_json_schema()["properties"].keys()
    assert schema["additionalProperties"] is False
    assert "CasegateBody" in doc["components"]["schemas"]
