"""The decision engine: may this call go ahead, and as which action class?

    decision = decide(loaded.policy, use_case="triage", requested_class=None,
                      route="support-default", facts=facts, switches=active)
    if decision.refusal is not None:
        ...  # answer decision.refusal.status / .code / .message / .param

`decide` is pure: no I/O, no clock, no logging; the same inputs give the same
`Decision`. It checks, in this order (each step may refuse):

1. the use case exists                          → 403 ``use_case_not_permitted``
2. the use case offers the requested class      → 403 ``action_class_not_permitted``
3. no halting switch covers the call            → 503 ``kill_switch_engaged``
   (degrading switches lower the class one step in total, however many apply; a halt
   on the class the call was lowered to refuses it too)
4. every eligibility rule holds                 → 403 ``ineligible``

The gateway checks the route (``model``) and the client's permissions before calling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from policies.compiled import CompiledPolicy, CompiledUseCase
from policies.facts import Facts
from policies.schema import ACTION_CLASSES
from policies.switches import Switch, SwitchEffect, evaluate_switches

__all__ = [
    "ACTION_CLASS_HEADER",
    "Decision",
    "Refusal",
    "RuleFailure",
    "check_eligibility",
    "decide",
    "lower_action_class",
]

ACTION_CLASS_HEADER = "X-Casegate-Action-Class"
_EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call is refused, in the shape of the OpenAI error envelope."""

    status: int
    code: str
    message: str
    param: str | None


@dataclass(frozen=True, slots=True)
class RuleFailure:
    """The first eligibility rule that failed: its path, its name, and what to report."""

    rule: str
    name: str | None
    param: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one call. A refused decision fills what was known when it refused."""

    refusal: Refusal | None
    use_case: str
    action_class_requested: str
    action_class_applied: str
    #: A switch lowered the class.
    degraded: bool
    #: Scopes of the switches that changed this call: the halt that refused it, the
    #: degrades that lowered it, and ``tool:`` switches that took a tool it would have
    #: sent. (``model:`` switches are not listed: only the gateway knows which
    #: deployments a route has; every removed model is in `removed_models`.)
    switches: tuple[str, ...]
    #: Tools that may go upstream, in bundle order; empty unless the applied class is
    #: automation.
    tools_upstream: tuple[str, ...]
    removed_tools: frozenset[str]
    removed_models: frozenset[str]
    max_tokens: int | None
    on_violation: str
    approval_required: bool
    draft_expires_after_s: int | None
    #: The failed rule's name, else its path (the ``param`` of the refusal).
    eligibility_rule_failed: str | None

    @property
    def allowed(self) -> bool:
        """Whether the call may go ahead."""
        return self.refusal is None


def check_eligibility(uc: CompiledUseCase, facts: Facts) -> RuleFailure | None:
    """The first rule of *uc* that *facts* fail, or ``None`` if all hold."""
    for rule in uc.eligibility:
        if not rule.holds(facts):
            return RuleFailure(rule=rule.path, name=rule.name, param=rule.param)
    return None


def lower_action_class(uc: CompiledUseCase, cls: str) -> str:
    """One step down from *cls* among the classes *uc* offers; *cls* if none is lower."""
    if cls not in ACTION_CLASSES:
        raise ValueError(f"unknown action class {cls!r}")
    for lower in reversed(ACTION_CLASSES[: ACTION_CLASSES.index(cls)]):
        if lower in uc.action_classes:
            return lower
    return cls


def decide(
    policy: CompiledPolicy,
    *,
    use_case: str,
    requested_class: str | None,
    route: str,
    facts: Facts,
    switches: Sequence[Switch],
) -> Decision:
    """Decide one call; see the module docstring for the order of the checks."""
    uc = policy.use_cases.get(use_case)
    if uc is None:
        requested = requested_class or ""
        return Decision(
            refusal=Refusal(
                403,
                "use_case_not_permitted",
                f"use case {use_case!r} is not in the active policy",
                "X-Casegate-Use-Case",
            ),
            use_case=use_case,
            action_class_requested=requested,
            action_class_applied=requested,
            degraded=False,
            switches=(),
            tools_upstream=(),
            removed_tools=_EMPTY,
            removed_models=_EMPTY,
            max_tokens=None,
            on_violation="block",
            approval_required=False,
            draft_expires_after_s=None,
            eligibility_rule_failed=None,
        )

    requested = requested_class if requested_class is not None else uc.default_action_class
    if requested not in uc.action_classes:
        return _decision(
            uc,
            requested,
            requested,
            refusal=Refusal(
                403,
                "action_class_not_permitted",
                f"use case {use_case!r} has no action class {requested!r}",
                ACTION_CLASS_HEADER,
            ),
            removed_tools=_EMPTY,
            removed_models=_EMPTY,
        )

    effect = evaluate_switches(switches, use_case=use_case, action_class=requested, route=route)
    if effect.halt is not None:
        return _halted(uc, requested, requested, effect.halt, (), effect)

    applied = requested
    fired: tuple[str, ...] = ()
    if effect.degrade:
        applied = lower_action_class(uc, requested)
        if applied != requested:
            fired = tuple(s.scope for s in effect.degrade)
            # A halt on the class the call now has covers it too: halting drafts must
            # not let degraded automation through as drafts.
            for switch in switches:
                if switch.mode == "halt" and switch.scope == f"action_class:{applied}":
                    return _halted(uc, requested, applied, switch, fired, effect)

    tools = _tools_upstream(uc, applied, effect.removed_tools)
    fired += tuple(
        f"tool:{name}"
        for name in sorted(effect.removed_tools)
        if applied == "automation" and name in uc.tools
    )
    failure = check_eligibility(uc, facts)
    refusal = None
    if failure is not None:
        refusal = Refusal(
            403,
            "ineligible",
            f"eligibility rule {failure.param!r} is not met",
            failure.param,
        )
    return _decision(
        uc,
        requested,
        applied,
        refusal=refusal,
        fired=fired,
        tools=tools,
        removed_tools=effect.removed_tools,
        removed_models=effect.removed_models,
        failed=failure.param if failure is not None else None,
    )


def _tools_upstream(uc: CompiledUseCase, applied: str, removed: frozenset[str]) -> tuple[str, ...]:
    if applied != "automation":
        return ()
    return tuple(name for name in uc.tools if name not in removed)


def _halted(
    uc: CompiledUseCase,
    requested: str,
    applied: str,
    halt: Switch,
    fired: tuple[str, ...],
    effect: SwitchEffect,
) -> Decision:
    return _decision(
        uc,
        requested,
        applied,
        refusal=Refusal(
            503,
            "kill_switch_engaged",
            f"kill switch {halt.scope!r} is engaged (halt)",
            None,
        ),
        fired=(halt.scope, *fired),
        removed_tools=effect.removed_tools,
        removed_models=effect.removed_models,
    )


def _decision(
    uc: CompiledUseCase,
    requested: str,
    applied: str,
    *,
    refusal: Refusal | None,
    removed_tools: frozenset[str],
    removed_models: frozenset[str],
    fired: tuple[str, ...] = (),
    tools: tuple[str, ...] = (),
    failed: str | None = None,
) -> Decision:
    draft = applied == "draft"
    return Decision(
        refusal=refusal,
        use_case=uc.name,
        action_class_requested=requested,
        action_class_applied=applied,
        degraded=applied != requested,
        switches=fired,
        tools_upstream=tools,
        removed_tools=removed_tools,
        removed_models=removed_models,
        max_tokens=uc.max_tokens,
        on_violation=uc.on_violation,
        approval_required=draft,
        draft_expires_after_s=uc.draft_expires_after_s if draft else None,
        eligibility_rule_failed=failed,
    )
