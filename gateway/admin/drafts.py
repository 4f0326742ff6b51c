"""Operator endpoints: drafts (DESIGN.md section 4).

Usage::

    routes()        # mounted under /admin by gateway.admin.admin_routes
"""

from __future__ import annotations

from starlette.routing import Route

from gateway.admin.common import Operation

__all__ = ["OPERATIONS", "routes"]

OPERATIONS: dict[tuple[str, str], Operation] = {}


def routes() -> list[Route]:
    return []
