"""The decision engine: every branch of `decide`, eligibility, lowering classes, facts."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import pytest

from policies import (
    CompiledUseCase,
    Decision,
    Facts,
    FactsError,
    Refusal,
    RuleFailure,
    Switch,
    check_eligibility,
    decide,
    facts_from_customer,
    load_bundle,
    lower_action_class,
)

BUNDLE = """\
version: engine-1
use_cases:
  full:
    route: main
    redaction: {entities: [EMAIL]}
    eligibility:
      - {rule: consent.ai_assist, name: ai-assist-consent}
      - {rule: customer.authenticated}
    default_action_class: recommendation
    max_tokens: 800
    action_classes:
      recommendation: {}
      draft: {expires_after: 2h}
      automation:
        on_violation: downgrade
        tools:
          set_priority: {arguments: {priority: {enum: [P2, P3]}}}
          route_to_queue: {arguments: {queue: {enum: [billing]}}}
  nodraft:
    route: main
    redaction: {entities: []}
    default_action_class: automation
    action_classes:
      recommendation: {}
      automation: {tools: {close_case: {}}}
  draftonly:
    route: side
    redaction: {entities: []}
    default_action_class: draft
    action_classes: {draft: {}}
  rules:
    route: side
    redaction: {entities: []}
    default_action_class: recommendation
    action_classes: {recommendation: {}}
    eligibility:
      - {rule: customer.authenticated}
      - {rule: customer.authenticated, equals: true}
      - {rule: customer.region, in: [GB, IE]}
      - {rule: customer.region, not_in: [FR]}
      - {rule: consent.profiling, equals: false, name: no-profiling}
      - {rule: customer.attributes.tier, equals: premium}
      - {rule: customer.attributes.level, in: [1, 2]}
      - {rule: customer.attributes.vip}
      - {rule: request.queue, not_in: [legal]}
      - {rule: request.segment, equals: consumer}
"""

POLICY = load_bundle(BUNDLE).policy
TWO_RULES = (
    "      - {rule: customer.authenticated}\n      - {rule: customer.authenticated, equals: true}"
)
OK = Facts(authenticated=True, consent={"ai_assist": True})


def run(
    use_case: str = "full",
    cls: str | None = None,
    switches: tuple[Switch, ...] = (),
    facts: Facts = OK,
    route: str = "main",
) -> Decision:
    return decide(
        POLICY,
        use_case=use_case,
        requested_class=cls,
        route=route,
        facts=facts,
        switches=switches,
    )


def halt(scope: str) -> Switch:
    return Switch(scope, "halt")


def degrade(scope: str) -> Switch:
    return Switch(scope, "degrade")


# -- allowed calls ---------------------------------------------------------------------


def test_default_class_is_applied() -> None:
    d = run()
    assert d.refusal is None
    assert d.allowed
    assert (d.action_class_requested, d.action_class_applied) == ("recommendation",) * 2
    assert d.degraded is False
    assert d.switches == ()
    assert d.tools_upstream == ()
    assert d.max_tokens == 800
    assert d.on_violation == "downgrade"
    assert d.approval_required is False
    assert d.draft_expires_after_s is None
    assert d.eligibility_rule_failed is None
    assert d.removed_tools == d.removed_models == frozenset()


def test_draft_requires_approval_and_expires() -> None:
    d = run(cls="draft")
    assert d.action_class_applied == "draft"
    assert d.approval_required is True
    assert d.draft_expires_after_s == 7200
    assert d.tools_upstream == ()


def test_automation_sends_its_allowlist_in_bundle_order() -> None:
    d = run(cls="automation")
    assert d.tools_upstream == ("set_priority", "route_to_queue")
    assert d.approval_required is False


# -- refusals, in order ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "refusal"),
    [
        (
            {"use_case": "billing"},
            Refusal(
                403,
                "use_case_not_permitted",
                "use case 'billing' is not in the active policy",
                "X-Casegate-Use-Case",
            ),
        ),
        (
            {"cls": "automation", "use_case": "draftonly"},
            Refusal(
                403,
                "action_class_not_permitted",
                "use case 'draftonly' has no action class 'automation'",
                "X-Casegate-Action-Class",
            ),
        ),
        (
            {"cls": "Automation"},
            Refusal(
                403,
                "action_class_not_permitted",
                "use case 'full' has no action class 'Automation'",
                "X-Casegate-Action-Class",
            ),
        ),
        (
            {"switches": (halt("global"),)},
            Refusal(503, "kill_switch_engaged", "kill switch 'global' is engaged (halt)", None),
        ),
        (
            {"facts": Facts(authenticated=True)},
            Refusal(
                403,
                "ineligible",
                "eligibility rule 'ai-assist-consent' is not met",
                "ai-assist-consent",
            ),
        ),
        (
            {"facts": Facts(consent={"ai_assist": True})},
            Refusal(
                403,
                "ineligible",
                "eligibility rule 'customer.authenticated' is not met",
                "customer.authenticated",
            ),
        ),
    ],
    ids=[
        "unknown-use-case",
        "class-not-offered",
        "class-case-sensitive",
        "halt",
        "ineligible-named",
        "ineligible-path",
    ],
)
def test_refusals(kwargs: dict[str, Any], refusal: Refusal) -> None:
    d = run(**kwargs)
    assert d.refusal == refusal
    assert not d.allowed


def test_unknown_use_case_fills_what_it_knows() -> None:
    d = run(use_case="billing", cls="draft")
    assert d.use_case == "billing"
    assert d.action_class_requested == d.action_class_applied == "draft"
    assert d.on_violation == "block"
    assert d.max_tokens is None
    assert run(use_case="billing").action_class_requested == ""


def test_unknown_use_case_beats_everything() -> None:
    d = run(use_case="nope", cls="bogus", switches=(halt("global"),), facts=Facts())
    assert d.refusal is not None
    assert d.refusal.code == "use_case_not_permitted"


def test_class_check_comes_before_halt() -> None:
    d = run(use_case="draftonly", cls="automation", switches=(halt("global"),))
    assert d.refusal is not None
    assert d.refusal.code == "action_class_not_permitted"
    assert d.switches == ()


def test_halt_comes_before_eligibility() -> None:
    d = run(switches=(halt("use_case:full"),), facts=Facts())
    assert d.refusal is not None
    assert d.refusal.code == "kill_switch_engaged"
    assert d.eligibility_rule_failed is None


def test_ineligible_decision_keeps_the_rest() -> None:
    d = run(cls="automation", facts=Facts(), switches=(degrade("global"),))
    assert d.refusal is not None
    assert d.refusal.code == "ineligible"
    assert d.eligibility_rule_failed == "ai-assist-consent"
    assert d.action_class_applied == "draft"
    assert d.degraded is True
    assert d.switches == ("global",)


# -- kill switches ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope",
    ["global", "use_case:full", "action_class:automation", "route:main"],
)
def test_each_halt_scope_covers_the_call(scope: str) -> None:
    d = run(cls="automation", switches=(halt(scope),))
    assert d.refusal is not None
    assert d.refusal.status == 503
    assert d.refusal.code == "kill_switch_engaged"
    assert scope in d.refusal.message
    assert d.switches == (scope,)
    assert d.action_class_applied == "automation"


@pytest.mark.parametrize(
    "scope",
    ["use_case:nodraft", "action_class:draft", "route:side", "tool:set_priority", "model:m"],
)
def test_halts_elsewhere_do_not_refuse(scope: str) -> None:
    d = run(cls="automation", switches=(halt(scope),))
    assert d.refusal is None


def test_halt_action_class_applies_to_the_requested_class() -> None:
    assert run(cls="recommendation", switches=(halt("action_class:automation"),)).allowed
    assert not run(cls="automation", switches=(halt("action_class:automation"),)).allowed


def test_the_broadest_halt_is_named() -> None:
    switches = (
        halt("route:main"),
        halt("action_class:draft"),
        halt("use_case:full"),
        halt("global"),
    )
    d = run(cls="draft", switches=switches)
    assert d.refusal is not None
    assert d.refusal.message == "kill switch 'global' is engaged (halt)"
    d = run(cls="draft", switches=switches[:3])
    assert d.switches == ("use_case:full",)


def test_halt_beats_degrade() -> None:
    d = run(cls="automation", switches=(degrade("global"), halt("route:main")))
    assert d.refusal is not None
    assert d.refusal.code == "kill_switch_engaged"
    assert d.switches == ("route:main",)
    assert d.action_class_applied == "automation"
    assert d.degraded is False


def test_halt_on_the_lowered_class_refuses() -> None:
    d = run(cls="automation", switches=(degrade("use_case:full"), halt("action_class:draft")))
    assert d.refusal is not None
    assert d.refusal.code == "kill_switch_engaged"
    assert "action_class:draft" in d.refusal.message
    assert d.action_class_applied == "draft"
    assert d.degraded is True
    assert d.switches == ("action_class:draft", "use_case:full")


def test_degrade_lowers_one_step() -> None:
    d = run(cls="automation", switches=(degrade("global"),))
    assert d.refusal is None
    assert (d.action_class_requested, d.action_class_applied) == ("automation", "draft")
    assert d.degraded is True
    assert d.switches == ("global",)
    assert d.tools_upstream == ()
    assert d.approval_required is True
    assert d.draft_expires_after_s == 7200


def test_many_degrades_still_lower_one_step() -> None:
    switches = (
        degrade("global"),
        degrade("use_case:full"),
        degrade("action_class:automation"),
        degrade("route:main"),
    )
    d = run(cls="automation", switches=switches)
    assert d.action_class_applied == "draft"
    assert d.switches == tuple(s.scope for s in switches)


def test_degrade_skips_classes_the_use_case_lacks() -> None:
    d = run(use_case="nodraft", switches=(degrade("global"),))
    assert (d.action_class_requested, d.action_class_applied) == ("automation", "recommendation")
    assert d.approval_required is False
    assert d.tools_upstream == ()


def test_degrade_with_nothing_lower_changes_nothing() -> None:
    d = run(use_case="draftonly", route="side", switches=(degrade("global"),))
    assert d.action_class_applied == "draft"
    assert d.degraded is False
    assert d.switches == ()
    d = run(cls="recommendation", switches=(degrade("global"),))
    assert d.action_class_applied == "recommendation"
    assert d.degraded is False


def test_degrade_on_another_class_does_not_apply() -> None:
    d = run(cls="automation", switches=(degrade("action_class:draft"),))
    assert d.action_class_applied == "automation"
    assert d.degraded is False


def test_tool_switch_removes_the_tool_in_either_mode() -> None:
    for switch in (halt("tool:set_priority"), degrade("tool:set_priority")):
        d = run(cls="automation", switches=(switch,))
        assert d.refusal is None
        assert d.action_class_applied == "automation"
        assert d.tools_upstream == ("route_to_queue",)
        assert d.removed_tools == {"set_priority"}
        assert d.switches == ("tool:set_priority",)


def test_tool_switch_on_another_tool_is_not_listed() -> None:
    d = run(cls="automation", switches=(halt("tool:close_case"),))
    assert d.tools_upstream == ("set_priority", "route_to_queue")
    assert d.removed_tools == {"close_case"}
    assert d.switches == ()


def test_tool_switch_under_recommendation_is_not_listed() -> None:
    d = run(switches=(halt("tool:set_priority"),))
    assert d.tools_upstream == ()
    assert d.removed_tools == {"set_priority"}
    assert d.switches == ()


def test_every_tool_removed_leaves_automation_with_none() -> None:
    d = run(cls="automation", switches=(halt("tool:set_priority"), halt("tool:route_to_queue")))
    assert d.action_class_applied == "automation"
    assert d.tools_upstream == ()
    assert d.switches == ("tool:route_to_queue", "tool:set_priority")


def test_model_switch_is_reported_not_refused() -> None:
    d = run(switches=(halt("model:openai/gpt-4o-mini"), degrade("model:anthropic/x")))
    assert d.refusal is None
    assert d.degraded is False
    assert d.removed_models == {"openai/gpt-4o-mini", "anthropic/x"}
    assert d.switches == ()


def test_refused_by_halt_still_reports_removed_things() -> None:
    d = run(switches=(halt("global"), halt("tool:set_priority"), halt("model:m")))
    assert d.removed_tools == {"set_priority"}
    assert d.removed_models == {"m"}


def test_class_not_permitted_reports_no_removals() -> None:
    d = run(use_case="draftonly", cls="automation", switches=(halt("tool:set_priority"),))
    assert d.removed_tools == frozenset()


def test_switch_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="halt or degrade"):
        Switch("global", "pause")  # type: ignore[arg-type]


# -- lowering --------------------------------------------------------------------------


def uc(name: str) -> CompiledUseCase:
    return POLICY.use_cases[name]


@pytest.mark.parametrize(
    ("use_case", "cls", "lowered"),
    [
        ("full", "automation", "draft"),
        ("full", "draft", "recommendation"),
        ("full", "recommendation", "recommendation"),
        ("nodraft", "automation", "recommendation"),
        ("draftonly", "draft", "draft"),
        ("draftonly", "automation", "draft"),
    ],
)
def test_lower_action_class(use_case: str, cls: str, lowered: str) -> None:
    assert lower_action_class(uc(use_case), cls) == lowered


def test_lower_unknown_class() -> None:
    with pytest.raises(ValueError, match="unknown action class"):
        lower_action_class(uc("full"), "suggestion")


# -- eligibility -----------------------------------------------------------------------

GOOD = Facts(
    authenticated=True,
    region="GB",
    consent={"profiling": False},
    attributes={"tier": "premium", "level": 2, "vip": True},
    queue="billing",
    segment="consumer",
)


def with_(**changes: Any) -> Facts:
    return dataclasses.replace(GOOD, **changes)


def test_all_rules_hold() -> None:
    assert check_eligibility(uc("rules"), GOOD) is None


@pytest.mark.parametrize(
    ("facts", "failed"),
    [
        (with_(authenticated=None), "customer.authenticated"),
        (with_(authenticated=False), "customer.authenticated"),
        (with_(region=None), "customer.region"),
        (with_(region="FR"), "customer.region"),
        (with_(region="gb"), "customer.region"),
        (with_(consent={}), "no-profiling"),
        (with_(consent={"profiling": True}), "no-profiling"),
        (with_(consent={"profiling": 0}), "no-profiling"),
        (with_(attributes={"level": 2, "vip": True}), "customer.attributes.tier"),
        (with_(attributes={"tier": "basic", "level": 2, "vip": True}), "customer.attributes.tier"),
        (
            with_(attributes={"tier": ["premium"], "level": 2, "vip": True}),
            "customer.attributes.tier",
        ),
        (
            with_(attributes={"tier": "premium", "level": 3, "vip": True}),
            "customer.attributes.level",
        ),
        (
            with_(attributes={"tier": "premium", "level": 2.0, "vip": True}),
            "customer.attributes.level",
        ),
        (
            with_(attributes={"tier": "premium", "level": True, "vip": True}),
            "customer.attributes.level",
        ),
        (
            with_(attributes={"tier": "premium", "level": "2", "vip": True}),
            "customer.attributes.level",
        ),
        (with_(attributes={"tier": "premium", "level": 2, "vip": 1}), "customer.attributes.vip"),
        (
            with_(attributes={"tier": "premium", "level": 2, "vip": "true"}),
            "customer.attributes.vip",
        ),
        (with_(attributes={"tier": "premium", "level": 2}), "customer.attributes.vip"),
        (with_(queue=None), "request.queue"),
        (with_(queue="legal"), "request.queue"),
        (with_(segment=None), "request.segment"),
        (with_(segment="business"), "request.segment"),
    ],
)
def test_first_failing_rule(facts: Facts, failed: str) -> None:
    failure = check_eligibility(uc("rules"), facts)
    assert failure is not None
    assert failure.param == failed


def test_rule_failure_carries_rule_and_name() -> None:
    assert check_eligibility(uc("rules"), with_(consent={})) == RuleFailure(
        rule="consent.profiling", name="no-profiling", param="no-profiling"
    )
    assert check_eligibility(uc("rules"), with_(region=None)) == RuleFailure(
        rule="customer.region", name=None, param="customer.region"
    )


def test_the_first_failure_wins() -> None:
    failure = check_eligibility(uc("rules"), Facts())
    assert failure is not None
    assert failure.rule == "customer.authenticated"


def test_not_in_fails_on_a_missing_or_non_scalar_fact() -> None:
    bundle = load_bundle(
        BUNDLE.replace("  rules:", "  other:", 1).replace(
            TWO_RULES,
            "      - {rule: customer.attributes.x, not_in: [a]}",
        )
    )
    rule_uc = bundle.policy.use_cases["other"]
    assert rule_uc.eligibility[0].holds(Facts(attributes={"x": "b"}))
    assert rule_uc.eligibility[0].holds(Facts(attributes={"x": None}))
    assert not rule_uc.eligibility[0].holds(Facts(attributes={"x": "a"}))
    assert not rule_uc.eligibility[0].holds(Facts())
    assert not rule_uc.eligibility[0].holds(Facts(attributes={"x": {"y": 1}}))


def test_equals_null_matches_an_explicit_null() -> None:
    text = BUNDLE.replace(
        TWO_RULES,
        "      - {rule: customer.attributes.closed_at, equals: null}",
    )
    rule = load_bundle(text).policy.use_cases["rules"].eligibility[0]
    assert rule.operator == "equals"
    assert rule.holds(Facts(attributes={"closed_at": None}))
    assert not rule.holds(Facts(attributes={}))
    assert not rule.holds(Facts(attributes={"closed_at": "2026-01-01"}))


def test_an_empty_eligibility_list_admits_everyone() -> None:
    assert check_eligibility(uc("nodraft"), Facts()) is None


# -- facts from the request ------------------------------------------------------------


def test_facts_from_customer() -> None:
    facts = facts_from_customer(
        {
            "authenticated": True,
            "consent": {"ai_assist": True, "profiling": False},
            "region": "GB",
            "attributes": {"tier": "premium"},
        },
        queue="billing",
        segment="smb",
    )
    assert facts.authenticated is True
    assert dict(facts.consent) == {"ai_assist": True, "profiling": False}
    assert facts.region == "GB"
    assert dict(facts.attributes) == {"tier": "premium"}
    assert (facts.queue, facts.segment) == ("billing", "smb")
    assert isinstance(facts.consent, MappingProxyType)


def test_facts_from_an_empty_customer() -> None:
    facts = facts_from_customer({}, queue=None, segment=None)
    assert facts == Facts(consent=MappingProxyType({}), attributes=MappingProxyType({}))
    assert (
        facts_from_customer({"consent": None, "attributes": None}, queue=None, segment=None).consent
        == {}
    )


def test_facts_are_copied() -> None:
    consent = {"ai_assist": True}
    facts = facts_from_customer({"consent": consent}, queue=None, segment=None)
    consent["ai_assist"] = False
    assert facts.consent["ai_assist"] is True


@pytest.mark.parametrize(
    ("customer", "path"),
    [
        ({"authenticated": "yes"}, "customer.authenticated"),
        ({"authenticated": 1}, "customer.authenticated"),
        ({"region": 44}, "customer.region"),
        ({"consent": ["ai_assist"]}, "customer.consent"),
        ({"consent": {"ai_assist": "true"}}, "customer.consent.ai_assist"),
        ({"attributes": "premium"}, "customer.attributes"),
        ({"email": "x@example.com"}, "customer.email"),
    ],
)
def test_facts_from_customer_rejects(customer: dict[str, Any], path: str) -> None:
    with pytest.raises(FactsError) as info:
        facts_from_customer(customer, queue=None, segment=None)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")


def test_facts_from_non_mapping() -> None:
    with pytest.raises(FactsError) as info:
        facts_from_customer(["authenticated"], queue=None, segment=None)  # type: ignore[arg-type]
    assert info.value.path == "customer"
