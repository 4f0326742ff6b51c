"""The built-in OFFLINE DEMO provider of the embedded default. It calls no model.

Usage::

    casegate serve        # with no config, route `support-default` is served by this

It answers every call with a fixed, clearly labelled text, so a newcomer sees the
whole governed path (auth, policy, redaction, lineage) work on a fresh machine with
no provider key. When tools reached it (the automation class), it proposes one call
per tool with arguments taken from the tool's JSON schema ``enum``s or ``default``s,
so the tool guard has something real to judge.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.providers.base import Deployment

__all__ = ["DemoProvider"]

DEMO_TEXT = (
    "[Casegate offline demo route: no model was called] "
    "I received {n} message(s). A configured provider would answer here; "
    "see the README's config reference to add one."
)


def _demo_arguments(tool: dict[str, Any]) -> str:
    params = tool.get("function", {}).get("parameters") or {}
    props = params.get("properties") if isinstance(params, dict) else None
    args: dict[str, Any] = {}
    if isinstance(props, dict):
        for key, spec in props.items():
            if not isinstance(spec, dict):
                continue
            if isinstance(spec.get("enum"), list) and spec["enum"]:
                args[key] = spec["enum"][0]
            elif "default" in spec:
                args[key] = spec["default"]
    return orjson.dumps(args).decode()


def _reply(deployment: Deployment, body: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    tools = body.get("tools") or []
    calls = [
        {
            "id": f"call_demo_{i}",
            "type": "function",
            "function": {
                "name": t.get("function", {}).get("name", ""),
                "arguments": _demo_arguments(t),
            },
        }
        for i, t in enumerate(tools)
        if isinstance(t, dict)
    ]
    if calls:
        return None, calls
    return DEMO_TEXT.format(n=len(body.get("messages") or [])), []


def _usage(body: dict[str, Any]) -> dict[str, int]:
    prompt = sum(len(orjson.dumps(m)) for m in body.get("messages") or []) // 4
    return {"prompt_tokens": prompt, "completion_tokens": 32, "total_tokens": prompt + 32}


class _DemoStream:
    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop(0)

    async def aclose(self) -> None:
        self._chunks.clear()


class DemoProvider:
    async def complete(
        self, deployment: Deployment, body: dict[str, Any], *, timeout_s: float
    ) -> dict[str, Any]:
        content, calls = _reply(deployment, body)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        return {
            "id": f"chatcmpl-demo-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": deployment.served_model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
            ],
            "usage": _usage(body),
        }

    async def open_stream(
        self, deployment: Deployment, body: dict[str, Any], *, timeout_s: float
    ) -> _DemoStream:
        content, calls = _reply(deployment, body)
        base = {
            "id": f"chatcmpl-demo-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": deployment.served_model,
        }
        chunks: list[dict[str, Any]] = [
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
        ]
        if content:
            words = content.split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                chunks.append(
                    {
                        **base,
                        "choices": [
                            {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                        ],
                    }
                )
        for i, call in enumerate(calls):
            chunks.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"tool_calls": [{"index": i, **call}]},
                            "finish_reason": None,
                        }
                    ],
                }
            )
        chunks.append(
            {
                **base,
                "choices": [
                    {"index": 0, "delta": {}, "finish_reason": "tool_calls" if calls else "stop"}
                ],
            }
        )
        opts = body.get("stream_options")
        if isinstance(opts, dict) and opts.get("include_usage"):
            chunks.append({**base, "choices": [], "usage": _usage(body)})
        return _DemoStream(chunks)
