"""Human-readable account of a bundle, for ``casegate policy check FILE [--facts f.json]``.

    print(render_check(load_bundle_file(path)))
    print(render_check(loaded, json.load(facts_file)))

Without facts it lists, per use case, the data set, redaction, eligibility rules,
action classes and allowlisted tools with their constraints. With facts (the request's
``casegate.customer`` object, plus optional ``queue``, ``segment``, ``use_case``,
``action_class`` and ``switches: [{scope, mode}]``) it adds the `Decision` each use
case would get, so an author can try a bundle before applying it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from policies.compiled import CompiledArg, CompiledRule
from policies.engine import Decision, decide
from policies.errors import FactsError
from policies.facts import CUSTOMER_KEYS, Facts, facts_from_customer
from policies.loader import LoadedBundle
from policies.switches import Switch, parse_scope, valid_scopes

__all__ = ["render_check"]

_REQUEST_KEYS = frozenset({"queue", "segment", "use_case", "action_class", "switches"})


def render_check(
    loaded: LoadedBundle,
    facts: Mapping[str, Any] | None = None,
    *,
    use_case: str | None = None,
    action_class: str | None = None,
) -> str:
    """Describe *loaded*; with *facts*, also decide each use case. Raises `FactsError`."""
    policy = loaded.policy
    switches: list[Switch] = []
    parsed: Facts | None = None
    if facts is not None:
        parsed, switches, use_case, action_class = _read_facts(
            loaded, facts, use_case, action_class
        )
    if use_case is not None and use_case not in policy.use_cases:
        raise FactsError(
            "use_case", f"{use_case!r} is not in this bundle ({', '.join(policy.use_cases)})"
        )

    lines = [
        f"policy bundle {loaded.version}",
        f"  sha256: {loaded.sha256}",
        f"  use cases: {', '.join(policy.use_cases)}",
    ]
    if parsed is not None and switches:
        lines.append("  switches: " + ", ".join(f"{s.scope} ({s.mode})" for s in switches))
    names = [use_case] if use_case is not None else list(policy.use_cases)
    for name in names:
        lines.append("")
        lines += _describe(loaded, name)
        if parsed is not None:
            decision = decide(
                policy,
                use_case=name,
                requested_class=action_class,
                route=policy.use_cases[name].route,
                facts=parsed,
                switches=switches,
            )
            lines += _describe_decision(decision)
    return "\n".join(lines) + "\n"


def _read_facts(
    loaded: LoadedBundle,
    facts: Mapping[str, Any],
    use_case: str | None,
    action_class: str | None,
) -> tuple[Facts, list[Switch], str | None, str | None]:
    if not isinstance(facts, Mapping):
        raise FactsError("(facts)", "must be a JSON object")
    for key in facts:
        if key not in CUSTOMER_KEYS and key not in _REQUEST_KEYS:
            raise FactsError(key, "unknown key")
    for key in ("queue", "segment", "use_case", "action_class"):
        if facts.get(key) is not None and not isinstance(facts[key], str):
            raise FactsError(key, "must be a string")
    customer = {k: v for k, v in facts.items() if k in CUSTOMER_KEYS}
    parsed = facts_from_customer(customer, queue=facts.get("queue"), segment=facts.get("segment"))
    raw_switches = facts.get("switches") or []
    if not isinstance(raw_switches, list):
        raise FactsError("switches", "must be a list of {scope, mode}")
    valid = valid_scopes(loaded.policy, {})
    switches = []
    for i, raw in enumerate(raw_switches):
        if not isinstance(raw, Mapping) or set(raw) != {"scope", "mode"}:
            raise FactsError(f"switches[{i}]", "must be {scope, mode}")
        scope, mode = raw["scope"], raw["mode"]
        if not isinstance(scope, str):
            raise FactsError(f"switches[{i}].scope", "must be a string")
        if mode not in ("halt", "degrade"):
            raise FactsError(f"switches[{i}].mode", "must be halt or degrade")
        if scope.strip().lower().startswith("model:"):
            # The bundle does not know the deployments; any model may be named.
            canonical = "model:" + scope.strip()[len("model:") :].strip()
        else:
            try:
                canonical = parse_scope(scope, valid)
            except ValueError as exc:
                raise FactsError(f"switches[{i}].scope", str(exc)) from None
        switches.append(Switch(scope=canonical, mode=mode))
    return (
        parsed,
        switches,
        use_case if use_case is not None else facts.get("use_case"),
        action_class if action_class is not None else facts.get("action_class"),
    )


def _json(values: Any) -> str:
    return json.dumps(values, ensure_ascii=False)


def _describe(loaded: LoadedBundle, name: str) -> list[str]:
    uc = loaded.policy.use_cases[name]
    spec = loaded.bundle.use_cases[name]
    lines = [
        f"use case {name}",
        f"  route: {uc.route}",
        "  data set:",
        f"    required: {', '.join(uc.required) or '(none)'}",
        f"    optional: {', '.join(uc.optional) or '(none)'}",
        f"  redaction: {', '.join(sorted(uc.entities)) or '(no entities)'}",
        f"    restore in response: {'yes' if uc.restore_in_response else 'no'}",
        f"    pseudonyms kept for: {spec.redaction.pseudonym_ttl}",
    ]
    if uc.eligibility:
        lines.append("  eligibility (every rule must hold):")
        lines += [f"    {i}. {_rule(rule)}" for i, rule in enumerate(uc.eligibility, 1)]
    else:
        lines.append("  eligibility: every customer")
    lines.append(f"  action classes (default {uc.default_action_class}):")
    classes = spec.action_classes
    if classes.recommendation is not None:
        lines.append("    recommendation")
    if classes.draft is not None:
        lines.append(f"    draft: approval required, expires after {classes.draft.expires_after}")
    if classes.automation is not None:
        lines.append(f"    automation: on violation {uc.on_violation}")
        for tool in uc.tools.values():
            lines.append(f"      tool {tool.name}")
            if not tool.args:
                lines.append("        (no arguments)")
            lines += [f"        {_arg(arg)}" for arg in tool.args.values()]
    lines.append(f"  max_tokens: {uc.max_tokens if uc.max_tokens is not None else '(no cap)'}")
    parts = ", ".join(sorted(uc.allowed_unscanned_parts)) or "(none)"
    lines.append(f"  unscanned content parts allowed: {parts}")
    if uc.tripwires:  # shown only when there are some (older output stays byte-identical)
        lines.append("  tripwires (engage a switch by themselves; never released by themselves):")
        lines += [f"    {tw.describe()}" for tw in uc.tripwires]
    return lines


def _rule(rule: CompiledRule) -> str:
    if rule.operator == "true":
        text = f"{rule.path} is true"
    elif rule.operator == "equals":
        text = f"{rule.path} equals {_json(rule.values[0])}"
    elif rule.operator == "in":
        text = f"{rule.path} in {_json(list(rule.values))}"
    else:
        text = f"{rule.path} not in {_json(list(rule.values))}"
    return f"{text}  [{rule.name}]" if rule.name is not None else text


def _arg(arg: CompiledArg) -> str:
    parts = []
    if arg.enum is not None:
        parts.append(f"one of {_json(list(arg.enum))}")
    if arg.type is not None:
        parts.append(f"type {arg.type}")
    if arg.pattern is not None:
        parts.append(f"pattern {_json(arg.pattern.pattern)}")
    for label, value in (
        ("min", arg.min),
        ("max", arg.max),
        ("min_length", arg.min_length),
        ("max_length", arg.max_length),
    ):
        if value is not None:
            parts.append(f"{label} {value}")
    optional = " (optional)" if arg.optional else ""
    return f"{arg.name}{optional}: {', '.join(parts)}"


def _describe_decision(decision: Decision) -> list[str]:
    classes = f"{decision.action_class_requested} -> {decision.action_class_applied}"
    refusal = decision.refusal
    if refusal is not None:
        param = f", param {refusal.param}" if refusal.param is not None else ""
        lines = [f"  decision: refused {refusal.status} {refusal.code}{param}: {refusal.message}"]
    else:
        verdict = "degraded" if decision.degraded else "allowed"
        if decision.approval_required:
            verdict += ", pending approval"
        lines = [f"  decision: {verdict}; class {classes}"]
        tools = ", ".join(decision.tools_upstream) or "(none)"
        lines.append(f"    tools upstream: {tools}")
    if decision.switches:
        lines.append(f"    switches: {', '.join(decision.switches)}")
    return lines
