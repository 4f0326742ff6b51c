"""The gateway's one exception tree, and the OpenAI-shaped error envelope.

Usage::

    raise InvalidRequest("Unknown field 'foo'", param="foo")
    # -> 400 {"error": {"message": ..., "type": "invalid_request_error",
    #                   "code": "invalid_request", "param": "foo"}}

Every class carries its HTTP status, a stable ``code`` and a log level; messages are
safe to show to the client (never message content, never a secret)::

    GatewayError
    ├── InvalidRequest                400 invalid_request
    │   └── RequestTooLarge           413 request_too_large
    ├── RequiredFieldMissing          422 required_field_missing
    ├── AuthenticationFailed          401 invalid_api_key
    ├── PermissionDenied              403 (use_case_not_permitted, action_class_not_permitted,
    │                                      ineligible, tool_call_blocked, forbidden)
    ├── NotFound                      404 (model_not_found, not_found, not_supported)
    ├── Conflict                      409 (draft_already_decided, draft_expired,
    │                                      version_conflict, outcome_exists)
    ├── RateLimited                   429 rate_limited / budget_exhausted
    ├── Unavailable                   503 kill_switch_engaged / consent_unavailable /
    │                                      state_unavailable (fail closed, never retried)
    ├── InternalError                 500 internal_error
    └── UpstreamError                 an upstream failure, after retries and fallback
        ├── UpstreamStatusError       the provider's own 4xx, sanitised
        ├── UpstreamFailed            502 upstream_error
        └── UpstreamTimeout           504 upstream_timeout

Foreign exceptions (aiohttp, litellm, database drivers) are mapped to these at one
boundary each: ``providers/openai_wire.py``, ``providers/litellm_adapter.py``,
``stores/*``.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar

import orjson

__all__ = [
    "AuthenticationFailed",
    "Conflict",
    "GatewayError",
    "InternalError",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RequestTooLarge",
    "RequiredFieldMissing",
    "Unavailable",
    "UpstreamError",
    "UpstreamFailed",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "error_body",
    "sanitise_upstream_message",
]

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type_for(status: int) -> str:
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


class GatewayError(Exception):
    """Base of every error the gateway answers with."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"
    log_level: ClassVar[int] = logging.INFO
    #: The OpenAI SDK retries 5xx and 409 by default; these must not be retried.
    should_retry: ClassVar[bool | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        if status is not None:
            self.status = status  # type: ignore[misc]
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        return error_type_for(self.status)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.should_retry is False:
            headers["x-should-retry"] = "false"
        return headers


def error_body(message: str, type_: str, code: str, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


def error_json(exc: GatewayError) -> bytes:
    return orjson.dumps(exc.body())


class InvalidRequest(GatewayError):
    status = 400
    default_code = "invalid_request"


class RequestTooLarge(InvalidRequest):
    status = 413
    default_code = "request_too_large"


class RequiredFieldMissing(GatewayError):
    status = 422
    default_code = "required_field_missing"


class AuthenticationFailed(GatewayError):
    status = 401
    default_code = "invalid_api_key"
    log_level = logging.WARNING


class PermissionDenied(GatewayError):
    status = 403
    default_code = "forbidden"


class NotFound(GatewayError):
    status = 404
    default_code = "not_found"


class Conflict(GatewayError):
    status = 409
    default_code = "conflict"
    should_retry = False


class RateLimited(GatewayError):
    status = 429
    default_code = "rate_limited"


class Unavailable(GatewayError):
    """Fail closed: a kill switch, the consent service or the state store."""

    status = 503
    default_code = "state_unavailable"
    log_level = logging.WARNING
    should_retry = False


class InternalError(GatewayError):
    status = 500
    default_code = "internal_error"
    log_level = logging.ERROR


class UpstreamError(GatewayError):
    """A provider failure; ``attempts`` lists what was tried (for lineage)."""

    status = 502
    default_code = "upstream_error"
    log_level = logging.WARNING
    should_retry: ClassVar[bool | None] = False

    def __init__(self, message: str, **kwargs: Any) -> None:
        self.attempts: list[dict[str, Any]] = kwargs.pop("attempts", [])
        super().__init__(message, **kwargs)


class UpstreamStatusError(UpstreamError):
    """The provider's own 4xx (not 408/429): returned with its status and code."""

    should_retry: ClassVar[bool | None] = None


class UpstreamFailed(UpstreamError):
    status = 502
    default_code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "upstream_timeout"


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_KEYLIKE = re.compile(r"\b(sk|pk|rk|key|tok)[-_][A-Za-z0-9_-]{8,}\b")
_HEADER = re.compile(r"(?im)^[A-Za-z0-9-]{2,40}:\s*\S.*$")
_LONG_SECRET = re.compile(r"\b[A-Za-z0-9_-]{32,}\b")


def sanitise_upstream_message(message: str, *, limit: int = 300) -> str:
    """Remove credentials, URLs and header values from a provider's message (DESIGN 10.12)."""
    text = _URL.sub("[url]", message)
    text = _BEARER.sub("[credential]", text)
    text = _KEYLIKE.sub("[credential]", text)
    text = _HEADER.sub("[header]", text)
    text = _LONG_SECRET.sub("[redacted]", text)
    text = " ".join(text.split())
    return text[:limit] if text else "The upstream provider rejected the request"
