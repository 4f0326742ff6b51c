"""The request path of ``POST /v1/chat/completions``, in its fixed order.

Usage::

    result = await run_chat(rt, client, raw_body, headers, request_id=rid, span=span)

The order is a safety invariant (DESIGN.md section 2), so it is this one function
rather than configuration: nothing reaches a provider before the lineage start event
is durable, the switches and eligibility have been decided, the context has been
minimised and every string redacted. The lineage end event is written in a
``finally`` shielded from cancellation, so a client that disconnects cannot skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from gateway.auth import Client
from gateway.consent import ConsentUnavailable
from gateway.drafts import DraftContent, DraftService, PendingDraft, customer_turns
from gateway.drain import current as current_drain
from gateway.errors import (
    GatewayError,
    InternalError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RequiredFieldMissing,
    Unavailable,
    UpstreamError,
)
from gateway.limits import Reservation
from gateway.lineage import LineageRecord, new_lineage_id
from gateway.metrics import observe_attempt, observe_overhead
from gateway.metrics import observe_call as count_call
from gateway.models import ChatRequest, Governance, parse_chat_request, read_governance
from gateway.policy_admin import observe_call
from gateway.providers.base import AttemptError, Deployment
from gateway.runtime import ActivePolicy, Runtime
from gateway.stages.payload import scrub_payload, validate_messages
from gateway.stages.respond import StreamGovernor, ToolGuard, govern_reply
from gateway.stages.upstream import build_upstream
from gateway.stores import StateUnavailable
from gateway.switchboard import watch_stream
from gateway.tripwires import record_call as record_tripwire_counts
from policies import (
    CompiledUseCase,
    Decision,
    FactsError,
    Switch,
    decide,
    facts_from_customer,
)
from redaction import RedactionError, Vault, minimise, strip_invisible
from tracing import AttemptSpan, ServerSpan
from tracing import attributes as attr

__all__ = ["After", "ChatResult", "run_after", "run_chat"]

log = logging.getLogger("casegate.pipeline")


#: Telemetry that no byte of the answer waits for (span endings, span attributes and
#: events, metrics), kept to run once the answer is sent: at concurrency one the client
#: has its answer that much sooner, and the work is the same. Each keeps the times it
#: measured when it was queued. A non-stream answer runs it after its last byte
#: (`run_after`), a stream after its first chunk; an error answer, or a call whose
#: answer will not be sent, runs it at once.
After = list[Callable[[], None]]


def run_after(after: After | None) -> None:
    """Run what a call queued for after its answer; a failure is logged, not raised.
    The queue is emptied: its items refer to the call that holds it."""
    if not after:
        return
    for fn in after:
        try:
            fn()
        except Exception:
            log.exception("telemetry after the answer failed")
    after.clear()


def _later(call: Call, fn: Callable[[], None]) -> None:
    """Queue `fn` for after the answer, or run it now when there is no queue (any more)."""
    if call.after is not None:
        call.after.append(fn)
    else:
        run_after([fn])


def _now(call: Call) -> None:
    """The call's answer will not carry its queue: run it now, and queue nothing more."""
    after, call.after = call.after, None
    run_after(after)


@dataclass
class ChatResult:
    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None
    #: to run once the body is sent (`run_after`); a stream runs its own
    after: After | None = None


@dataclass
class Call:
    """What the pipeline knows about one call, handed from step to step."""

    rec: LineageRecord
    chat: ChatRequest | None = None
    gov: Governance | None = None
    policy: ActivePolicy | None = None
    uc: CompiledUseCase | None = None
    decision: Decision | None = None
    #: the engaged switches `decision` was made under (the switchboard's own tuple)
    switches_seen: tuple[Switch, ...] = ()
    vault: Vault | None = None
    redactions: dict[str, int] = field(default_factory=dict)
    tools_upstream: list[str] = field(default_factory=list)
    guard: ToolGuard | None = None
    draft: PendingDraft | None = None  # step 10: the draft this call will store
    held: Reservation | None = None  # budget reserved for this call
    observed: ActivePolicy | None = None  # a policy version in observe mode (never applied)
    provider_s: float | None = None  # time spent in the provider (metrics: overhead)
    attempt_obs: Any = None  # a stream's successful attempt: its metrics end with the stream
    after: After | None = None  # see `After`; None once it ran

    def casegate(self) -> dict[str, Any]:
        rec = self.rec
        out: dict[str, Any] = {
            "lineage_id": rec.lineage_id,
            "route": rec.route,
            "decision": rec.decision,
            "action_class_requested": rec.action_class_requested,
            "action_class_applied": rec.action_class_applied,
            "redactions": dict(rec.redactions),
            "fields": {"used": list(rec.fields_used), "stripped": list(rec.fields_stripped)},
            "tool_calls_blocked": list(rec.tool_calls_blocked),
        }
        if rec.approval is not None:
            out["approval"] = rec.approval
        return out


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def _incoming_trace_id(headers: Mapping[str, str]) -> str | None:
    """With telemetry export off there is no span, but the caller's W3C trace id still
    ties the lineage record to the app's own trace."""
    match = _TRACEPARENT.match(headers.get("traceparent", "").strip().lower())
    if match is None or match.group(1) == "0" * 32:
        return None
    return match.group(1)


def _headers(call: Call, request_id: str) -> dict[str, str]:
    return {
        "X-Casegate-Lineage-Id": call.rec.lineage_id,
        "X-Casegate-Decision": call.rec.decision or "refused",
        "X-Request-Id": request_id,
    }


async def _finish_lineage(rt: Runtime, call: Call) -> None:
    """Write the end event; shielded so a cancelled request still records it."""
    _later(call, partial(_observe_end, rt, call))
    if call.observed is not None:
        observe_call(call.observed, call.rec, call.chat, call.gov, rt.switches())
    # Committed at once when the writer is alone (no coroutine, nothing to cancel);
    # else the write to wait for, which a cancelled request must not interrupt.
    pending = rt.lineage.finish_nowait(call.rec)
    if pending is not None:
        current_drain().track(pending)  # a shutting-down worker waits for it before closing
        try:
            await asyncio.shield(pending)
        except asyncio.CancelledError:
            # Let the write land before the cancellation goes on. A bare `await` is
            # not enough: anyio (Starlette's disconnect handling) cancels again at every
            # await, which would cancel the write mid-commit and leave the chain's head
            # behind the store (every later event then collides on its seq).
            while not pending.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(pending)
            if not pending.cancelled():
                pending.exception()  # retrieved: the record is the recovery's job now
            raise
    if call.provider_s is not None and not call.rec.stream:
        # request time from the ASGI entry to the durable end event, minus the provider
        _observe_overhead(rt, call, call.provider_s)


async def run_chat(
    rt: Runtime,
    client: Client,
    raw: bytes,
    headers: Mapping[str, str],
    *,
    request_id: str,
    span: ServerSpan,
    started_mono: float | None = None,
    body_error: GatewayError | None = None,
) -> ChatResult:
    policy = rt.policy
    rec = LineageRecord(
        lineage_id=new_lineage_id(),
        client=client.name,
        request_id=request_id,
        policy=policy.lineage(),
        trace_id=span.trace_id_hex or _incoming_trace_id(headers),
    )
    if started_mono is not None:
        rec.started_mono = started_mono  # the overhead metric counts from the ASGI entry
    call = Call(rec=rec, policy=policy, observed=rt.observed, after=[])
    span.set(attr.CASEGATE_LINEAGE_ID, rec.lineage_id)
    streaming_handed_off = answered = False
    rt.chats_in_flight += 1
    try:
        _read_facts(rt, call, client, raw, headers, body_error)
        await rt.lineage.start(rec)  # durable before anything goes upstream
        await _decide(rt, call)
        upstream, tools = await _prepare(rt, call)
        assert call.chat is not None and call.gov is not None and call.uc is not None
        _plan_draft(call)
        if call.gov.dry_run:
            rec.end = "completed"
            body = call.casegate()
            body.update(dry_run=True, upstream={"tools": tools})
            result = ChatResult(200, _headers(call, request_id), body={"casegate": body})
            answered = True
            return result
        await _reserve_budget(rt, call, upstream)
        deadline = time.monotonic() + rt.settings.limits.deadline_s
        observer = _observer(rt, span, call)
        if call.chat.stream:
            async with current_drain().bounded():  # SIGTERM: ends by the grace (503)
                served = await rt.router.open_stream(
                    call.uc.route,
                    upstream,
                    deadline=deadline,
                    first_chunk_timeout_s=rt.settings.limits.first_chunk_timeout_s,
                    removed_models=call.decision.removed_models if call.decision else frozenset(),
                    observer=observer,
                )
            rec.attempts = served.attempts
            rec.model_served = served.deployment.served_model
            rec.model_deployment = served.deployment.model
            rec.ttfc_ms = int(served.ttfc_s * 1000)
            _observe_overhead(rt, call, served.ttfc_s)  # (sent after the first chunk)
            stream = _stream_body(
                rt, call, served.stream, served.first, served.deployment, deadline
            )
            streaming_handed_off = True
            return ChatResult(200, _headers(call, request_id), stream=stream)
        async with current_drain().bounded():  # SIGTERM: ends by the grace (503)
            served_reply = await rt.router.complete(
                call.uc.route,
                upstream,
                deadline=deadline,
                removed_models=call.decision.removed_models if call.decision else frozenset(),
                observer=observer,
            )
        rec.attempts = served_reply.attempts
        rec.provider_ms = int(served_reply.provider_s * 1000)
        call.provider_s = served_reply.provider_s
        reply = served_reply.reply
        reply["model"] = served_reply.deployment.served_model
        rec.model_served = served_reply.deployment.served_model
        rec.model_deployment = served_reply.deployment.model
        rec.usage = _usage(reply.get("usage"))
        assert call.guard is not None
        try:
            govern_reply(reply, call.guard)
        finally:
            _record_tools(call)
        await _store_draft(rt, call, _reply_text(reply))  # step 10, durable before the reply
        rec.end = "completed"
        reply["casegate"] = call.casegate()
        result = ChatResult(200, _headers(call, request_id), body=reply)
        answered = True
        return result
    except GatewayError as exc:
        _record_error(call, exc)
        span.set(attr.CASEGATE_DECISION, rec.decision or "refused")
        raise _with_headers(exc, call, request_id) from None
    except RedactionError:
        _record_error(call, Unavailable("Redaction failed", code="redaction_failed"))
        raise _with_headers(
            InternalError("Personal-data redaction failed; nothing was sent upstream"),
            call,
            request_id,
        ) from None
    except Exception:
        log.exception("unexpected error in the chat pipeline")
        _record_error(call, InternalError("internal error"))
        raise _with_headers(
            InternalError("The gateway failed to handle this call"), call, request_id
        ) from None
    finally:
        if not (answered or streaming_handed_off):
            _now(call)  # an error answer: nothing is sent after it
        if answered:  # nothing changes the call once its answer is built: read it later
            _later(call, partial(_apply_call_span, span, call))
        else:  # an error's, or a stream's as known before its first byte
            _later(call, partial(_apply_span, span, _span_attrs(call), _span_events(call)))
        try:
            if not streaming_handed_off:
                await _settle_budget(rt, call)
                await _finish_lineage(rt, call)
                if answered:
                    result.after = call.after
        except BaseException:
            _now(call)  # the answer is an error after all
            raise
        finally:
            rt.chats_in_flight -= 1


# -- steps ------------------------------------------------------------------------


def _read_facts(
    rt: Runtime,
    call: Call,
    client: Client,
    raw: bytes,
    headers: Mapping[str, str],
    body_error: GatewayError | None = None,
) -> None:
    """Step 2: governance facts, use case permission, route, action class."""
    rec = call.rec
    gov = read_governance(headers)
    call.gov = gov
    rec.use_case = gov.use_case
    rec.case_id = gov.case_id
    rec.queue, rec.segment = gov.queue, gov.segment
    rec.dry_run = gov.dry_run
    rec.action_class_requested = gov.action_class
    if gov.customer_id is not None:
        rec.customer_ref = rt.keys.customer_ref(gov.customer_id)
    if body_error is not None:
        raise body_error  # e.g. 413: still an authenticated call with its one record
    chat = parse_chat_request(raw)
    call.chat = chat
    rec.stream = bool(chat.stream)
    assert call.policy is not None
    uc = call.policy.use_case(gov.use_case)
    if gov.use_case not in client.use_cases or uc is None:
        raise PermissionDenied(
            f"This key may not call use case {gov.use_case!r}",
            code="use_case_not_permitted",
            param="X-Casegate-Use-Case",
        )
    call.uc = uc
    rec.action_class_requested = gov.action_class or uc.default_action_class
    if chat.model not in rt.deployments:
        raise NotFound(
            f"The model {chat.model!r} does not exist: name a route the key may use "
            "(GET /v1/models lists them)",
            code="model_not_found",
            param="model",
        )
    if chat.model != uc.route:
        raise InvalidRequest(
            f"Use case {gov.use_case!r} runs on route {uc.route!r}, not {chat.model!r}",
            param="model",
        )
    rec.route = chat.model
    validate_messages(chat.messages, allowed_unscanned=uc.allowed_unscanned_parts)


async def _decide(rt: Runtime, call: Call) -> None:
    """Steps 4-5: kill switches, then eligibility and consent."""
    assert call.chat is not None and call.gov is not None and call.policy is not None
    rec = call.rec
    customer = call.chat.casegate.customer.model_dump()
    try:
        facts = facts_from_customer(customer, queue=call.gov.queue, segment=call.gov.segment)
    except FactsError as exc:
        raise InvalidRequest(f"Invalid customer facts: {exc}", param="casegate.customer") from None
    rec.consent_basis = "request"
    call.switches_seen = switches = rt.switches()
    decision = decide(
        call.policy.loaded.policy,
        use_case=call.gov.use_case,
        requested_class=call.gov.action_class,
        route=call.chat.model,
        facts=facts,
        switches=switches,
    )
    if rt.consent is not None and (
        decision.refusal is None or decision.refusal.code == "ineligible"
    ):
        # the consent of record replaces the request's; switches have had their say
        customer["consent"] = await _consent_of_record(rt, call)
        rec.consent_basis = "consent_service"
        facts = facts_from_customer(customer, queue=call.gov.queue, segment=call.gov.segment)
        call.switches_seen = switches = rt.switches()
        decision = decide(
            call.policy.loaded.policy,
            use_case=call.gov.use_case,
            requested_class=call.gov.action_class,
            route=call.chat.model,
            facts=facts,
            switches=switches,
        )
    call.decision = decision
    rec.kill_switches = list(decision.switches)
    # model: switches on this route's deployments affect the call too (it falls back)
    rec.kill_switches += [
        f"model:{d.model}"
        for d in rt.deployments.get(call.chat.model, ())
        if d.model in decision.removed_models
    ]
    rec.action_class_requested = decision.action_class_requested
    rec.action_class_applied = decision.action_class_applied
    rec.checks.append({"check": "eligibility", "on": "customer", "ok": decision.refusal is None})
    if decision.refusal is not None:
        r = decision.refusal
        if r.code == "ineligible":
            rec.refusal = r.code
        if r.code == "kill_switch_engaged":  # 503, never retried (x-should-retry: false)
            raise Unavailable(r.message, code=r.code, param=r.param)
        raise GatewayError(r.message, code=r.code, param=r.param, status=r.status)
    if decision.degraded:
        rec.decision = "degraded"
    elif decision.approval_required and decision.action_class_applied == "draft":
        rec.decision = "pending_approval"
    else:
        rec.decision = "allowed"


async def _consent_of_record(rt: Runtime, call: Call) -> dict[str, bool]:
    """Step 5: the consent service's answer for this customer (cached), or 503."""
    assert rt.consent is not None and call.gov is not None
    call.rec.consent_basis = "consent_service"
    if call.gov.customer_id is None:
        raise ConsentUnavailable(
            "A consent service of record is configured: send X-Casegate-Customer-Id so the "
            "customer's consent can be looked up",
            param="X-Casegate-Customer-Id",
        )
    return await rt.consent.consent_for(call.gov.customer_id)


async def _load_vault(rt: Runtime, case_key: str) -> tuple[Vault, int | None]:
    loaded = await rt.store.load_vault(case_key, int(time.time() * 1000))
    if loaded is None:
        return Vault(), None
    blob, version = loaded
    if not blob:
        return Vault(), version  # expired: the old values are gone
    cached = rt.vaults.get(case_key)
    if cached is not None and cached[0] == blob:
        # the very ciphertext we last read or wrote (fresh nonce per write): same map
        return cached[1].copy(), version
    try:
        plain = rt.keys.decrypt(blob, aad=b"vault:" + case_key.encode())
    except Exception:
        # a map we cannot read must not silently start a new numbering: fail closed
        raise StateUnavailable("The case's pseudonym map cannot be decrypted") from None
    vault = Vault.from_json(plain)
    _remember_vault(rt, case_key, blob, vault)
    return vault.copy(), version


def _remember_vault(rt: Runtime, case_key: str, blob: bytes, vault: Vault) -> None:
    """Keep the decrypted map of recently seen cases (bounded) to skip decrypt + parse."""
    if len(rt.vaults) >= 4096:
        rt.vaults.pop(next(iter(rt.vaults)))
    rt.vaults[case_key] = (blob, vault.copy())


async def _prepare(rt: Runtime, call: Call) -> tuple[dict[str, Any], list[str]]:
    """Steps 6-7: minimise the context, redact every string, build the upstream body.

    With a case id the pseudonym map is the case's: loaded, extended and saved with
    optimistic concurrency before anything goes upstream, so ``<EMAIL_1>`` means the
    same address in every call of the case. A concurrent writer makes us redo the
    (cheap) redaction on the fresh map rather than number a value twice.
    """
    assert call.chat is not None and call.uc is not None and call.policy is not None
    assert call.decision is not None
    rec, uc, chat = call.rec, call.uc, call.chat
    mini = minimise(chat.casegate.context, uc.required, uc.optional)
    rec.fields_used, rec.fields_stripped = mini.used, mini.stripped
    rec.checks.append({"check": "minimisation", "on": "context", "ok": not mini.missing})
    if mini.missing:
        raise RequiredFieldMissing(
            f"Required context field(s) missing: {', '.join(mini.missing)}",
            param=f"casegate.context.{mini.missing[0]}",
        )
    redactor = call.policy.redactors[uc.name]
    case_key = rt.keys.case_key(rec.case_id) if (rec.case_id and uc.entities) else None
    for _ in range(8):
        vault, version = (await _load_vault(rt, case_key)) if case_key else (Vault(), None)
        counts: dict[str, int] = {}

        def redact(text: str, vault: Vault = vault, counts: dict[str, int] = counts) -> str:
            result = redactor.redact(text, vault)
            for entity, n in result.counts.items():
                counts[entity] = counts.get(entity, 0) + n
            return result.text

        scrubbed = scrub_payload(
            chat.messages, mini.kept, redact if uc.entities else strip_invisible
        )
        if case_key is None or not vault.dirty:
            break
        blob = rt.keys.encrypt(vault.to_json(), aad=b"vault:" + case_key.encode())
        expires = int(time.time() * 1000) + uc.pseudonym_ttl_s * 1000
        if await rt.store.save_vault(case_key, blob, expected_version=version, expires_ms=expires):
            _remember_vault(rt, case_key, blob, vault)
            break
    else:
        raise StateUnavailable("The case's pseudonym map is too contended; try again")
    call.vault = vault
    rec.redactions = counts
    rec.checks.append(
        {"check": "redaction", "on": sorted(scrubbed.parts), "entities": sorted(uc.entities)}
    )
    body, tools = build_upstream(
        chat,
        scrubbed,
        tools_allowed=call.decision.tools_upstream,
        max_tokens=call.decision.max_tokens,
    )
    call.tools_upstream = tools
    call.guard = ToolGuard(
        use_case=uc,
        applied_class=call.decision.action_class_applied,
        removed_tools=call.decision.removed_tools,
        on_violation=call.decision.on_violation,
        vault=vault if uc.restore_in_response else None,
    )
    return body, tools


async def _reserve_budget(rt: Runtime, call: Call, upstream: dict[str, Any]) -> None:
    """Unbounded consumption: reserve the call's upper-bound cost against every cap."""
    if rt.limiter is None:
        return
    assert call.uc is not None
    call.held = await rt.limiter.reserve(
        client=call.rec.client,
        use_case=call.uc.name,
        route=call.uc.route,
        messages=upstream["messages"],
        max_tokens=upstream.get("max_tokens") or upstream.get("max_completion_tokens"),
    )
    call.rec.checks.append({"check": "budget", "on": "request", "ok": True})


async def _settle_budget(rt: Runtime, call: Call) -> None:
    if rt.limiter is None or call.held is None:
        return
    held, call.held = call.held, None
    try:
        await rt.limiter.settle(held, usage=call.rec.usage, model=call.rec.model_deployment)
    except GatewayError:
        log.warning("budget counters could not be settled for %s", call.rec.lineage_id)


# -- step 10: drafts ---------------------------------------------------------------


def _plan_draft(call: Call) -> None:
    """A call whose applied class is ``draft`` gets its draft id and expiry up front,
    so a stream's final chunk can name them before the draft is stored."""
    d = call.decision
    if d is None or d.action_class_applied != "draft" or not d.approval_required:
        return
    assert d.draft_expires_after_s is not None
    call.draft = DraftService.plan(d.draft_expires_after_s)


def _draft_applies(call: Call) -> bool:
    # a tool-call downgrade makes a recommendation for a human, never a stored draft
    return call.draft is not None and not (call.guard is not None and call.guard.downgraded)


async def _store_draft(rt: Runtime, call: Call, text: str) -> None:
    """Step 10: store the draft (texts encrypted) before the response's last byte."""
    rec = call.rec
    if not _draft_applies(call) or call.gov is None or call.gov.dry_run:
        rec.approval = None
        return
    assert call.draft is not None and call.chat is not None and rec.use_case is not None
    await rt.drafts.store_draft(
        call.draft,
        DraftContent(
            client=rec.client,
            lineage_id=rec.lineage_id,
            case_id=rec.case_id,
            use_case=rec.use_case,
            model=rec.model_served,
            redactions=dict(rec.redactions),
            text=text,
            turns=customer_turns(call.chat.messages),
        ),
    )
    rec.approval = call.draft.approval()


def _reply_text(reply: dict[str, Any]) -> str:
    choices = reply.get("choices") or []
    msg = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    content = msg.get("content") if isinstance(msg, dict) else None
    return content if isinstance(content, str) else ""


def _record_tools(call: Call) -> None:
    guard, rec = call.guard, call.rec
    if guard is None:
        return
    rec.tool_calls_allowed = list(guard.allowed)
    rec.tool_calls_blocked = list(guard.blocked)
    rec.tool_calls_removed = list(guard.removed)
    # the output was judged, tool calls or not: the record says on which part
    output = "streamed_output" if rec.stream else "response"
    on = ["tool_calls", output] if (guard.allowed or guard.blocked) else [output]
    rec.checks = [c for c in rec.checks if c.get("check") != "tool_guard"]
    rec.checks.append({"check": "tool_guard", "on": on, "ok": not guard.blocked})
    if guard.downgraded:
        rec.action_class_applied = "recommendation"
        rec.decision = "degraded"


def _record_error(call: Call, exc: GatewayError) -> None:
    rec = call.rec
    if exc.code == "shutting_down":  # the replica stopped mid-call: not a refusal
        rec.end, rec.refusal = "failed", exc.code
        rec.decision = rec.decision or "refused"
        return
    if isinstance(exc, UpstreamError):
        rec.attempts = rec.attempts or exc.attempts
        rec.end = "failed"
        if exc.code == "kill_switch_engaged":
            rec.end, rec.decision = "refused", "refused"
        rec.refusal = rec.refusal or exc.code
        rec.decision = rec.decision or "refused"
        return
    rec.end = "refused"
    rec.decision = "refused"
    rec.refusal = exc.code


def _with_headers(exc: GatewayError, call: Call, request_id: str) -> GatewayError:
    exc.headers.update(_headers(call, request_id))
    return exc


def _usage(usage: Any) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    out = {}
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = usage.get(key)
        if isinstance(value, int):
            out[key] = value
    return out


def _span_attrs(call: Call) -> dict[str, Any]:
    """The SERVER span's ``casegate.*`` attributes: codes, names and counts only."""
    rec = call.rec
    out: dict[str, Any] = {
        attr.CASEGATE_DECISION: rec.decision or "refused",
        attr.CASEGATE_USE_CASE: rec.use_case if call.uc is not None else None,
        attr.CASEGATE_ROUTE: rec.route,
        attr.CASEGATE_ACTION_CLASS_REQUESTED: rec.action_class_requested,
        attr.CASEGATE_ACTION_CLASS_APPLIED: rec.action_class_applied,
        attr.CASEGATE_FIELDS_USED_COUNT: len(rec.fields_used),
        attr.CASEGATE_FIELDS_STRIPPED_COUNT: len(rec.fields_stripped),
        attr.CASEGATE_TOOL_CALLS_BLOCKED: len(rec.tool_calls_blocked),
        attr.CASEGATE_DRY_RUN: rec.dry_run,
    }
    if rec.policy:
        out[attr.CASEGATE_POLICY_VERSION] = rec.policy["version"]
        out[attr.CASEGATE_POLICY_SHA256] = rec.policy["sha256"]
        out[attr.CASEGATE_POLICY_MODE] = rec.policy["mode"]
    if rec.refusal:
        out[attr.CASEGATE_REFUSAL_CODE] = rec.refusal
    if rec.customer_ref:
        out[attr.CASEGATE_CUSTOMER_REF] = rec.customer_ref["hash"]  # keyed hash only
    if rec.kill_switches:
        out[attr.CASEGATE_KILL_SWITCHES] = list(rec.kill_switches)
    for entity, count in rec.redactions.items():
        out[attr.redaction_count(entity)] = count
    return out


def _span_events(call: Call) -> list[tuple[str, dict[str, Any]]]:
    """Guardrail outcomes as SERVER span events (codes and counts, never content)."""
    rec = call.rec
    events: list[tuple[str, dict[str, Any]]] = []
    for check in rec.checks:
        on = check.get("on")
        parts = [on] if isinstance(on, str) else [str(p) for p in on or ()]
        if check.get("check") == "redaction":
            events.append(
                (
                    attr.EVENT_REDACTION,
                    {
                        "casegate.check.on": parts,
                        "casegate.redactions.total": sum(rec.redactions.values()),
                    },
                )
            )
        elif check.get("check") == "eligibility":
            events.append(
                (
                    attr.EVENT_POLICY_DECISION,
                    {
                        "casegate.check.ok": bool(check.get("ok")),
                        "casegate.decision": rec.decision or "refused",
                    },
                )
            )
    for scope in rec.kill_switches:
        events.append((attr.EVENT_KILL_SWITCH, {"casegate.kill_switch.scope": scope}))
    if rec.tool_calls_blocked:
        events.append(
            (
                attr.EVENT_TOOL_CALL_BLOCKED,
                {"casegate.tool_calls.count": len(rec.tool_calls_blocked)},
            )
        )
    if rec.refusal:
        events.append((attr.EVENT_REFUSAL, {attr.CASEGATE_REFUSAL_CODE: rec.refusal}))
    return events


def _apply_span(
    span: ServerSpan, attrs: dict[str, Any], events: list[tuple[str, dict[str, Any]]]
) -> None:
    span.set_many(attrs)
    for name, event_attrs in events:
        span.event(name, event_attrs)


def _apply_call_span(span: ServerSpan, call: Call) -> None:
    _apply_span(span, _span_attrs(call), _span_events(call))


def _observe_end(rt: Runtime, call: Call) -> None:
    """Metrics of a finished call (counters; non-stream overhead; a stream's operation)."""
    rec = call.rec
    count_call(rt.metrics, rt.telemetry, rec, known_use_case=call.uc is not None)
    record_tripwire_counts(rt, rec, known_use_case=call.uc is not None)
    if call.attempt_obs is not None:
        error = None if rec.end == "completed" else (rec.refusal or "error")
        obs, call.attempt_obs = call.attempt_obs, None  # (it refers to the call)
        obs.stream_ended(rec.usage, error)


def _observe_overhead(rt: Runtime, call: Call, provider_s: float) -> None:
    seconds = time.monotonic() - call.rec.started_mono - provider_s
    use_case = call.rec.use_case if (call.uc is not None and call.rec.use_case) else "(unknown)"
    _later(
        call,
        partial(
            observe_overhead,
            rt.metrics,
            rt.telemetry,
            seconds,
            use_case=use_case,
            stream=call.rec.stream,
        ),
    )


def _observer(rt: Runtime, span: ServerSpan, call: Call) -> Any:
    def observe(dep: Deployment, attempt: int) -> Any:
        return _AttemptObserver(rt, span, dep, attempt, call)

    return observe


class _AttemptObserver:
    """One provider attempt: its CLIENT span and its GenAI metrics. A stream's attempt
    ends its span at the first chunk (``ttfc``); its operation metrics at the end."""

    def __init__(
        self, rt: Runtime, span: ServerSpan, dep: Deployment, attempt: int, call: Call
    ) -> None:
        self.rt, self.dep, self.call = rt, dep, call
        self.stream = bool(call.rec.stream)
        self.started = time.monotonic()
        self.started_ns = time.time_ns()
        self.attempt = attempt
        self.parent = span
        self.ttfc_s: float | None = None
        self.response_model: str | None = None
        self._span: AttemptSpan | None = None

    @property
    def span(self) -> AttemptSpan:
        """The attempt's CLIENT span, started when it is first needed (for an attempt
        that succeeded, after the answer) and dated from the attempt's start. Nothing
        propagates its context upstream, so nothing needs it sooner."""
        if self._span is None:
            dep = self.dep
            self._span = self.rt.telemetry.attempt_span(
                self.parent,
                request_model=dep.wire_model,
                provider=dep.provider,
                server_address=dep.server_address,
                server_port=dep.server_port,
                stream=self.stream,
                attempt=self.attempt,
                deployment=dep.model,
                start_ns=self.started_ns,
            )
        return self._span

    def _metrics(
        self,
        error: str | None,
        input_tokens: Any = None,
        output_tokens: Any = None,
        duration_s: float | None = None,
    ) -> None:
        observe_attempt(
            self.rt.metrics,
            self.rt.telemetry,
            duration_s=time.monotonic() - self.started if duration_s is None else duration_s,
            provider=self.dep.provider,
            request_model=self.dep.wire_model,
            response_model=self.response_model,
            error_type=error,
            input_tokens=input_tokens if isinstance(input_tokens, int) else None,
            output_tokens=output_tokens if isinstance(output_tokens, int) else None,
            ttfc_s=self.ttfc_s,
            server_address=self.dep.server_address,
            server_port=self.dep.server_port,
        )

    def succeeded(self, reply: dict[str, Any] | None) -> None:
        usage = reply.get("usage") if isinstance(reply, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        model = (reply or {}).get("model")
        self.response_model = model if isinstance(model, str) else None
        reasons: list[str] = [
            c["finish_reason"]
            for c in (reply or {}).get("choices") or []
            if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
        ]
        ended_ns, duration_s = time.time_ns(), time.monotonic() - self.started
        if self.stream:
            self.ttfc_s = duration_s
            self.call.attempt_obs = self  # its operation ends with the stream
        _later(
            self.call,
            partial(
                self._succeeded,
                usage.get("prompt_tokens"),
                usage.get("completion_tokens"),
                reasons,
                ended_ns,
                duration_s,
            ),
        )

    def _succeeded(
        self,
        input_tokens: Any,
        output_tokens: Any,
        reasons: list[str],
        ended_ns: int,
        duration_s: float,
    ) -> None:
        self.span.finish(
            response_model=self.response_model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reasons=reasons,
            ttfc_s=self.ttfc_s,
            end_ns=ended_ns,
        )
        if not self.stream:
            self._metrics(None, input_tokens, output_tokens, duration_s)

    def failed(self, error: AttemptError) -> None:
        self.span.fail(error.error_type)
        self._metrics(error.error_type)

    def stream_ended(self, usage: dict[str, int] | None, error: str | None) -> None:
        usage = usage or {}
        self._metrics(error, usage.get("prompt_tokens"), usage.get("completion_tokens"))


# -- streaming ----------------------------------------------------------------------


def _collect_text(chunk: dict[str, Any], into: list[str]) -> None:
    for choice in chunk.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if isinstance(content, str):
            into.append(content)


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def sse_error(exc: GatewayError) -> bytes:
    return b"event: error\ndata: " + orjson.dumps(exc.body()) + b"\n\ndata: [DONE]\n\n"


async def _stream_body(
    rt: Runtime,
    call: Call,
    upstream: Any,
    first: dict[str, Any],
    dep: Deployment,
    deadline: float,
) -> AsyncIterator[bytes]:
    rec = call.rec
    assert call.guard is not None and call.uc is not None

    def casegate_now() -> dict[str, Any]:
        _record_tools(call)  # the guard may have judged the calls a moment ago
        out = call.casegate()
        if call.draft is not None and _draft_applies(call):
            # named in the final chunks, stored before [DONE] (step 10); the lineage
            # record names it only once it is stored
            out["approval"] = call.draft.approval()
        return out

    draft_text: list[str] = []

    governor = StreamGovernor(
        call.guard,
        dep.served_model,
        casegate_now,
        restore_text=call.uc.restore_in_response,
    )
    assert call.policy is not None and call.decision is not None and call.chat is not None
    assert call.gov is not None
    cut = watch_stream(
        rt,
        rec,
        call.policy,
        call.decision,
        call.chat,
        call.gov,
        dep.model,
        call.guard,
        decided_under=call.switches_seen,
    )
    drain = current_drain()
    try:
        chunk: dict[str, Any] | None = first
        while chunk is not None:
            cut.check()  # a switch now covers this stream: end it (kill_switch_engaged)
            if chunk.get("usage"):
                rec.usage = _usage(chunk["usage"])
            try:
                out = governor.feed(chunk)
            finally:
                _record_tools(call)
            for item in out:
                if call.draft is not None:
                    _collect_text(item, draft_text)
                yield sse(item)
                if call.after is not None:  # the first chunk is sent
                    _now(call)
            remaining = deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, remaining)) as timer:
                    cut.arm(timer)  # a switch, or SIGTERM's grace ending, fires it at once
                    drain.watch(timer)
                    try:
                        chunk = await upstream.__anext__()
                    finally:
                        cut.disarm()
                        drain.unwatch(timer)
            except StopAsyncIteration:
                chunk = None
            except TimeoutError:
                cut.check()
                drain.check()  # the grace is over: the error frame says shutting_down
                raise AttemptError("timeout", "The stream passed the deadline") from None
        for item in governor.close():
            if call.draft is not None:
                _collect_text(item, draft_text)
            yield sse(item)
        await _store_draft(rt, call, "".join(draft_text))
        rec.end = "completed"
        yield b"data: [DONE]\n\n"
    except GatewayError as exc:
        _record_error(call, exc)
        yield sse_error(exc)
    except AttemptError as exc:
        from gateway.errors import UpstreamFailed, UpstreamTimeout

        err: GatewayError = (
            UpstreamTimeout("The provider's stream timed out")
            if exc.kind == "timeout"
            else UpstreamFailed("The provider's stream failed after it had begun")
        )
        rec.end = "failed"
        rec.refusal = err.code
        yield sse_error(err)
    except Exception:
        log.exception("unexpected error while streaming")
        rec.end = "failed"
        rec.refusal = "internal_error"
        yield sse_error(InternalError("The gateway failed while streaming"))
    finally:
        _now(call)  # if nothing was sent before the end
        cut.close()
        await upstream.aclose()
        await _settle_budget(rt, call)
        await _finish_lineage(rt, call)
