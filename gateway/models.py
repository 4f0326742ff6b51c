"""Typed request and response models of the client API (and the OpenAPI document's source).

Usage::

    chat = parse_chat_request(raw_bytes)          # InvalidRequest naming the field
    facts = read_governance(headers)              # InvalidRequest naming the header

The ``casegate`` body object and its ``customer`` are closed; ``context`` is open
(it is minimised later). Fields never forwarded upstream are accepted and dropped;
any other unknown field is a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import InvalidRequest

__all__ = [
    "CasegateBody",
    "ChatRequest",
    "CustomerFacts",
    "Governance",
    "parse_chat_request",
    "read_governance",
]

ACTION_CLASS_VALUES = ("recommendation", "draft", "automation")
#: Accepted from the client and never forwarded upstream (DESIGN.md section 3).
DROPPED_FIELDS = frozenset({"user", "metadata", "safety_identifier", "prompt_cache_key", "store"})
#: Forwarded upstream as they are (tools are filtered, max tokens capped).
FORWARDED_FIELDS = (
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
    "response_format",
)


class CustomerFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    authenticated: bool | None = None
    consent: dict[str, bool] = Field(default_factory=dict)
    region: str | None = Field(default=None, max_length=16)
    attributes: dict[str, Any] = Field(default_factory=dict)


class CasegateBody(BaseModel):
    """The governance object in the request body (``extra_body`` in the OpenAI SDK)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer: CustomerFacts = Field(default_factory=CustomerFacts)
    context: dict[str, Any] = Field(default_factory=dict)


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: the OpenAI request plus the ``casegate`` object."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200, description="A route name")
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stop: str | list[str] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=1, description="Only 1 is supported")
    # accepted, never forwarded
    user: str | None = None
    metadata: dict[str, Any] | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    store: bool | None = None
    casegate: CasegateBody = Field(default_factory=CasegateBody)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def parse_chat_request(raw: bytes) -> ChatRequest:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _loc(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            if len(err["loc"]) == 1:
                raise InvalidRequest(
                    f"Unsupported field '{where}': Casegate forwards only an allowlist of fields",
                    param=where,
                ) from None
            raise InvalidRequest(f"Unknown field '{where}'", param=where) from None
        if where == "n":
            raise InvalidRequest("Only n=1 is supported", param="n") from None
        raise InvalidRequest(f"Invalid '{where}': {err['msg']}", param=where) from None


@dataclass(frozen=True)
class Governance:
    use_case: str
    action_class: str | None
    case_id: str | None
    customer_id: str | None
    queue: str | None
    segment: str | None
    dry_run: bool


def _printable(value: str, limit: int) -> bool:
    return 0 < len(value) <= limit and all(" " <= c <= "~" for c in value)


def read_governance(headers: Mapping[str, str]) -> Governance:
    use_case = headers.get("x-casegate-use-case")
    if not use_case:
        raise InvalidRequest(
            "Missing header X-Casegate-Use-Case: name the use case of this call",
            param="X-Casegate-Use-Case",
        )
    if not _printable(use_case, 64):
        raise InvalidRequest("Invalid X-Casegate-Use-Case", param="X-Casegate-Use-Case")
    action = headers.get("x-casegate-action-class")
    if action is not None and action not in ACTION_CLASS_VALUES:
        raise InvalidRequest(
            "X-Casegate-Action-Class must be recommendation, draft or automation",
            param="X-Casegate-Action-Class",
        )
    case_id = headers.get("x-casegate-case-id")
    if case_id is not None and not _printable(case_id, 128):
        raise InvalidRequest(
            "X-Casegate-Case-Id must be 1-128 printable ASCII characters",
            param="X-Casegate-Case-Id",
        )
    customer = headers.get("x-casegate-customer-id")
    if customer is not None and not (0 < len(customer) <= 256):
        raise InvalidRequest(
            "X-Casegate-Customer-Id must be 1-256 characters", param="X-Casegate-Customer-Id"
        )
    out: dict[str, str | None] = {}
    for name in ("queue", "segment"):
        value = headers.get(f"x-casegate-{name}")
        if value is not None and not _printable(value, 64):
            header = f"X-Casegate-{name.capitalize()}"
            raise InvalidRequest(f"{header} must be 1-64 printable ASCII characters", param=header)
        out[name] = value
    dry = headers.get("x-casegate-dry-run", "false").lower()
    if dry not in ("true", "false", "1", "0"):
        raise InvalidRequest("X-Casegate-Dry-Run must be true or false", param="X-Casegate-Dry-Run")
    return Governance(
        use_case=use_case,
        action_class=action,
        case_id=case_id,
        customer_id=customer,
        queue=out["queue"],
        segment=out["segment"],
        dry_run=dry in ("true", "1"),
    )


Decision = Literal["allowed", "degraded", "pending_approval", "refused"]
