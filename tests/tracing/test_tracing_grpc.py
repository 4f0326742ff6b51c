"""Spans and metrics exported over real OTLP/gRPC to an in-test gRPC server."""

from __future__ import annotations

from tests.tracing.otlp_receiver import OtlpReceiver
from tracing import configure_telemetry


def test_grpc_protocol_exports_spans_and_metrics() -> None:
    with OtlpReceiver(protocol="grpc") as receiver:
        telemetry = configure_telemetry(
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=support",
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            }
        )
        try:
            span = telemetry.server_span(
                "POST /v1/chat/completions",
                [(b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
            )
            telemetry.attempt_span(
                span,
                request_model="gpt-4o-mini",
                provider="openai",
                server_address="api.openai.test",
                server_port=443,
                stream=False,
                attempt=1,
                deployment="primary",
            ).fail("upstream_error")
            span.end(http_status=502)
            telemetry.record_operation(
                duration_s=0.5,
                provider="openai",
                request_model="gpt-4o-mini",
                response_model=None,
                error_type="upstream_error",
                input_tokens=None,
                output_tokens=None,
                ttfc_s=None,
            )
            telemetry.force_flush()
        finally:
            telemetry.shutdown()

        spans = {s.name: s for s in receiver.wait_for_spans(2)}
        metric = receiver.wait_for_metric("gen_ai.client.operation.duration")[-1]

    server, client = spans["POST /v1/chat/completions"], spans["chat gpt-4o-mini"]
    assert server.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (server.kind, client.kind) == ("SERVER", "CLIENT")
    assert client.parent_span_id == server.span_id
    assert client.attributes["error.type"] == "upstream_error"
    assert server.attributes["error.type"] == "502"
    assert metric.points[0].attributes["error.type"] == "upstream_error"
    assert all(path.endswith("/Export") for path in receiver.paths)
    assert receiver.headers[0]["x-tenant"] == "support"
