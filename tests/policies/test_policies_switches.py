"""Kill-switch scopes: which switches cover a call, which scopes exist, parsing them."""

from __future__ import annotations

import pytest

from policies import (
    ScopeError,
    Switch,
    SwitchEffect,
    default_bundle_path,
    evaluate_switches,
    load_bundle_file,
    parse_scope,
    valid_scopes,
)

POLICY = load_bundle_file(default_bundle_path()).policy
DEPLOYMENTS = {
    "support-default": ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"],
    "support-fast": ["openai/gpt-4o-mini"],
}


def effect(*switches: Switch) -> SwitchEffect:
    return evaluate_switches(
        switches, use_case="triage", action_class="automation", route="support-default"
    )


def test_no_switches() -> None:
    assert effect() == SwitchEffect(
        halt=None, degrade=(), removed_tools=frozenset(), removed_models=frozenset()
    )


@pytest.mark.parametrize(
    ("scope", "covers"),
    [
        ("global", True),
        ("use_case:triage", True),
        ("action_class:automation", True),
        ("route:support-default", True),
        ("use_case:reply_drafting", False),
        ("use_case:Triage", False),
        ("action_class:draft", False),
        ("route:support-fast", False),
        ("tool:set_priority", False),
        ("model:openai/gpt-4o-mini", False),
    ],
)
def test_what_covers_a_call(scope: str, covers: bool) -> None:
    halted = effect(Switch(scope, "halt"))
    degraded = effect(Switch(scope, "degrade"))
    assert (halted.halt is not None) is covers
    assert (degraded.degrade != ()) is covers
    assert degraded.halt is None


def test_broadest_halt_is_reported() -> None:
    switches = [
        Switch("route:support-default", "halt"),
        Switch("action_class:automation", "halt"),
        Switch("use_case:triage", "halt"),
    ]
    assert effect(*switches).halt == Switch("use_case:triage", "halt")
    assert effect(*switches, Switch("global", "halt")).halt == Switch("global", "halt")
    assert effect(*switches[:2]).halt == Switch("action_class:automation", "halt")


def test_degrades_are_all_listed() -> None:
    result = effect(Switch("global", "degrade"), Switch("route:support-default", "degrade"))
    assert [s.scope for s in result.degrade] == ["global", "route:support-default"]


def test_tool_and_model_switches_act_in_either_mode() -> None:
    result = effect(
        Switch("tool:set_priority", "halt"),
        Switch("tool:route_to_queue", "degrade"),
        Switch("model:openai/gpt-4o-mini", "degrade"),
        Switch("model:anthropic/claude-3-5-haiku-latest", "halt"),
    )
    assert result.halt is None
    assert result.degrade == ()
    assert result.removed_tools == {"set_priority", "route_to_queue"}
    assert result.removed_models == {
        "openai/gpt-4o-mini",
        "anthropic/claude-3-5-haiku-latest",
    }


def test_valid_scopes() -> None:
    assert valid_scopes(POLICY, DEPLOYMENTS) == [
        "global",
        "use_case:reply_drafting",
        "use_case:triage",
        "action_class:recommendation",
        "action_class:draft",
        "action_class:automation",
        "route:support-default",
        "route:support-fast",
        "model:anthropic/claude-3-5-haiku-latest",
        "model:openai/gpt-4o-mini",
        "tool:route_to_queue",
        "tool:set_priority",
    ]


def test_bundle_routes_are_scopes_without_config() -> None:
    scopes = valid_scopes(POLICY, {})
    assert "route:support-default" in scopes
    assert not any(s.startswith("model:") for s in scopes)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("global", "global"),
        (" GLOBAL ", "global"),
        ("use_case:triage", "use_case:triage"),
        ("Use_Case: triage ", "use_case:triage"),
        ("action_class:draft", "action_class:draft"),
        ("route:support-fast", "route:support-fast"),
        ("model:openai/gpt-4o-mini", "model:openai/gpt-4o-mini"),
        ("tool:set_priority", "tool:set_priority"),
    ],
)
def test_parse_scope(text: str, canonical: str) -> None:
    assert parse_scope(text, valid_scopes(POLICY, DEPLOYMENTS)) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "",
        "everything",
        "use_case:billing",
        "use_case:Triage",
        "use_case",
        "use_case:",
        "action_class:suggestion",
        "route:nowhere",
        "model:gpt-4o-mini",
        "tool:delete_account",
        "tool:set_priority ".replace(" ", "\u00a0"),
        "customer:42",
    ],
)
def test_parse_scope_rejects(text: str) -> None:
    valid = valid_scopes(POLICY, DEPLOYMENTS)
    with pytest.raises(ScopeError) as info:
        parse_scope(text, valid)
    assert info.value.valid == valid
    assert info.value.scope == text
    assert "valid scopes: global, use_case:reply_drafting" in str(info.value)
    assert isinstance(info.value, ValueError)
