"""Without OTEL_* export settings telemetry is a set of shared no-op objects."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tracing import AttemptSpan, ServerSpan, StepSpan, Telemetry, configure_telemetry
from tracing import attributes as attr

REPO = Path(__file__).resolve().parents[2]

OFF_ENVIRONMENTS = [
    pytest.param({}, id="nothing-set"),
    pytest.param({"OTEL_SERVICE_NAME": "casegate"}, id="only-service-name"),
    pytest.param(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        },
        id="both-exporters-none",
    ),
    pytest.param(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
        id="sdk-disabled",
    ),
]


@pytest.mark.parametrize("env", OFF_ENVIRONMENTS)
def test_disabled_telemetry_is_noop_and_starts_no_threads(env: dict[str, str]) -> None:
    before = set(threading.enumerate())
    telemetry = configure_telemetry(env=env)
    assert type(telemetry) is Telemetry
    assert not telemetry.enabled
    assert not (telemetry.traces_enabled or telemetry.metrics_enabled or telemetry.steps_enabled)

    span = telemetry.server_span("POST /v1/chat/completions", [(b"traceparent", b"00-x")])
    again = telemetry.server_span("GET /healthz", {"traceparent": "whatever"})
    assert span is again  # shared, nothing allocated per request
    assert type(span) is ServerSpan
    assert span.trace_id_hex is None
    span.set(attr.CASEGATE_DECISION, "allowed")
    span.set_many({attr.CASEGATE_USE_CASE: "refund_triage"})
    span.event(attr.EVENT_REFUSAL, {"code": "ineligible"})
    span.fail("x")
    attempt = telemetry.attempt_span(
        span,
        request_model="m",
        provider="openai",
        server_address=None,
        server_port=None,
        stream=False,
        attempt=1,
        deployment="d",
    )
    assert type(attempt) is AttemptSpan
    attempt.finish(response_model=None, input_tokens=None, output_tokens=None)
    attempt.fail("y")
    with telemetry.step_span(span, "redaction") as step:
        assert type(step) is StepSpan
        step.set("k", 1)
    with (
        pytest.raises(ValueError),
        telemetry.attempt_span(
            span,
            request_model="m",
            provider="openai",
            server_address=None,
            server_port=None,
            stream=True,
            attempt=2,
            deployment="d",
        ),
    ):
        raise ValueError
    span.end(http_status=500)
    telemetry.record_operation(
        duration_s=1.0,
        provider="openai",
        request_model="m",
        response_model=None,
        error_type=None,
        input_tokens=1,
        output_tokens=1,
        ttfc_s=0.1,
    )
    telemetry.count(attr.METRIC_REFUSALS)
    telemetry.record_overhead(0.001)
    telemetry.force_flush()
    telemetry.shutdown()
    assert set(threading.enumerate()) == before


def test_import_and_disabled_configuration_never_load_the_sdk() -> None:
    probe = (
        "import sys, tracing\n"
        "t = tracing.configure_telemetry(env={})\n"
        "t.server_span('x', []).end()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'grpc')))\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.stdout.strip() == "[]"


def test_enabled_configuration_loads_only_the_named_exporter() -> None:
    probe = (
        "import sys, tracing\n"
        "t = tracing.configure_telemetry(env={'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:9'})\n"
        "t.shutdown()\n"
        "print(any(m.startswith('opentelemetry.exporter.otlp.proto.grpc') for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.stdout.strip() == "False"
