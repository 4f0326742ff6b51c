"""Runtime forms of a validated bundle: frozen, precomputed, cheap to consult.

    uc = loaded.policy.use_cases["triage"]
    uc.eligibility[0].holds(facts)          # -> bool
    uc.tools["set_priority"].args["priority"].check("P2")   # -> None (fine) or a reason

`policies.compiler` builds these from a `Bundle`; nothing here does I/O or parsing.
Scalars are compared with their JSON type: ``True`` is not ``1`` and ``1`` is not
``1.0``, so a value matches only what the bundle wrote.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from policies.facts import Facts
from policies.tripwires import CompiledTripwire

__all__ = [
    "CompiledArg",
    "CompiledPolicy",
    "CompiledRule",
    "CompiledTool",
    "CompiledUseCase",
    "ScalarKey",
    "scalar_key",
]

FactKind = Literal["authenticated", "region", "consent", "attribute", "queue", "segment"]
Operator = Literal["true", "equals", "in", "not_in"]
ArgType = Literal["string", "integer", "number", "boolean"]

_SCALAR_TYPES = (str, int, float, bool, type(None))


#: A JSON scalar with its type: ``(bool, True)`` and ``(int, 1)`` differ.
ScalarKey = tuple[type, Any]


def scalar_key(value: Any) -> ScalarKey | None:
    """A hashable key that keeps the JSON type of a scalar; ``None`` for non-scalars."""
    if isinstance(value, _SCALAR_TYPES):
        return (type(value), value)
    return None


_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One eligibility rule, ready to evaluate."""

    path: str
    name: str | None
    operator: Operator
    kind: FactKind
    key: str | None  # the consent purpose or attribute key
    values: tuple[Any, ...]  # as written, for display
    keys: frozenset[ScalarKey]  # `scalar_key` of each value

    @property
    def param(self) -> str:
        """What a refusal names: the rule's ``name``, else its path (DESIGN 10.3)."""
        return self.name if self.name is not None else self.path

    def fact(self, facts: Facts) -> Any:
        """The fact this rule reads, or a private sentinel when the request lacks it."""
        kind = self.kind
        if kind == "authenticated":
            value: Any = facts.authenticated
        elif kind == "region":
            value = facts.region
        elif kind == "queue":
            value = facts.queue
        elif kind == "segment":
            value = facts.segment
        elif kind == "consent":
            return facts.consent.get(self.key, _MISSING)  # type: ignore[arg-type]
        else:
            return facts.attributes.get(self.key, _MISSING)  # type: ignore[arg-type]
        return _MISSING if value is None else value

    def holds(self, facts: Facts) -> bool:
        """Whether *facts* satisfy the rule; a missing or non-scalar fact never does."""
        value = self.fact(facts)
        if value is _MISSING:
            return False
        if self.operator == "true":
            return value is True
        key = scalar_key(value)
        if key is None:
            return False
        if self.operator == "not_in":
            return key not in self.keys
        return key in self.keys  # equals (one key) and in


@dataclass(frozen=True, slots=True)
class CompiledArg:
    """The constraint on one tool argument."""

    name: str
    type: ArgType | None
    enum: tuple[Any, ...] | None  # as written, for display
    enum_keys: frozenset[ScalarKey] | None
    pattern: re.Pattern[str] | None
    min: int | float | None
    max: int | float | None
    min_length: int | None
    max_length: int | None
    optional: bool

    def check(self, value: Any) -> str | None:
        """``None`` if *value* is allowed, else a short reason that never quotes it."""
        if self.enum_keys is not None:
            key = scalar_key(value)
            if key is None or key not in self.enum_keys:
                return f"argument {self.name!r} is not one of the allowed values"
        if self.type is not None and not _has_type(value, self.type):
            return f"argument {self.name!r} is not of type {self.type}"
        if isinstance(value, str):
            if self.min_length is not None and len(value) < self.min_length:
                return f"argument {self.name!r} is shorter than {self.min_length}"
            if self.max_length is not None and len(value) > self.max_length:
                return f"argument {self.name!r} is longer than {self.max_length}"
            if self.pattern is not None and self.pattern.fullmatch(value) is None:
                return f"argument {self.name!r} does not match its pattern"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and value < self.min:
                return f"argument {self.name!r} is below {self.min}"
            if self.max is not None and value > self.max:
                return f"argument {self.name!r} is above {self.max}"
        return None


def _has_type(value: Any, expected: ArgType) -> bool:
    kind = type(value)
    if expected == "string":
        return kind is str
    if expected == "integer":
        return kind is int
    if expected == "number":
        return kind is int or kind is float
    return kind is bool


@dataclass(frozen=True, slots=True)
class CompiledTool:
    """An allowlisted tool."""

    name: str
    args: Mapping[str, CompiledArg]
    required: frozenset[str]


@dataclass(frozen=True, slots=True)
class CompiledUseCase:
    """Everything the gateway consults about one use case on the request path."""

    name: str
    route: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    entities: frozenset[str]
    restore_in_response: bool
    pseudonym_ttl_s: int
    default_action_class: str
    action_classes: frozenset[str]
    max_tokens: int | None
    tools: Mapping[str, CompiledTool]
    on_violation: str
    draft_expires_after_s: int | None
    allowed_unscanned_parts: frozenset[str]
    eligibility: tuple[CompiledRule, ...]
    #: thresholds that engage a kill switch by themselves (policies/tripwires.py)
    tripwires: tuple[CompiledTripwire, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A whole bundle, compiled."""

    version: str
    sha256: str
    use_cases: Mapping[str, CompiledUseCase]

    def routes(self) -> frozenset[str]:
        """Every route some use case names."""
        return frozenset(uc.route for uc in self.use_cases.values())

    def tools(self) -> frozenset[str]:
        """Every tool on some use case's allowlist."""
        return frozenset(name for uc in self.use_cases.values() for name in uc.tools)

    def tripwires(self) -> tuple[CompiledTripwire, ...]:
        """Every use case's tripwires."""
        return tuple(tw for uc in self.use_cases.values() for tw in uc.tripwires)
