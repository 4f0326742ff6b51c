"""Judge the tool calls a model returned against the use case's allowlist.

    judgement = judge_tool_calls(uc, decision.action_class_applied, calls,
                                 removed_tools=decision.removed_tools)
    if not judgement.ok:
        ...  # block (403 tool_call_blocked) or downgrade, as uc.on_violation says

DESIGN section 3, "Tool calls, precisely": names match exactly (no case folding, no
Unicode normalisation, no trimming, so Cyrillic U+0430 is not "a"); arguments
are one JSON object with no duplicate keys and no NaN or infinities; every key must be
constrained, every non-optional constrained key present, every value allowed. The
calls of a response are judged together, each on its own.

Reasons are short and fixed: they name the tool's constrained keys at most, never an
argument value or a key the model invented, so they are safe for lineage and logs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from policies.compiled import CompiledTool, CompiledUseCase

__all__ = ["ToolCall", "ToolJudgement", "ToolViolation", "judge_tool_calls"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One returned tool call; ``arguments`` is the raw JSON text the model produced."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolViolation:
    """A call that broke the allowlist: its position in the response and why."""

    index: int
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class ToolJudgement:
    """The calls that may stand, and the ones that may not."""

    allowed: tuple[ToolCall, ...]
    violations: tuple[ToolViolation, ...]

    @property
    def ok(self) -> bool:
        """No call broke the allowlist."""
        return not self.violations


def judge_tool_calls(
    uc: CompiledUseCase,
    applied_class: str,
    calls: Sequence[ToolCall],
    *,
    removed_tools: frozenset[str] = frozenset(),
) -> ToolJudgement:
    """Judge every call in *calls* made under *applied_class* of *uc*."""
    allowed: list[ToolCall] = []
    violations: list[ToolViolation] = []
    for index, call in enumerate(calls):
        reason = _judge(uc, applied_class, call, removed_tools)
        if reason is None:
            allowed.append(call)
        else:
            violations.append(ToolViolation(index=index, name=call.name, reason=reason))
    return ToolJudgement(allowed=tuple(allowed), violations=tuple(violations))


def _judge(
    uc: CompiledUseCase, applied_class: str, call: ToolCall, removed: frozenset[str]
) -> str | None:
    if applied_class != "automation":
        return f"no tool calls are allowed under the {applied_class} action class"
    tool = uc.tools.get(call.name) if isinstance(call.name, str) else None
    if tool is None:
        return "tool is not on the allowlist"
    if call.name in removed:
        return "tool is switched off"
    args = _parse_arguments(call.arguments)
    if isinstance(args, str):
        return args
    return _check_arguments(tool, args)


class _Rejected(ValueError):
    """Raised from JSON hooks; carries the reason."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Rejected("arguments repeat a key")
        result[key] = value
    return result


def _constant(_: str) -> Any:
    raise _Rejected("arguments contain NaN or Infinity")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf
        raise _Rejected("arguments contain a number out of range")
    return value


def _parse_arguments(text: object) -> dict[str, Any] | str:
    """The arguments as a dict, or the reason they are not one JSON object."""
    if not isinstance(text, str):
        return "arguments are not a JSON string"
    try:
        value = json.loads(
            text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float
        )
    except _Rejected as exc:
        return str(exc)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and integers too long to convert.
        return "arguments are not valid JSON"
    if not isinstance(value, dict):
        return "arguments are not a JSON object"
    return value


def _check_arguments(tool: CompiledTool, args: dict[str, Any]) -> str | None:
    constraints = tool.args
    for key in args:
        if key not in constraints:
            return "arguments contain a key that is not allowed"
    for key, constraint in constraints.items():  # bundle order: a stable first reason
        if not constraint.optional and key not in args:
            return f"argument {key!r} is missing"
    for key, value in args.items():
        reason = constraints[key].check(value)
        if reason is not None:
            return reason
    return None
