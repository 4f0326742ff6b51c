"""Casegate policy bundles: schema, loading, and the pure decision engine.

    from policies import Facts, decide, judge_tool_calls, load_bundle_file

    loaded = load_bundle_file("policies/bundles/default.yaml")
    decision = decide(loaded.policy, use_case="triage", requested_class=None,
                      route="support-default", facts=Facts(authenticated=True),
                      switches=())
    decision.refusal      # Refusal(403, "ineligible", ..., "ai-assist-consent")

A leaf package: it imports only the standard library, pydantic and PyYAML. Entity
names are plain strings here; the gateway checks that each has a detector.
"""

from policies.check import render_check
from policies.compiled import (
    CompiledArg,
    CompiledPolicy,
    CompiledRule,
    CompiledTool,
    CompiledUseCase,
)
from policies.durations import parse_duration
from policies.engine import (
    Decision,
    Refusal,
    RuleFailure,
    check_eligibility,
    decide,
    lower_action_class,
)
from policies.errors import BundleError, FactsError, ScopeError
from policies.facts import Facts, facts_from_customer
from policies.loader import LoadedBundle, default_bundle_path, load_bundle, load_bundle_file
from policies.schema import (
    ACTION_CLASSES,
    ActionClasses,
    ArgConstraint,
    AutomationClass,
    Bundle,
    DataSet,
    DraftClass,
    EligibilityRule,
    RecommendationClass,
    RedactionSpec,
    ToolSpec,
    Tripwire,
    UseCase,
)
from policies.switches import (
    Switch,
    SwitchEffect,
    evaluate_switches,
    parse_scope,
    valid_scopes,
)
from policies.tools import ToolCall, ToolJudgement, ToolViolation, judge_tool_calls
from policies.tripwires import CompiledTripwire, Trip, evaluate_tripwire

__all__ = [
    "ACTION_CLASSES",
    "ActionClasses",
    "ArgConstraint",
    "AutomationClass",
    "Bundle",
    "BundleError",
    "CompiledArg",
    "CompiledPolicy",
    "CompiledRule",
    "CompiledTool",
    "CompiledTripwire",
    "CompiledUseCase",
    "DataSet",
    "Decision",
    "DraftClass",
    "EligibilityRule",
    "Facts",
    "FactsError",
    "LoadedBundle",
    "RecommendationClass",
    "RedactionSpec",
    "Refusal",
    "RuleFailure",
    "ScopeError",
    "Switch",
    "SwitchEffect",
    "ToolCall",
    "ToolJudgement",
    "ToolSpec",
    "ToolViolation",
    "Trip",
    "Tripwire",
    "UseCase",
    "check_eligibility",
    "decide",
    "default_bundle_path",
    "evaluate_switches",
    "evaluate_tripwire",
    "facts_from_customer",
    "judge_tool_calls",
    "load_bundle",
    "load_bundle_file",
    "lower_action_class",
    "parse_duration",
    "parse_scope",
    "render_check",
    "valid_scopes",
]
