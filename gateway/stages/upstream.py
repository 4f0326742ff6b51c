"""Build what goes upstream from an allowlist, and nothing else.

Usage::

    body = build_upstream(chat, scrubbed, decision_tools=("set_priority",), max_tokens=800)

Only ``messages``, the filtered ``tools``/``tool_choice``/``parallel_tool_calls``,
``stream``/``stream_options``, the sampling fields and a capped token limit leave the
gateway. The kept context goes as one system message after the client's leading
system messages. The ``casegate`` object, the client's key and every
``X-Casegate-*`` header stay behind (the providers set their own headers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from gateway.models import FORWARDED_FIELDS, ChatRequest
from gateway.stages.payload import Scrubbed

__all__ = ["build_upstream", "context_message"]


def context_message(context: dict[str, Any]) -> dict[str, str]:
    text = orjson.dumps(context, option=orjson.OPT_SORT_KEYS).decode()
    return {"role": "system", "content": f"Case context (JSON): {text}"}


def _tool_name(tool: Any) -> str | None:
    if isinstance(tool, dict) and tool.get("type", "function") == "function":
        fn = tool.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str):
            return name
    return None


def build_upstream(
    chat: ChatRequest,
    scrubbed: Scrubbed,
    *,
    tools_allowed: Sequence[str],
    max_tokens: int | None,
) -> tuple[dict[str, Any], list[str]]:
    """The upstream body and the names of the tools that go with it."""
    messages = scrubbed.messages
    if scrubbed.context:
        lead = 0
        while lead < len(messages) and messages[lead]["role"] in ("system", "developer"):
            lead += 1
        messages = [*messages[:lead], context_message(scrubbed.context), *messages[lead:]]
    body: dict[str, Any] = {"model": chat.model, "messages": messages}
    for name in FORWARDED_FIELDS:
        value = getattr(chat, name)
        if value is not None:
            body[name] = value
    allowed = set(tools_allowed)
    kept_tools = [t for t in chat.tools or [] if _tool_name(t) in allowed]
    names = [n for n in (_tool_name(t) for t in kept_tools) if n is not None]
    if kept_tools:
        body["tools"] = kept_tools
        choice = chat.tool_choice
        if isinstance(choice, dict):
            fn = choice.get("function")
            chosen = fn.get("name") if isinstance(fn, dict) else None
            choice = choice if chosen in allowed else "auto"
        if choice is not None:
            body["tool_choice"] = choice
        if chat.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = chat.parallel_tool_calls
    limit_field = (
        "max_completion_tokens" if chat.max_completion_tokens is not None else "max_tokens"
    )
    asked = chat.max_completion_tokens or chat.max_tokens
    if asked is not None or max_tokens is not None:
        caps = [v for v in (asked, max_tokens) if v is not None]
        body[limit_field] = min(caps)
    return body, names
