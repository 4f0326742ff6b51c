"""The operator API (DESIGN.md section 4), one module per area.

Usage::

    admin_routes()          # every operator route, mounted by gateway.app
    ADMIN_OPERATIONS        # their OpenAPI entries, merged by gateway.openapi
"""

from __future__ import annotations

from starlette.routing import Route

from gateway.admin import drafts, lineage, policies, switches
from gateway.admin.common import Operation

__all__ = ["ADMIN_OPERATIONS", "admin_routes"]

_MODULES = (policies, switches, drafts, lineage)

ADMIN_OPERATIONS: dict[tuple[str, str], Operation] = {}
for _module in _MODULES:
    ADMIN_OPERATIONS.update(_module.OPERATIONS)


def admin_routes() -> list[Route]:
    return [route for module in _MODULES for route in module.routes()]
