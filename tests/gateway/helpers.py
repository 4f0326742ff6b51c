"""Request builders shared by the gateway tests."""

from __future__ import annotations

from typing import Any

from tests.kit.asgi import asgi_call as asgi_call  # re-exported for the gateway tests

ELIGIBLE = {"authenticated": True, "consent": {"ai_assist": True}, "region": "GB"}
CONTEXT = {"product_id": "P-100", "account_status": "active"}


def headers(use_case: str = "triage", **extra: str) -> dict[str, str]:
    out = {"X-Casegate-Use-Case": use_case}
    for key, value in extra.items():
        out["X-Casegate-" + "-".join(p.capitalize() for p in key.split("_"))] = value
    return out


def casegate(
    customer: dict[str, Any] | None = None, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "casegate": {
            "customer": ELIGIBLE if customer is None else customer,
            "context": CONTEXT if context is None else context,
        }
    }


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


SET_PRIORITY = {
    "type": "function",
    "function": {
        "name": "set_priority",
        "parameters": {
            "type": "object",
            "properties": {"priority": {"type": "string", "enum": ["P2", "P3"]}},
        },
    },
}
ROUTE_TO_QUEUE = {
    "type": "function",
    "function": {
        "name": "route_to_queue",
        "parameters": {"type": "object", "properties": {"queue": {"type": "string"}}},
    },
}
DELETE_ACCOUNT = {
    "type": "function",
    "function": {"name": "delete_account", "parameters": {"type": "object", "properties": {}}},
}
