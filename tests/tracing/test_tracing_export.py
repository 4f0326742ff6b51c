"""Spans and metrics exported over real OTLP/HTTP to a receiver the test starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tracing.otlp_receiver import OtlpReceiver, ReceivedMetric, ReceivedSpan
from tracing import Telemetry, configure_telemetry
from tracing import attributes as attr

INCOMING_TRACE = "0af7651916cd43dd8448eb211c80319c"
INCOMING_PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-01"
ROUTE = "POST /v1/chat/completions"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def start(receiver: OtlpReceiver, **extra: str) -> Telemetry:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, **extra}
    return configure_telemetry(env=env)


@pytest.fixture
def telemetry(receiver: OtlpReceiver) -> Iterator[Telemetry]:
    running = start(receiver)
    yield running
    running.shutdown()


def by_name(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name]


def one_metric(receiver: OtlpReceiver, name: str) -> ReceivedMetric:
    found = receiver.wait_for_metric(name)
    return found[-1]  # cumulative: the latest export holds the totals


def test_request_with_retry_exports_server_and_attempt_spans(
    receiver: OtlpReceiver, telemetry: Telemetry
) -> None:
    headers = [(b"content-type", b"application/json"), (b"traceparent", TRACEPARENT.encode())]
    headers.append((b"tracestate", b"vendor=abc"))
    span = telemetry.server_span(ROUTE, headers, {attr.CASEGATE_CLIENT: "helpdesk"})
    span.set(attr.CASEGATE_USE_CASE, "refund_triage")
    span.set(attr.CASEGATE_ROUTE, None)  # skipped, not an error
    span.set_many(
        {
            attr.CASEGATE_DECISION: "allowed",
            attr.CASEGATE_KILL_SWITCHES: ["model:gpt-4o"],
            attr.redaction_count("EMAIL_ADDRESS"): 2,
        }
    )
    span.event(attr.EVENT_REDACTION, {"entities": 2})
    first = telemetry.attempt_span(
        span,
        request_model="gpt-4o-mini",
        provider="openai",
        server_address="api.openai.test",
        server_port=443,
        stream=False,
        attempt=1,
        deployment="openai-primary",
    )
    first.fail("upstream_timeout")
    second = telemetry.attempt_span(
        span,
        request_model="gpt-4o-mini",
        provider="openai",
        server_address="api.openai.test",
        server_port=443,
        stream=False,
        attempt=2,
        deployment="openai-primary",
    )
    second.finish(
        response_model="gpt-4o-mini-2024-07-18",
        input_tokens=812,
        output_tokens=64,
        finish_reasons=["stop"],
    )
    assert span.trace_id_hex == INCOMING_TRACE
    span.end(http_status=200)
    telemetry.force_flush()

    spans = receiver.wait_for_spans(3)
    (server,) = by_name(spans, ROUTE)
    attempts = sorted(
        by_name(spans, "chat gpt-4o-mini"), key=lambda s: s.attributes[attr.CASEGATE_ATTEMPT]
    )
    assert len(attempts) == 2

    assert server.kind == "SERVER"
    assert server.trace_id == INCOMING_TRACE
    assert server.parent_span_id == INCOMING_PARENT
    assert server.trace_state == "vendor=abc"
    assert server.status == "UNSET"
    assert server.attributes == {
        attr.CASEGATE_CLIENT: "helpdesk",
        attr.CASEGATE_USE_CASE: "refund_triage",
        attr.CASEGATE_DECISION: "allowed",
        attr.CASEGATE_KILL_SWITCHES: ["model:gpt-4o"],
        "casegate.redactions.EMAIL_ADDRESS": 2,
        attr.HTTP_RESPONSE_STATUS_CODE: 200,
    }
    assert server.events == [("casegate.redaction", {"entities": 2})]
    assert server.resource["service.name"] == "casegate"

    for attempt in attempts:
        assert attempt.kind == "CLIENT"
        assert attempt.trace_id == INCOMING_TRACE
        assert attempt.parent_span_id == server.span_id
        assert "gen_ai.system" not in attempt.attributes
    failed, served = attempts
    assert failed.status == "ERROR"
    assert failed.status_message == ""
    assert failed.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.stream": False,
        "server.address": "api.openai.test",
        "server.port": 443,
        "casegate.attempt": 1,
        "casegate.deployment": "openai-primary",
        "error.type": "upstream_timeout",
    }
    assert served.status == "UNSET"
    assert served.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.stream": False,
        "server.address": "api.openai.test",
        "server.port": 443,
        "casegate.attempt": 2,
        "casegate.deployment": "openai-primary",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 812,
        "gen_ai.usage.output_tokens": 64,
        "gen_ai.response.finish_reasons": ["stop"],
    }


def test_streamed_attempt_records_time_to_first_chunk(
    receiver: OtlpReceiver, telemetry: Telemetry
) -> None:
    span = telemetry.server_span(ROUTE, [])
    attempt = telemetry.attempt_span(
        span,
        request_model="claude-haiku",
        provider="anthropic",
        server_address=None,
        server_port=None,
        stream=True,
        attempt=1,
        deployment="anthropic-eu",
    )
    attempt.finish(response_model=None, input_tokens=None, output_tokens=None, ttfc_s=0.25)
    attempt.fail("too_late")  # after finish(): ignored
    attempt.finish(response_model="x", input_tokens=1, output_tokens=1)  # ignored too
    span.end()
    telemetry.force_flush()

    (client,) = by_name(receiver.wait_for_spans(2), "chat claude-haiku")
    assert client.status == "UNSET"
    assert client.attributes["gen_ai.request.stream"] is True
    assert client.attributes["gen_ai.response.time_to_first_chunk"] == 0.25
    assert "gen_ai.response.model" not in client.attributes
    assert "server.address" not in client.attributes


def test_span_without_traceparent_starts_a_new_trace(
    receiver: OtlpReceiver, telemetry: Telemetry
) -> None:
    plain = telemetry.server_span("GET /healthz", {"Accept": "*/*"})
    plain.end()
    # A str mapping with odd case still continues the caller's trace.
    mapped = telemetry.server_span(ROUTE, {"TraceParent": TRACEPARENT})
    mapped.end()
    # A malformed traceparent is ignored rather than trusted.
    bad = telemetry.server_span("GET /bad", [(b"traceparent", b"00-zz-yy-01")])
    bad.end()
    telemetry.force_flush()

    spans = receiver.wait_for_spans(3)
    (root,) = by_name(spans, "GET /healthz")
    assert root.parent_span_id == ""
    assert root.trace_id != INCOMING_TRACE
    assert plain.trace_id_hex == root.trace_id
    (continued,) = by_name(spans, ROUTE)
    assert continued.trace_id == INCOMING_TRACE
    (ignored,) = by_name(spans, "GET /bad")
    assert ignored.parent_span_id == ""


def test_fail_sets_error_status_and_type_once(receiver: OtlpReceiver, telemetry: Telemetry) -> None:
    refused = telemetry.server_span("refused", [])
    refused.fail("kill_switch")
    refused.fail("second_cause")  # the first failure wins
    refused.end(http_status=503)
    refused.set(attr.CASEGATE_DECISION, "late")  # after end(): ignored

    upstream = telemetry.server_span("upstream", [])
    upstream.end(http_status=502)

    client_error = telemetry.server_span("client_error", [])
    client_error.end(http_status=422)

    with pytest.raises(RuntimeError), telemetry.server_span("crashed", []):
        raise RuntimeError("jane.doe@example.com should never be exported")

    parent = telemetry.server_span("with_attempt", [])
    with (
        pytest.raises(TimeoutError),
        telemetry.attempt_span(
            parent,
            request_model="m",
            provider="openai",
            server_address=None,
            server_port=None,
            stream=False,
            attempt=1,
            deployment="d",
        ),
    ):
        raise TimeoutError
    parent.end()
    telemetry.force_flush()

    spans = {span.name: span for span in receiver.wait_for_spans(6)}
    assert spans["refused"].status == "ERROR"
    assert spans["refused"].attributes["error.type"] == "kill_switch"
    assert attr.CASEGATE_DECISION not in spans["refused"].attributes
    assert spans["upstream"].status == "ERROR"
    assert spans["upstream"].attributes["error.type"] == "502"
    assert spans["client_error"].status == "UNSET"
    assert "error.type" not in spans["client_error"].attributes
    assert spans["crashed"].status == "ERROR"
    assert spans["crashed"].attributes["error.type"] == "RuntimeError"
    assert spans["chat m"].attributes["error.type"] == "TimeoutError"
    assert all(span.status_message == "" for span in spans.values())
    assert not any(b"jane.doe@example.com" in body for body in receiver.raw_bodies)


def test_step_spans_only_when_enabled(receiver: OtlpReceiver) -> None:
    quiet = start(receiver)
    try:
        assert not quiet.steps_enabled
        parent = quiet.server_span("quiet", [])
        with quiet.step_span(parent, "redaction") as step:
            step.set("casegate.redactions.PHONE_NUMBER", 1)
        parent.end()
        quiet.force_flush()
    finally:
        quiet.shutdown()

    loud = start(receiver, CASEGATE_TRACE_STEPS="1")
    try:
        assert loud.steps_enabled
        parent = loud.server_span("loud", [])
        with loud.step_span(parent, "minimisation") as step:
            step.set(attr.CASEGATE_FIELDS_STRIPPED_COUNT, 3)
        failing = loud.step_span(parent, "policy")
        failing.fail("policy_error")
        failing.end()
        parent.end()
        loud.force_flush()
    finally:
        loud.shutdown()

    spans = receiver.wait_for_spans(4)
    assert [s.name for s in spans if s.kind == "INTERNAL"] == ["minimisation", "policy"]
    (loud_span,) = by_name(spans, "loud")
    (step_span,) = by_name(spans, "minimisation")
    assert step_span.parent_span_id == loud_span.span_id
    assert step_span.attributes == {
        "casegate.step": "minimisation",
        "casegate.fields.stripped_count": 3,
    }
    assert by_name(spans, "policy")[0].status == "ERROR"
    assert not by_name(spans, "redaction")


def test_metrics_use_semconv_names_units_and_buckets(
    receiver: OtlpReceiver, telemetry: Telemetry
) -> None:
    assert telemetry.metrics_enabled
    common = {"provider": "openai", "request_model": "gpt-4o-mini"}
    telemetry.record_operation(
        duration_s=0.42,
        response_model="gpt-4o-mini-2024-07-18",
        error_type=None,
        input_tokens=812,
        output_tokens=64,
        ttfc_s=None,
        server_address="api.openai.test",
        server_port=443,
        **common,
    )
    telemetry.record_operation(
        duration_s=1.5,
        response_model=None,
        error_type="upstream_timeout",
        input_tokens=None,
        output_tokens=None,
        ttfc_s=None,
        **common,
    )
    telemetry.record_operation(
        duration_s=2.0,
        response_model="gpt-4o-mini-2024-07-18",
        error_type=None,
        input_tokens=10,
        output_tokens=20,
        ttfc_s=0.3,
        **common,
    )
    telemetry.count(attr.METRIC_REQUESTS, attributes={"casegate.use_case": "refund_triage"})
    telemetry.count(attr.METRIC_REFUSALS, attributes={"casegate.refusal.code": "ineligible"})
    telemetry.count(attr.METRIC_TOOL_CALLS_BLOCKED, 2)
    telemetry.count(attr.METRIC_POLICY_EXCEPTIONS, 3)
    telemetry.count(attr.METRIC_KILL_SWITCH_REFUSALS)
    telemetry.count("casegate.custom_counter")
    telemetry.record_overhead(0.002, {"casegate.route": "support-default"})
    telemetry.force_flush()

    duration = one_metric(receiver, "gen_ai.client.operation.duration")
    assert (duration.kind, duration.unit) == ("histogram", "s")
    assert all(p.explicit_bounds == list(attr.DURATION_BUCKETS) for p in duration.points)
    assert duration.points[0].explicit_bounds == [
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
    ]  # fmt: skip
    errors = [p for p in duration.points if "error.type" in p.attributes]
    assert [p.attributes["error.type"] for p in errors] == ["upstream_timeout"]
    assert sum(p.count or 0 for p in duration.points) == 3
    served = [p for p in duration.points if p.attributes.get("server.address")]
    assert served[0].attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "server.address": "api.openai.test",
        "server.port": 443,
    }

    tokens = one_metric(receiver, "gen_ai.client.token.usage")
    assert (tokens.kind, tokens.unit) == ("histogram", "{token}")
    assert tokens.points[0].explicit_bounds == [
        1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864
    ]  # fmt: skip
    by_type: dict[str, float] = {}
    for point in tokens.points:
        assert "error.type" not in point.attributes
        kind = point.attributes["gen_ai.token.type"]
        by_type[kind] = by_type.get(kind, 0) + (point.sum or 0)
    assert by_type == {"input": 822, "output": 84}

    ttfc = one_metric(receiver, "gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.unit == "s"
    assert [p.count for p in ttfc.points] == [1]
    assert ttfc.points[0].explicit_bounds == list(attr.DURATION_BUCKETS)

    overhead = one_metric(receiver, "casegate.gateway.overhead")
    assert overhead.unit == "s"
    assert overhead.points[0].explicit_bounds == list(attr.OVERHEAD_BUCKETS)

    counters = {
        metric.name: metric
        for metric in receiver.metrics()
        if metric.kind == "sum" and metric.name.startswith("casegate.")
    }
    values = {name: sum(p.value or 0 for p in m.points) for name, m in counters.items()}
    assert values == {
        "casegate.requests": 1,
        "casegate.refusals": 1,
        "casegate.tool_calls.blocked": 2,
        "casegate.policy_exceptions": 3,
        "casegate.kill_switch.refusals": 1,
        "casegate.custom_counter": 1,
    }
    assert counters["casegate.refusals"].points[0].attributes == {
        "casegate.refusal.code": "ineligible"
    }


def test_exporter_settings_come_from_otel_variables(receiver: OtlpReceiver) -> None:
    telemetry = start(
        receiver,
        OTEL_SERVICE_NAME="casegate-eu",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=staging,service.name=ignored",
        OTEL_EXPORTER_OTLP_HEADERS="x-tenant=support%20ops",
        OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
        OTEL_METRICS_EXPORTER="none",
    )
    try:
        assert telemetry.traces_enabled and not telemetry.metrics_enabled
        telemetry.server_span("configured", []).end()
        telemetry.record_operation(
            duration_s=1.0,
            provider="openai",
            request_model="m",
            response_model=None,
            error_type=None,
            input_tokens=1,
            output_tokens=1,
            ttfc_s=None,
        )
        telemetry.force_flush()
    finally:
        telemetry.shutdown()
    telemetry.shutdown()  # idempotent

    (span,) = receiver.wait_for_spans(1)
    assert span.resource["service.name"] == "casegate-eu"
    assert span.resource["deployment.environment.name"] == "staging"
    assert span.resource["telemetry.sdk.language"] == "python"
    assert receiver.paths == ["/v1/traces"]
    assert receiver.headers[0]["x-tenant"] == "support ops"
    assert receiver.headers[0]["content-encoding"] == "gzip"
    assert receiver.metrics() == []


def test_per_signal_endpoint_enables_only_that_signal(receiver: OtlpReceiver) -> None:
    telemetry = configure_telemetry(
        env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/v1/traces"},
        resource_attributes={"service.instance.id": "gw-1"},
    )
    try:
        assert telemetry.traces_enabled and not telemetry.metrics_enabled
        telemetry.server_span("per-signal", []).end()
        telemetry.force_flush()
    finally:
        telemetry.shutdown()
    (span,) = receiver.wait_for_spans(1)
    assert span.resource["service.instance.id"] == "gw-1"
    assert span.scope == "casegate"
