"""`casegate serve` exports over real OTLP/HTTP to a receiver this test starts.

One SERVER span per call continues the incoming W3C `traceparent`; each provider
attempt is its own CLIENT span `chat {model}` under it with the GenAI attributes (a
retry shows two); guardrail outcomes ride on the SERVER span as `casegate.*`
attributes and events; the metrics arrive too; and no seeded personal data, message
text or raw customer id appears in any exported byte. Everything is flushed when the
gateway shuts down.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import Credentials, gateway_config
from tests.gateway.helpers import casegate, headers
from tests.kit.stub import Reply, UpstreamStub
from tests.tracing.otlp_receiver import OtlpReceiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
EMAIL = "petra.s@example.com"
CARD = "4111 1111 1111 1111"
CUSTOMER = "cust-otlp-31337"
MESSAGE = "Hello, my order never arrived"


def chat(gw: Any, creds: Credentials, *, extra: dict[str, str] | None = None, **kw: Any) -> Any:
    body = {
        "model": "support-default",
        "messages": [{"role": "user", "content": f"{MESSAGE}; card {CARD}, mail {EMAIL}"}],
        **casegate(
            customer=kw.pop("customer", None),
            context={"product_id": "P-100", "account_status": "active", "email": EMAIL},
        ),
        **kw,
    }
    return httpx.post(
        gw.url + "/v1/chat/completions",
        headers={
            "Authorization": f"Bearer {creds.helpdesk}",
            **headers(customer_id=CUSTOMER, case_id="OT-1"),
            **(extra or {}),
        },
        json=body,
        timeout=20,
    )


def test_spans_and_metrics_over_otlp(
    start_gateway: Any, upstream: UpstreamStub, creds: Credentials
) -> None:
    with OtlpReceiver() as receiver:
        gw = start_gateway(
            gateway_config(upstream.url),
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "casegate"},
        )
        upstream.script(Reply.error(500))  # the first attempt fails, the retry answers
        asked_ns = time.time_ns()
        done = chat(gw, creds, extra={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        answered_ns = time.time_ns()
        assert done.status_code == 200, done.text
        refused = chat(gw, creds, customer={"authenticated": False})
        assert refused.status_code == 403
        streamed = chat(gw, creds, stream=True)
        assert "data: [DONE]" in streamed.text
        gw.stop()  # the SDK flushes spans and metrics at shutdown
        receiver.wait_for_spans(6)
        receiver.wait_for_metric("gen_ai.client.operation.duration")
        time.sleep(0.2)
        spans = receiver.spans()
        raw = b"".join(receiver.raw_bodies)

    servers = [s for s in spans if s.kind == "SERVER"]
    clients = [s for s in spans if s.kind == "CLIENT"]
    assert len(servers) == 3 and len(clients) == 3
    assert {s.name for s in servers} == {"POST /v1/chat/completions"}
    assert {s.name for s in clients} == {"chat gpt-primary"}
    by_lineage = {s.attributes["casegate.lineage_id"]: s for s in servers}
    first = by_lineage[done.headers["x-casegate-lineage-id"]]
    # the incoming traceparent is continued
    assert first.trace_id == TRACE_ID and first.parent_span_id == PARENT_ID
    attempts = sorted(
        (c for c in clients if c.parent_span_id == first.span_id),
        key=lambda c: c.attributes["casegate.attempt"],
    )
    assert len(attempts) == 2 and all(c.trace_id == TRACE_ID for c in attempts)
    failed, ok = attempts
    assert failed.status == "ERROR" and failed.attributes["error.type"]
    for c in attempts:
        a = c.attributes
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.model"] == "gpt-primary"
        assert a["server.address"] == "127.0.0.1"
        assert a["server.port"] == int(upstream.url.rsplit(":", 1)[1].split("/")[0])
        assert "gen_ai.system" not in a  # deprecated
    # Spans end once the answer is sent (gateway/pipeline.py `After`), but each keeps the
    # times it measured: the attempts lie inside the call, and the call inside the
    # client's wait for it, give or take the server span ending after the last byte.
    assert asked_ns <= first.start_ns <= failed.start_ns <= failed.end_ns <= ok.start_ns
    assert ok.start_ns <= ok.end_ns <= answered_ns and ok.end_ns <= first.end_ns
    assert ok.attributes["gen_ai.response.model"] == "gpt-primary"
    assert ok.attributes["gen_ai.usage.input_tokens"] == 10
    assert ok.attributes["gen_ai.usage.output_tokens"] == 5
    assert ok.attributes["gen_ai.response.finish_reasons"] == ["stop"]

    a = first.attributes
    assert a["casegate.decision"] == "allowed"
    assert a["casegate.use_case"] == "triage"
    assert a["casegate.policy.version"] and len(a["casegate.policy.sha256"]) == 64
    assert a["casegate.redactions.EMAIL"] >= 1 and a["casegate.redactions.CREDIT_CARD"] == 1
    assert a["casegate.fields.used_count"] == 2 and a["casegate.fields.stripped_count"] == 1
    assert len(a["casegate.customer_ref"]) == 64  # the keyed hash
    assert a["http.response.status_code"] == 200
    names = [name for name, _ in first.events]
    assert "casegate.redaction" in names and "casegate.policy.decision" in names
    (redaction,) = [attrs for name, attrs in first.events if name == "casegate.redaction"]
    assert set(redaction["casegate.check.on"]) >= {"messages", "context"}

    no = by_lineage[refused.headers["x-casegate-lineage-id"]]
    assert no.attributes["casegate.refusal.code"] == "ineligible"
    assert ("casegate.refusal", {"casegate.refusal.code": "ineligible"}) in no.events
    assert not [c for c in clients if c.parent_span_id == no.span_id]

    stream_server = by_lineage[streamed.headers["x-casegate-lineage-id"]]
    (stream_attempt,) = [c for c in clients if c.parent_span_id == stream_server.span_id]
    assert stream_attempt.attributes["gen_ai.request.stream"] is True
    assert stream_attempt.attributes["gen_ai.response.time_to_first_chunk"] >= 0
    assert stream_server.attributes["casegate.decision"] == "allowed"

    # nothing personal, no message text, no raw id in any exported byte
    for needle in (EMAIL, CARD, CARD.replace(" ", ""), CUSTOMER, "never arrived", "OT-1"):
        assert needle.encode() not in raw, needle
