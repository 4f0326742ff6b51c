"""Compile a validated `Bundle` into a `CompiledPolicy`, checking what spans fields.

    policy = compile_bundle(bundle, sha256=digest, source="deploy/bundle.yaml")

The schema has checked every field on its own; here the checks relate fields to each
other (the default action class is offered, a rule's values fit the fact it reads, an
enum fits its type, nothing is listed twice). All errors are collected and raised as
one `BundleError`, each with its path in the file.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any

from policies.compiled import (
    ArgType,
    CompiledArg,
    CompiledPolicy,
    CompiledRule,
    CompiledTool,
    CompiledUseCase,
    FactKind,
    scalar_key,
)
from policies.durations import parse_duration
from policies.errors import BundleError, ScopeError
from policies.schema import ArgConstraint, Bundle, EligibilityRule, ToolSpec, UseCase
from policies.switches import parse_scope, valid_scopes
from policies.tripwires import CompiledTripwire, compile_tripwire

__all__ = ["compile_bundle"]

_BOOL_HINT = "must be a boolean"
_STRING_HINT = "must be a string; quote it (YAML reads unquoted NO, yes, on, off as booleans)"


class _Errors(list[tuple[str, str]]):
    def add(self, path: str, message: str) -> None:
        self.append((path, message))


def compile_bundle(bundle: Bundle, *, sha256: str, source: str = "<bundle>") -> CompiledPolicy:
    """Return the runtime form of *bundle*, or raise `BundleError` with every problem."""
    errors = _Errors()
    use_cases = {
        name: _compile_use_case(name, uc, f"use_cases.{name}", errors)
        for name, uc in bundle.use_cases.items()
    }
    if errors:
        raise BundleError(source, errors)
    policy = CompiledPolicy(
        version=bundle.version, sha256=sha256, use_cases=MappingProxyType(use_cases)
    )
    if any(uc.tripwires for uc in bundle.use_cases.values()):
        policy = _with_tripwires(bundle, policy, errors)
        if errors:
            raise BundleError(source, errors)
    return policy


def _with_tripwires(bundle: Bundle, policy: CompiledPolicy, errors: _Errors) -> CompiledPolicy:
    """Compile each use case's ``tripwires`` (their scopes need the compiled policy)."""
    valid = valid_scopes(policy, {})

    def valid_scope(text: str) -> str | None:
        kind, sep, name = text.strip().partition(":")
        if sep and kind.strip().lower() == "model" and name.strip():
            return "model:" + name.strip()  # the bundle does not know the deployments
        try:
            return parse_scope(text, valid)
        except ScopeError:
            return None

    seen: dict[str, str] = {}
    compiled: dict[str, CompiledUseCase] = {}
    for name, uc in policy.use_cases.items():
        tripwires: list[CompiledTripwire] = []
        for i, spec in enumerate(bundle.use_cases[name].tripwires):
            at = f"use_cases.{name}.tripwires[{i}]"
            if spec.name in seen:
                errors.add(f"{at}.name", f"{spec.name!r} is also a tripwire at {seen[spec.name]}")
            seen.setdefault(spec.name, at)
            tripwires.append(compile_tripwire(spec, name, at, errors.add, valid_scope))
        compiled[name] = dataclasses.replace(uc, tripwires=tuple(tripwires))
    return dataclasses.replace(policy, use_cases=MappingProxyType(compiled))


def _compile_use_case(name: str, uc: UseCase, at: str, errors: _Errors) -> CompiledUseCase:
    offered = uc.action_classes.offered()
    if uc.default_action_class not in offered:
        errors.add(
            f"{at}.default_action_class",
            f"{uc.default_action_class!r} is not one of this use case's action_classes "
            f"({', '.join(offered)})",
        )
    _no_repeats(
        [(f"{at}.data_set.required[{i}]", p) for i, p in enumerate(uc.data_set.required)]
        + [(f"{at}.data_set.optional[{i}]", p) for i, p in enumerate(uc.data_set.optional)],
        errors,
    )
    _no_repeats(
        [(f"{at}.redaction.entities[{i}]", e) for i, e in enumerate(uc.redaction.entities)],
        errors,
    )
    rules = tuple(
        _compile_rule(rule, f"{at}.eligibility[{i}]", errors)
        for i, rule in enumerate(uc.eligibility)
    )
    draft = uc.action_classes.draft
    automation = uc.action_classes.automation
    tools: dict[str, CompiledTool] = {}
    if automation is not None:
        for tool_name, spec in automation.tools.items():
            tools[tool_name] = _compile_tool(
                tool_name, spec, f"{at}.action_classes.automation.tools.{tool_name}", errors
            )
    return CompiledUseCase(
        name=name,
        route=uc.route,
        required=tuple(uc.data_set.required),
        optional=tuple(uc.data_set.optional),
        entities=frozenset(uc.redaction.entities),
        restore_in_response=uc.redaction.restore_in_response,
        pseudonym_ttl_s=parse_duration(uc.redaction.pseudonym_ttl),
        default_action_class=uc.default_action_class,
        action_classes=frozenset(offered),
        max_tokens=uc.max_tokens,
        tools=MappingProxyType(tools),
        on_violation=automation.on_violation if automation is not None else "block",
        draft_expires_after_s=parse_duration(draft.expires_after) if draft is not None else None,
        allowed_unscanned_parts=frozenset(uc.allowed_unscanned_parts),
        eligibility=rules,
    )


def _no_repeats(items: Iterable[tuple[str, str]], errors: _Errors) -> None:
    seen: set[str] = set()
    for path, value in items:
        if value in seen:
            errors.add(path, f"{value!r} is listed twice")
        seen.add(value)


def _fact_of(path: str) -> tuple[FactKind, str | None]:
    if path.startswith("consent."):
        return "consent", path[len("consent.") :]
    if path.startswith("customer.attributes."):
        return "attribute", path[len("customer.attributes.") :]
    simple: dict[str, FactKind] = {
        "customer.authenticated": "authenticated",
        "customer.region": "region",
        "request.queue": "queue",
        "request.segment": "segment",
    }
    return simple[path], None


def _compile_rule(rule: EligibilityRule, at: str, errors: _Errors) -> CompiledRule:
    kind, key = _fact_of(rule.rule)
    operator = rule.operator
    located: Sequence[tuple[str, Any]]
    if operator == "equals":
        located = [(f"{at}.equals", rule.equals)]
    elif operator == "in":
        located = [(f"{at}.in[{i}]", v) for i, v in enumerate(rule.in_ or ())]
    elif operator == "not_in":
        located = [(f"{at}.not_in[{i}]", v) for i, v in enumerate(rule.not_in or ())]
    else:
        located = []
    for path, value in located:
        if kind in ("authenticated", "consent") and not isinstance(value, bool):
            errors.add(path, _BOOL_HINT)
        elif kind in ("region", "queue", "segment") and not isinstance(value, str):
            errors.add(path, _STRING_HINT)
    values = tuple(v for _, v in located)
    return CompiledRule(
        path=rule.rule,
        name=rule.name,
        operator=operator,
        kind=kind,
        key=key,
        values=values,
        keys=frozenset(k for k in map(scalar_key, values) if k is not None),
    )


def _compile_tool(name: str, spec: ToolSpec, at: str, errors: _Errors) -> CompiledTool:
    args = {
        arg: _compile_arg(arg, constraint, f"{at}.arguments.{arg}", errors)
        for arg, constraint in spec.arguments.items()
    }
    return CompiledTool(
        name=name,
        args=MappingProxyType(args),
        required=frozenset(arg for arg, c in spec.arguments.items() if not c.optional),
    )


def _compile_arg(name: str, c: ArgConstraint, at: str, errors: _Errors) -> CompiledArg:
    arg_type: ArgType | None = c.type
    enum = tuple(c.enum) if c.enum is not None else None
    if enum is not None and arg_type is not None:
        probe = CompiledArg(name, arg_type, None, None, None, None, None, None, None, False)
        for i, value in enumerate(enum):
            if probe.check(value) is not None:
                errors.add(f"{at}.enum[{i}]", f"is not of type {arg_type}")
    return CompiledArg(
        name=name,
        type=arg_type,
        enum=enum,
        enum_keys=(
            frozenset(k for k in map(scalar_key, enum) if k is not None)
            if enum is not None
            else None
        ),
        pattern=re.compile(c.pattern) if c.pattern is not None else None,
        min=c.min,
        max=c.max,
        min_length=c.min_length,
        max_length=c.max_length,
        optional=c.optional,
    )
