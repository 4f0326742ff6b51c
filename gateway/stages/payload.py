"""Validate what the client sent, minimise the context, redact every string.

Usage::

    validate_messages(chat.messages, allowed_unscanned=uc.allowed_unscanned_parts)
    scrubbed = scrub_payload(messages, kept_context, redactor, vault)

Every string that will go upstream passes through the redactor (or, for a use case
with no entities, through ``strip_invisible``): message content of every role, text
content parts, the ``name`` field, assistant tool-call arguments (parsed as JSON and
redacted value by value, so ``\\u0040``-escaped addresses cannot slip past), tool
results and the kept context values. ``parts`` says which of these were scanned, for
the lineage record's ``checks``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import InvalidRequest

__all__ = ["Scrubbed", "scrub_payload", "validate_messages"]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "function_call", "audio"}
)


def validate_messages(messages: list[dict[str, Any]], *, allowed_unscanned: frozenset[str]) -> None:
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = msg.get("role")
        if role not in ROLES:
            raise InvalidRequest(
                f"{where}.role must be one of {sorted(ROLES)}", param=f"{where}.role"
            )
        unknown = set(msg) - _MESSAGE_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise InvalidRequest(f"Unknown field '{where}.{key}'", param=f"{where}.{key}")
        if "function_call" in msg or "audio" in msg:
            key = "function_call" if "function_call" in msg else "audio"
            raise InvalidRequest(f"'{where}.{key}' is not supported", param=f"{where}.{key}")
        content = msg.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    raise InvalidRequest(
                        f"{where}.content[{j}] must be an object", param=f"{where}.content[{j}]"
                    )
                ptype = part.get("type")
                if ptype == "text" or (role == "assistant" and ptype == "refusal"):
                    key = "text" if ptype == "text" else "refusal"
                    if not isinstance(part.get(key), str):
                        raise InvalidRequest(
                            f"{where}.content[{j}].{key} must be a string",
                            param=f"{where}.content[{j}].{key}",
                        )
                elif ptype not in allowed_unscanned:
                    raise InvalidRequest(
                        f"{where}.content[{j}] has type {ptype!r}, which this use case does not "
                        "allow: only text can be scanned for personal data",
                        param=f"{where}.content[{j}].type",
                    )
        elif content is not None and not isinstance(content, str):
            raise InvalidRequest(
                f"{where}.content must be a string or an array of parts", param=f"{where}.content"
            )
        elif content is None and role != "assistant":
            raise InvalidRequest(f"{where}.content is required", param=f"{where}.content")
        if role == "tool" and not isinstance(msg.get("tool_call_id"), str):
            raise InvalidRequest(f"{where}.tool_call_id is required", param=f"{where}.tool_call_id")
        calls = msg.get("tool_calls")
        if calls is not None:
            if role != "assistant" or not isinstance(calls, list):
                raise InvalidRequest(
                    f"{where}.tool_calls is only valid on assistant messages",
                    param=f"{where}.tool_calls",
                )
            for j, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, dict) else None
                if (
                    not isinstance(fn, dict)
                    or not isinstance(fn.get("name"), str)
                    or not isinstance(fn.get("arguments", ""), str)
                ):
                    raise InvalidRequest(
                        f"{where}.tool_calls[{j}] needs string function name and arguments",
                        param=f"{where}.tool_calls[{j}]",
                    )
        if "name" in msg and not isinstance(msg["name"], str):
            raise InvalidRequest(f"{where}.name must be a string", param=f"{where}.name")


Redact = Callable[[str], str]


@dataclass
class Scrubbed:
    messages: list[dict[str, Any]]
    context: dict[str, Any]
    parts: set[str] = field(default_factory=set)


def _scrub_json_value(value: Any, redact: Redact) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_scrub_json_value(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_json_value(v, redact) for k, v in value.items()}
    return value


def scrub_arguments(arguments: str, redact: Redact) -> str:
    """Redact tool-call arguments: parsed and redacted value by value when JSON."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return redact(arguments)
    return orjson.dumps(_scrub_json_value(parsed, redact)).decode()


def scrub_payload(
    messages: list[dict[str, Any]], context: Mapping[str, Any], redact: Redact
) -> Scrubbed:
    out: list[dict[str, Any]] = []
    parts: set[str] = set()
    for msg in messages:
        new = dict(msg)
        role = msg["role"]
        content = msg.get("content")
        if isinstance(content, str):
            new["content"] = redact(content)
            parts.add("tool_results" if role == "tool" else "messages")
        elif isinstance(content, list):
            new_parts = []
            for part in content:
                ptype = part.get("type")
                if ptype == "text":
                    new_parts.append({**part, "text": redact(part["text"])})
                    parts.add("content_parts")
                elif ptype == "refusal":
                    new_parts.append({**part, "refusal": redact(part["refusal"])})
                    parts.add("content_parts")
                else:
                    new_parts.append(part)
                    parts.add(f"unscanned:{ptype}")
            new["content"] = new_parts
            if role == "tool":
                parts.add("tool_results")
        if isinstance(msg.get("name"), str):
            new["name"] = redact(msg["name"])
        if isinstance(msg.get("refusal"), str):
            new["refusal"] = redact(msg["refusal"])
        calls = msg.get("tool_calls")
        if calls:
            new_calls = []
            for call in calls:
                fn = call["function"]
                new_calls.append(
                    {
                        **call,
                        "function": {
                            **fn,
                            "arguments": scrub_arguments(fn.get("arguments", ""), redact),
                        },
                    }
                )
            new["tool_calls"] = new_calls
            parts.add("tool_arguments")
        out.append(new)
    kept = _scrub_json_value(dict(context), redact)
    if context:
        parts.add("context")
    return Scrubbed(out, kept, parts)
