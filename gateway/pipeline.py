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
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.auth import Client
from gateway.consent import ConsentUnavailable
from gateway.drafts import DraftContent, DraftService, PendingDraft, customer_turns
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
from gateway.models import ChatRequest, Governance, parse_chat_request, read_governance
from gateway.providers.base import AttemptError, Deployment
from gateway.runtime import ActivePolicy, Runtime
from gateway.stages.payload import scrub_payload, validate_messages
from gateway.stages.respond import StreamGovernor, ToolGuard, govern_reply
from gateway.stages.upstream import build_upstream
from gateway.stores import StateUnavailable
from policies import CompiledUseCase, Decision, FactsError, decide, facts_from_customer
from redaction import RedactionError, Vault, minimise, strip_invisible
from tracing import ServerSpan
from tracing import attributes as attr

__all__ = ["ChatResult", "run_chat"]

log = logging.getLogger("casegate.pipeline")


@dataclass
class ChatResult:
    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None


@dataclass
class Call:
    """What the pipeline knows about one call, handed from step to step."""

    rec: LineageRecord
    chat: ChatRequest | None = None
    gov: Governance | None = None
    policy: ActivePolicy | None = None
    uc: CompiledUseCase | None = None
    decision: Decision | None = None
    vault: Vault | None = None
    redactions: dict[str, int] = field(default_factory=dict)
    tools_upstream: list[str] = field(default_factory=list)
    guard: ToolGuard | None = None
    draft: PendingDraft | None = None  # step 10: the draft this call will store
    held: Reservation | None = None  # budget reserved for this call

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


def _headers(call: Call, request_id: str) -> dict[str, str]:
    return {
        "X-Casegate-Lineage-Id": call.rec.lineage_id,
        "X-Casegate-Decision": call.rec.decision or "refused",
        "X-Request-Id": request_id,
    }


async def _finish_lineage(rt: Runtime, call: Call) -> None:
    """Write the end event; shielded so a cancelled request still records it."""
    task = asyncio.ensure_future(rt.lineage.finish(call.rec))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task  # let the write land before the cancellation goes on
        raise


async def run_chat(
    rt: Runtime,
    client: Client,
    raw: bytes,
    headers: Mapping[str, str],
    *,
    request_id: str,
    span: ServerSpan,
) -> ChatResult:
    policy = rt.policy
    rec = LineageRecord(
        lineage_id=new_lineage_id(),
        client=client.name,
        request_id=request_id,
        policy=policy.lineage(),
        trace_id=span.trace_id_hex,
    )
    call = Call(rec=rec, policy=policy)
    span.set(attr.CASEGATE_LINEAGE_ID, rec.lineage_id)
    streaming_handed_off = False
    try:
        _read_facts(rt, call, client, raw, headers)
        await rt.lineage.start(rec)  # durable before anything goes upstream
        await _decide(rt, call)
        upstream, tools = await _prepare(rt, call)
        assert call.chat is not None and call.gov is not None and call.uc is not None
        _plan_draft(call)
        if call.gov.dry_run:
            rec.end = "completed"
            body = call.casegate()
            body.update(dry_run=True, upstream={"tools": tools})
            return ChatResult(200, _headers(call, request_id), body={"casegate": body})
        await _reserve_budget(rt, call, upstream)
        deadline = time.monotonic() + rt.settings.limits.deadline_s
        observer = _observer(rt, span)
        if call.chat.stream:
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
            stream = _stream_body(
                rt, call, served.stream, served.first, served.deployment, deadline
            )
            streaming_handed_off = True
            return ChatResult(200, _headers(call, request_id), stream=stream)
        served_reply = await rt.router.complete(
            call.uc.route,
            upstream,
            deadline=deadline,
            removed_models=call.decision.removed_models if call.decision else frozenset(),
            observer=observer,
        )
        rec.attempts = served_reply.attempts
        rec.provider_ms = int(served_reply.provider_s * 1000)
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
        return ChatResult(200, _headers(call, request_id), body=reply)
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
        if not streaming_handed_off:
            await _settle_budget(rt, call)
            span.set_many(_span_attrs(call))
            await _finish_lineage(rt, call)


# -- steps ------------------------------------------------------------------------


def _read_facts(
    rt: Runtime, call: Call, client: Client, raw: bytes, headers: Mapping[str, str]
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
    decision = decide(
        call.policy.loaded.policy,
        use_case=call.gov.use_case,
        requested_class=call.gov.action_class,
        route=call.chat.model,
        facts=facts,
        switches=rt.switches(),
    )
    if rt.consent is not None and (
        decision.refusal is None or decision.refusal.code == "ineligible"
    ):
        # the consent of record replaces the request's; switches have had their say
        customer["consent"] = await _consent_of_record(rt, call)
        rec.consent_basis = "consent_service"
        facts = facts_from_customer(customer, queue=call.gov.queue, segment=call.gov.segment)
        decision = decide(
            call.policy.loaded.policy,
            use_case=call.gov.use_case,
            requested_class=call.gov.action_class,
            route=call.chat.model,
            facts=facts,
            switches=rt.switches(),
        )
    call.decision = decision
    rec.kill_switches = list(decision.switches)
    rec.action_class_requested = decision.action_class_requested
    rec.action_class_applied = decision.action_class_applied
    rec.checks.append({"check": "eligibility", "on": "customer", "ok": decision.refusal is None})
    if decision.refusal is not None:
        r = decision.refusal
        if r.code == "ineligible":
            rec.refusal = r.code
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
    try:
        plain = rt.keys.decrypt(blob, aad=b"vault:" + case_key.encode())
    except Exception:
        # a map we cannot read must not silently start a new numbering: fail closed
        raise StateUnavailable("The case's pseudonym map cannot be decrypted") from None
    return Vault.from_json(plain), version


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
    if guard.allowed or guard.blocked:
        rec.checks = [c for c in rec.checks if c.get("check") != "tool_guard"]
        rec.checks.append({"check": "tool_guard", "on": "tool_calls", "ok": not guard.blocked})
    if guard.downgraded:
        rec.action_class_applied = "recommendation"
        rec.decision = "degraded"


def _record_error(call: Call, exc: GatewayError) -> None:
    rec = call.rec
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
    rec = call.rec
    out: dict[str, Any] = {
        attr.CASEGATE_DECISION: rec.decision or "refused",
        attr.CASEGATE_USE_CASE: rec.use_case,
        attr.CASEGATE_ROUTE: rec.route,
        attr.CASEGATE_ACTION_CLASS_REQUESTED: rec.action_class_requested,
        attr.CASEGATE_ACTION_CLASS_APPLIED: rec.action_class_applied,
    }
    if rec.policy:
        out[attr.CASEGATE_POLICY_VERSION] = rec.policy["version"]
    if rec.refusal:
        out[attr.CASEGATE_REFUSAL_CODE] = rec.refusal
    return out


def _observer(rt: Runtime, span: ServerSpan) -> Any:
    telemetry = rt.telemetry

    def observe(dep: Deployment, attempt: int) -> Any:
        return _AttemptObserver(telemetry, span, dep, attempt)

    return observe


class _AttemptObserver:
    def __init__(self, telemetry: Any, span: ServerSpan, dep: Deployment, attempt: int) -> None:
        self.span = telemetry.attempt_span(
            span,
            request_model=dep.wire_model,
            provider=dep.provider,
            server_address=dep.server_address,
            server_port=dep.server_port,
            stream=False,
            attempt=attempt,
            deployment=dep.model,
        )

    def succeeded(self, reply: dict[str, Any] | None) -> None:
        usage = reply.get("usage") if isinstance(reply, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        reasons = [
            c.get("finish_reason")
            for c in (reply or {}).get("choices") or []
            if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
        ]
        self.span.finish(
            response_model=(reply or {}).get("model"),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            finish_reasons=reasons,
        )

    def failed(self, error: AttemptError) -> None:
        self.span.fail(error.error_type)


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
        # the draft is named in the final chunks and stored before [DONE] (step 10)
        rec.approval = call.draft.approval() if _draft_applies(call) and call.draft else None
        return call.casegate()

    draft_text: list[str] = []

    governor = StreamGovernor(
        call.guard,
        dep.served_model,
        casegate_now,
        restore_text=call.uc.restore_in_response,
    )
    try:
        chunk: dict[str, Any] | None = first
        while chunk is not None:
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
            remaining = deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, remaining)):
                    chunk = await upstream.__anext__()
            except StopAsyncIteration:
                chunk = None
            except TimeoutError:
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
        await upstream.aclose()
        await _settle_budget(rt, call)
        await _finish_lineage(rt, call)
