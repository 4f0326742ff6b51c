"""Govern what comes back: restore pseudonyms, judge tool calls, label the answer.

Usage::

    outcome = govern_reply(reply, guard)            # non-streaming; ToolCallBlocked on block
    gov = StreamGovernor(guard, served_model, casegate_object)
    for chunk in gov.feed(chunk): ...              # text flows, tool calls are held
    for chunk in gov.close(): ...

In streams a tool call is held until the response's ``finish_reason`` arrives: only
then are all calls complete, judged together, and released or dropped (DESIGN.md
10.1). Pseudonyms split across text deltas are joined by the redaction package's
``StreamRestorer`` before they are restored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import PermissionDenied
from policies import CompiledUseCase, ToolCall, ToolJudgement, judge_tool_calls
from redaction import StreamRestorer, Vault

__all__ = ["StreamGovernor", "ToolCallBlocked", "ToolGuard", "govern_reply"]


class ToolCallBlocked(PermissionDenied):
    default_code = "tool_call_blocked"


@dataclass
class ToolGuard:
    """What the guard needs and what it found (read by the pipeline for lineage)."""

    use_case: CompiledUseCase
    applied_class: str
    removed_tools: frozenset[str]
    on_violation: str
    vault: Vault | None  # restore pseudonyms when the bundle allows
    allowed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    #: valid calls dropped with the violating ones by a downgrade (DESIGN.md 10.2)
    removed: list[str] = field(default_factory=list)
    downgraded: bool = False

    def restore(self, text: str) -> str:
        return self.vault.restore(text) if self.vault is not None else text

    def judge(self, calls: list[ToolCall]) -> ToolJudgement:
        judgement = judge_tool_calls(
            self.use_case, self.applied_class, calls, removed_tools=self.removed_tools
        )
        if judgement.violations:
            self.blocked.extend(v.name for v in judgement.violations)
            if self.on_violation == "downgrade":
                self.downgraded = True
                self.removed.extend(self.allowed)  # judged fine earlier, removed now
                self.removed.extend(c.name for c in judgement.allowed)
                self.allowed.clear()
                return judgement
            names = ", ".join(sorted({v.name for v in judgement.violations}))
            raise ToolCallBlocked(
                f"The model proposed a tool call the policy does not allow ({names}); "
                "nothing was executed",
            )
        self.allowed.extend(c.name for c in judgement.allowed)
        return judgement


def govern_reply(reply: dict[str, Any], guard: ToolGuard) -> dict[str, Any]:
    for choice in reply.get("choices") or []:
        msg = choice.get("message")
        if not isinstance(msg, dict):
            continue
        if isinstance(msg.get("content"), str):
            msg["content"] = guard.restore(msg["content"])
        raw_calls = msg.get("tool_calls") or []
        if not raw_calls:
            continue
        calls = []
        for i, call in enumerate(raw_calls):
            fn = call.get("function") or {}
            args = guard.restore(fn.get("arguments") or "")
            fn["arguments"] = args
            calls.append(ToolCall(str(call.get("id") or i), str(fn.get("name") or ""), args))
        guard.judge(calls)
        if guard.downgraded:
            msg.pop("tool_calls", None)
            if choice.get("finish_reason") == "tool_calls":
                choice["finish_reason"] = "stop"
    return reply


@dataclass
class _HeldCall:
    index: int
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamGovernor:
    def __init__(
        self,
        guard: ToolGuard,
        served_model: str,
        casegate: Callable[[], dict[str, Any]],
        *,
        restore_text: bool,
    ) -> None:
        self.guard = guard
        self.model = served_model
        self.casegate = casegate
        self.restorer = StreamRestorer(guard.vault) if (restore_text and guard.vault) else None
        self.held: dict[int, _HeldCall] = {}
        self.finished = False
        self.template: dict[str, Any] | None = None

    def _text(self, text: str) -> str:
        return self.restorer.feed(text) if self.restorer else text

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        base = dict(self.template or {"object": "chat.completion.chunk"})
        base.pop("usage", None)
        base["model"] = self.model
        base["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
        return base

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if self.template is None:
            self.template = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        chunk["model"] = self.model
        out: list[dict[str, Any]] = []
        choices = chunk.get("choices") or []
        if not choices:
            if chunk.get("usage") is not None:
                chunk["casegate"] = self.casegate()
                out.append(chunk)
            return out
        keep_choices = []
        for choice in choices:
            delta = dict(choice.get("delta") or {})
            for tc in delta.pop("tool_calls", None) or []:
                index = int(tc.get("index", 0))
                held = self.held.setdefault(index, _HeldCall(index))
                held.id = tc.get("id") or held.id
                fn = tc.get("function") or {}
                held.name += fn.get("name") or ""
                if fn.get("arguments"):
                    held.arguments.append(fn["arguments"])
            if isinstance(delta.get("content"), str):
                delta["content"] = self._text(delta["content"])
            finish = choice.get("finish_reason")
            if finish is not None:
                out.extend(self._finish(delta, finish, chunk))
                continue
            if delta:
                keep_choices.append({**choice, "delta": delta})
        if keep_choices:
            chunk["choices"] = keep_choices
            chunk.pop("usage", None)
            out.insert(0, chunk) if not self.finished else out.append(chunk)
        return out

    def _finish(
        self, delta: dict[str, Any], finish: str, chunk: dict[str, Any]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        tail = self.restorer.flush() if self.restorer else ""
        if tail:
            out.append(self._chunk({"content": tail}))
        if delta.get("content"):
            out.append(self._chunk({"content": delta["content"]}))
        if self.held:
            calls = [
                ToolCall(h.id or str(h.index), h.name, self.guard.restore("".join(h.arguments)))
                for h in sorted(self.held.values(), key=lambda h: h.index)
            ]
            self.guard.judge(calls)  # raises ToolCallBlocked on block
            if self.guard.downgraded:
                finish = "stop" if finish == "tool_calls" else finish
            else:
                out.append(
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": i,
                                    "id": c.id,
                                    "type": "function",
                                    "function": {"name": c.name, "arguments": c.arguments},
                                }
                                for i, c in enumerate(calls)
                            ]
                        }
                    )
                )
            self.held.clear()
        final = self._chunk({}, finish)
        final["casegate"] = self.casegate()
        if chunk.get("usage") is not None:
            final["usage"] = chunk["usage"]
        out.append(final)
        self.finished = True
        return out

    def close(self) -> list[dict[str, Any]]:
        """The stream ended: release what is still held (text only; calls need a finish)."""
        tail = self.restorer.flush() if self.restorer else ""
        return [self._chunk({"content": tail})] if tail else []
