"""The OTLP/HTTP span exporter with our encoder sends what the stock exporter sends.

``tracing._span_exporter.SpanExporterHttp`` restates the stock ``OTLPSpanExporter.export``
around our encoder and reads the stock exporter's private members; our encoder mirrors the
SDK encoder. The first tests pin both assumptions to the locked package versions, so an
upgrade fails here, by name, instead of quietly changing what a collector receives.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_attributes,
    _encode_instrumentation_scope,
    _encode_key_value,
    _encode_resource,
    _encode_value,
    trace_encoder,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext

from tests.tracing.otlp_receiver import OtlpReceiver
from tracing import _otel
from tracing import attributes as attr
from tracing._span_exporter import SpanExporterHttp
from tracing.config import OtlpTarget

LOCK = Path(__file__).resolve().parents[2] / "requirements" / "lock.txt"
#: sha256 of the stock source our code restates or mirrors, at the locked versions.
PINNED_SOURCES = {
    "OTLPSpanExporter.export": (
        OTLPSpanExporter.export,
        "0968825cd72fb0bde91a72f0607e4e71d622816a087107f6a7053d679aa02f8e",
    ),
    "trace_encoder": (
        trace_encoder,
        "286b1140e27f9c226795ad536db423a6781488c8e4ea4381cf91ee282caae498",
    ),
    "_encode_value": (
        _encode_value,
        "a662fc07502a0426a5496d1313ed504e4f3a0a113d656d7f98b612dec888e1ed",
    ),
    "_encode_key_value": (
        _encode_key_value,
        "deebddd2f1e76f863efc4fe767b8cb1c75a76f0e1dd187bdcc7e03f124244cde",
    ),
    "_encode_attributes": (
        _encode_attributes,
        "d735d562e429c1c861a13824b5ecba09dfee108b8ba2214b01bac22fcb91975b",
    ),
    "_encode_instrumentation_scope": (
        _encode_instrumentation_scope,
        "ed0f074382e884fb2a812a739c12efe39413aba4e3f4883684c9550ec67da7a0",
    ),
    "_encode_resource": (
        _encode_resource,
        "e8ad3758e6c4a744eab3a44b556f958f593602959f116a8a1fc633d58b8ebffe",
    ),
}
PINNED_VERSIONS = {
    "opentelemetry-exporter-otlp-proto-http": "1.45.2",
    "opentelemetry-exporter-otlp-proto-common": "1.45.2",
    "opentelemetry-proto": "1.45.2",
    "opentelemetry-sdk": "1.45.2",
}


@pytest.mark.parametrize("package", sorted(PINNED_VERSIONS))
def test_installed_and_locked_versions_are_the_ones_our_exporter_was_written_for(
    package: str,
) -> None:
    pinned = PINNED_VERSIONS[package]
    assert importlib.metadata.version(package) == pinned, (
        f"{package} changed: re-check tracing/_span_exporter.py and tracing/_span_encoder.py "
        "against the new stock code, then update the pins in this test"
    )
    assert f"{package}=={pinned} " in LOCK.read_text()


@pytest.mark.parametrize("name", sorted(PINNED_SOURCES))
def test_stock_code_we_restate_or_mirror_is_unchanged(name: str) -> None:
    source_of, pinned = PINNED_SOURCES[name]
    assert isinstance(source_of, ModuleType) or callable(source_of)
    digest = hashlib.sha256(inspect.getsource(source_of).encode()).hexdigest()
    assert digest == pinned, (
        f"the stock {name} changed: SpanExporterHttp.export restates "
        "OTLPSpanExporter.export, and SpanEncoder mirrors the SDK trace encoder; "
        "bring them in line, then update the pin"
    )


def close(*exporters: SpanExporter) -> None:
    """``shutdown``, through the typed base class (the stock exporter's is unannotated)."""
    for exporter in exporters:
        exporter.shutdown()


def test_private_members_the_restated_export_reads_exist() -> None:
    exporter = SpanExporterHttp(endpoint="http://127.0.0.1:9/v1/traces")
    try:
        members = vars(exporter)
        for name in ("_shutdown", "_metrics", "_max_request_size", "_client"):
            assert name in members, f"OTLPSpanExporter no longer sets {name}"
        assert hasattr(exporter._metrics, "export_operation")
        assert hasattr(exporter._client, "export")
    finally:
        close(exporter)


def test_http_uses_our_exporter_and_grpc_the_stock_one() -> None:
    http = _otel._span_exporter(OtlpTarget("http/protobuf", "http://127.0.0.1:9/v1/traces"))
    grpc = _otel._span_exporter(OtlpTarget("grpc", "http://127.0.0.1:9"))
    try:
        assert type(http) is SpanExporterHttp
        assert not isinstance(grpc, SpanExporterHttp)
    finally:
        close(http, grpc)


# -- the same request bodies over the wire --------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def made_spans() -> tuple[ReadableSpan, ...]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource({"service.name": "casegate", "k": 1}), shutdown_on_exit=False
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry = _otel.OtelTelemetry(provider, None, steps=False)
    headers = [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    span = telemetry.server_span(
        "POST /v1/chat/completions", headers, {"http.request.method": "POST"}
    )
    span.set(attr.CASEGATE_USE_CASE, "refund_triage")
    span.event(attr.EVENT_REFUSAL, {attr.CASEGATE_REFUSAL_CODE: "ineligible"})
    attempt = telemetry.attempt_span(
        span,
        request_model="gpt-4o-mini",
        provider="openai",
        server_address="api.openai.test",
        server_port=443,
        stream=True,
        attempt=1,
        deployment="primary",
    )
    attempt.finish(response_model="m", input_tokens=3, output_tokens=4, finish_reasons=["stop"])
    span.end(503)
    telemetry.shutdown()
    return memory.get_finished_spans()


@pytest.mark.parametrize("compression", [None, Compression.Gzip, Compression.Deflate])
def test_request_bodies_are_byte_identical_to_the_stock_exporter(
    receiver: OtlpReceiver, compression: Compression | None
) -> None:
    batch = made_spans()
    endpoint = f"{receiver.url}/v1/traces"
    stock: SpanExporter = OTLPSpanExporter(endpoint=endpoint, compression=compression)
    ours: SpanExporter = SpanExporterHttp(endpoint=endpoint, compression=compression)
    try:
        assert stock.export(batch) is SpanExportResult.SUCCESS
        assert ours.export(batch) is SpanExportResult.SUCCESS
        assert ours.export(batch) is SpanExportResult.SUCCESS  # from warm caches
    finally:
        close(stock, ours)
    assert len(receiver.raw_bodies) == 3
    assert receiver.raw_bodies[0] == receiver.raw_bodies[1] == receiver.raw_bodies[2]
    assert receiver.headers[0]["content-type"] == receiver.headers[1]["content-type"]


def test_a_batch_that_cannot_be_encoded_fails_the_export(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    context = SpanContext(1, 2, is_remote=False)
    exporter = SpanExporterHttp(endpoint=f"{receiver.url}/v1/traces")
    try:
        with caplog.at_level(logging.ERROR):
            result = exporter.export([ReadableSpan("bad \ud800", context, start_time=1)])
    finally:
        close(exporter)
    assert result is SpanExportResult.FAILURE
    assert "Failed to encode span batch" in caplog.text
    assert receiver.raw_bodies == []


def test_a_batch_over_the_size_limit_is_dropped(receiver: OtlpReceiver) -> None:
    exporter = SpanExporterHttp(endpoint=f"{receiver.url}/v1/traces", max_request_size=10)
    try:
        assert exporter.export(made_spans()) is SpanExportResult.FAILURE
    finally:
        close(exporter)
    assert receiver.raw_bodies == []


def test_export_after_shutdown_fails(receiver: OtlpReceiver) -> None:
    exporter = SpanExporterHttp(endpoint=f"{receiver.url}/v1/traces")
    close(exporter)
    assert exporter.export(made_spans()) is SpanExportResult.FAILURE
    assert receiver.raw_bodies == []


def test_a_rejected_export_fails(receiver: OtlpReceiver) -> None:
    exporter = SpanExporterHttp(endpoint=f"{receiver.url}/not-traces", timeout=2)
    try:
        assert exporter.export(made_spans()) is SpanExportResult.FAILURE
    finally:
        close(exporter)
