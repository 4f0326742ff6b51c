"""Policy versions: what the activation history means, and staged (observe) activation.

Usage::

    enforced, observed = fold_activations(await store.activations())
    target = rollback_target(history, to_version=None)     # the version before the current
    rec.observed = shadow_decision(rt.observed, facts=..., ...)   # observe mode, never applied
    report = diff_observed(ended_events)                   # `casegate policy diff --observed`

The activation history is append-only. Folding it from the start: an ``enforce``
activation makes its version the enforcing one and ends any observation; an
``observe`` activation makes its version run beside the enforcing one (decided and
recorded for every call, never applied) until the next ``enforce`` activation.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.stores import Activation
from policies import Facts, FactsError, decide, facts_from_customer
from redaction import minimise

if TYPE_CHECKING:
    from gateway.lineage import LineageRecord
    from gateway.models import ChatRequest, Governance
    from gateway.runtime import ActivePolicy
    from policies import Switch

__all__ = [
    "diff_observed",
    "fold_activations",
    "observe_call",
    "rollback_target",
    "shadow_decision",
]

log = logging.getLogger("casegate.policy")


def fold_activations(
    history: Sequence[Activation],
) -> tuple[Activation | None, Activation | None]:
    """The enforcing activation and the observing one (``None`` when nothing observes)."""
    enforced: Activation | None = None
    observed: Activation | None = None
    for activation in history:
        if activation.mode == "enforce":
            enforced, observed = activation, None
        else:
            observed = activation
    if observed is not None and enforced is not None and observed.version == enforced.version:
        observed = None  # observing what already enforces shows nothing
    return enforced, observed


def rollback_target(history: Sequence[Activation], to_version: str | None) -> str | None:
    """The version a rollback re-activates: *to_version*, or the enforcing version before
    the current one (the most recent different one); ``None`` when there is none."""
    if to_version is not None:
        return to_version
    enforcing = [a.version for a in history if a.mode == "enforce"]
    if not enforcing:
        return None
    current = enforcing[-1]
    for version in reversed(enforcing):
        if version != current:
            return version
    return None


def _class_rank(cls: str) -> int:
    return ("recommendation", "draft", "automation").index(cls)


def shadow_decision(
    observed: ActivePolicy,
    *,
    use_case: str,
    requested_class: str | None,
    route: str,
    facts: Facts,
    switches: Sequence[Switch],
    context: Mapping[str, Any],
    tool_calls: Iterable[str],
) -> dict[str, Any]:
    """What *observed* would have decided for a call: names and codes only, no values.

    ``tools_blocked`` names the returned tool calls the observed version would not
    allow under its own action class (judged by name); ``fields_stripped`` the context
    fields its data set would have dropped.
    """
    out: dict[str, Any] = {
        "version": observed.version,
        "sha256": observed.loaded.sha256,
        "decision": "refused",
        "refusal": None,
        "action_class_applied": None,
        "tools_blocked": [],
        "fields_stripped": [],
    }
    decision = decide(
        observed.loaded.policy,
        use_case=use_case,
        requested_class=requested_class,
        route=route,
        facts=facts,
        switches=switches,
    )
    out["action_class_applied"] = decision.action_class_applied
    if decision.refusal is not None:
        out["refusal"] = decision.refusal.code
        return out
    uc = observed.use_case(use_case)
    assert uc is not None  # decide refuses an unknown use case
    if uc.route != route:
        out["refusal"] = "invalid_request"
        return out
    mini = minimise(context, uc.required, uc.optional)
    out["fields_stripped"] = list(mini.stripped)
    if mini.missing:
        out["refusal"] = "required_field_missing"
        return out
    allowed = set(decision.tools_upstream)
    out["tools_blocked"] = sorted({name for name in tool_calls if name not in allowed})
    if decision.degraded:
        out["decision"] = "degraded"
    elif decision.approval_required and decision.action_class_applied == "draft":
        out["decision"] = "pending_approval"
    else:
        out["decision"] = "allowed"
    return out


def observe_call(
    observed: ActivePolicy,
    rec: LineageRecord,
    chat: ChatRequest | None,
    gov: Governance | None,
    switches: Sequence[Switch],
) -> None:
    """Fill ``rec.observed`` with *observed*'s decision for the call. Never raises: an
    observed version must not change what the enforcing one did."""
    if chat is None or gov is None or rec.route is None:
        return  # refused before there was anything to decide
    try:
        facts = facts_from_customer(
            chat.casegate.customer.model_dump(), queue=gov.queue, segment=gov.segment
        )
    except FactsError:
        return
    try:
        rec.observed = shadow_decision(
            observed,
            use_case=gov.use_case,
            requested_class=gov.action_class,
            route=rec.route,
            facts=facts,
            switches=switches,
            context=chat.casegate.context,
            tool_calls=[*rec.tool_calls_allowed, *rec.tool_calls_blocked],
        )
    except Exception:
        log.exception("the observed policy %r failed to decide a call", observed.version)


def diff_observed(
    events: Iterable[Mapping[str, Any]], *, version: str | None = None
) -> dict[str, Any]:
    """Aggregate ``request.ended`` events carrying ``observed`` into what the observed
    version would have changed: calls it would refuse (by code) or let through, action
    classes it would lower or raise, tools it would block, fields it would strip."""
    calls = 0
    versions: Counter[str] = Counter()
    newly_refused: Counter[str] = Counter()
    newly_allowed = 0
    lowered = raised = 0
    tools: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    for event in events:
        data = event.get("data") or {}
        obs = data.get("observed")
        if not isinstance(obs, dict) or (version is not None and obs.get("version") != version):
            continue
        calls += 1
        versions[str(obs.get("version"))] += 1
        enforced_refused = data.get("decision") == "refused"
        observed_refused = obs.get("decision") == "refused"
        decisions[f"{data.get('decision')}->{obs.get('decision')}"] += 1
        if observed_refused and not enforced_refused:
            newly_refused[str(obs.get("refusal"))] += 1
        elif enforced_refused and not observed_refused:
            newly_allowed += 1
        before, after = data.get("action_class_applied"), obs.get("action_class_applied")
        if not observed_refused and not enforced_refused and before and after and before != after:
            if _class_rank(after) < _class_rank(before):
                lowered += 1
            else:
                raised += 1
        enforced_blocked = set((data.get("tool_calls") or {}).get("blocked") or [])
        for name in obs.get("tools_blocked") or []:
            if name not in enforced_blocked:
                tools[name] += 1
        enforced_stripped = set((data.get("fields") or {}).get("stripped") or [])
        for name in obs.get("fields_stripped") or []:
            if name not in enforced_stripped:
                fields[name] += 1
    return {
        "calls": calls,
        "versions": dict(versions),
        "would_refuse": {"total": sum(newly_refused.values()), "by_code": dict(newly_refused)},
        "would_allow": newly_allowed,
        "action_class": {"lowered": lowered, "raised": raised},
        "tools_blocked": dict(tools),
        "fields_stripped": dict(fields),
        "decisions": dict(decisions),
    }
