"""Liveness and readiness.

Usage::

    GET /healthz   -> 200 {"status": "ok"}                 (the process answers)
    GET /readyz    -> 200 {"status": "ready", ...}         or 503 naming what is down
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import JSONBytes
from gateway.errors import GatewayError

__all__ = ["health_routes"]


async def healthz(request: Request) -> Response:
    return JSONBytes({"status": "ok"})


async def readyz(request: Request) -> Response:
    rt = getattr(request.app.state, "runtime", None)
    if rt is None:
        return JSONBytes({"status": "starting", "down": ["runtime"]}, status_code=503)
    down: dict[str, str] = {}
    try:
        await rt.store.ping()
    except GatewayError as exc:
        down["state_store"] = exc.message
    body = {
        "status": "ready" if not down else "not_ready",
        "state_store": rt.store.kind,
        "policy": rt.policy.lineage(),
    }
    if down:
        body["down"] = down
        return JSONBytes(body, status_code=503)
    return JSONBytes(body)


def health_routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
