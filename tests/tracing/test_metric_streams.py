"""The fast metric path (``tracing._metric_streams``) exports exactly what the SDK's own
synchronous instruments export.

Each check runs the same operations twice, through ``OtelTelemetry(fast_metrics=False)``
(``Histogram.record`` / ``Counter.add``, as before) and through the default fast path, on
providers with the same readers, and compares what the readers collect (``to_json`` and
the OTLP encoding), what an OTLP receiver gets (bytes), and what the SDK logs. The SDK's
clock is frozen to a per-step value so that timestamps compare too, and ``random`` is
seeded so that exemplar reservoirs sample alike.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    ExponentialBucketHistogramAggregation,
    LastValueAggregation,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tests.tracing.otlp_receiver import OtlpReceiver
from tracing import attributes as attr
from tracing import configure_telemetry
from tracing._metric_streams import MetricStreams
from tracing._otel import OtelTelemetry

_CLOCK = [1]
_CLOCKED = (
    "opentelemetry.sdk.metrics._internal._view_instrument_match.time_ns",
    "opentelemetry.sdk.metrics._internal.metric_reader_storage.time_ns",
    "opentelemetry.sdk.metrics._internal.measurement_consumer.time_ns",
    "opentelemetry.sdk.metrics._internal.instrument.time_ns",
    "tracing._metric_streams.time_ns",
)
_DELTA: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
}


class _Str(str):
    """A str subclass: the SDK keys it apart from the plain str of the same text."""

    __slots__ = ()


def _readers() -> list[MetricReader]:
    """Cumulative, delta, small cardinality limits (overflow) both ways, and readers whose
    aggregation the fast path does not mirror (it must hand those to the SDK)."""
    return [
        InMemoryMetricReader(),
        InMemoryMetricReader(preferred_temporality=_DELTA),
        InMemoryMetricReader(cardinality_limits={Histogram: 3, Counter: 2}),
        InMemoryMetricReader(
            preferred_temporality=_DELTA, cardinality_limits={Histogram: 2, Counter: 1}
        ),
        InMemoryMetricReader(
            preferred_aggregation={
                Histogram: ExponentialBucketHistogramAggregation(),
                Counter: LastValueAggregation(),
            }
        ),
    ]


@contextmanager
def _frozen_clock() -> Iterator[None]:
    with ExitStack() as stack:
        for target in _CLOCKED:
            stack.enter_context(mock.patch(target, lambda: _CLOCK[0]))
        yield


@contextmanager
def _sdk_logs() -> Iterator[list[tuple[str, int, str]]]:
    records: list[tuple[str, int, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append((record.name, record.levelno, record.getMessage()))

    logger = logging.getLogger("opentelemetry")
    handler = Keep(logging.DEBUG)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


_SAMPLED = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1))
_UNSAMPLED = SpanContext(
    0x0AF7651916CD43DD8448EB211C80319D, 0xB7AD6B7169203332, False, TraceFlags(0)
)

_ATTRS: list[dict[Any, Any] | None] = [
    None,
    {},
    {"casegate.use_case": "refund_triage"},
    {"casegate.use_case": "billing", "casegate.decision": "allowed"},
    {"casegate.decision": "allowed", "casegate.use_case": "billing"},  # same set, other order
    {"casegate.use_case": _Str("refund_triage")},
    {"casegate.use_case": True},
    {"casegate.use_case": 1},
    {"casegate.use_case": 1.0},
    {"": "dropped", "casegate.use_case": "refund_triage"},
    {"casegate.use_case": ["a", "b"]},
    {"casegate.use_case": None},
]
_FLOATS = st.one_of(
    st.floats(min_value=0, max_value=100),
    st.sampled_from([0.0, 0.01, 0.0005, 81.92, 1e9, -0.0, -1.0, float("nan"), float("inf")]),
    st.integers(min_value=-2, max_value=70_000_000),
)
_TOKENS = st.one_of(st.none(), st.integers(min_value=-3, max_value=70_000_000), _FLOATS)

_OPERATION = st.tuples(
    st.just("operation"),
    st.fixed_dictionaries(
        {
            "duration_s": _FLOATS,
            "provider": st.sampled_from(["openai", "anthropic", _Str("openai")]),
            "request_model": st.sampled_from(["gpt-4o-mini", "claude"]),
            "response_model": st.sampled_from([None, "gpt-4o-mini-2024-07-18"]),
            "error_type": st.sampled_from([None, "upstream_timeout"]),
            "input_tokens": _TOKENS,
            "output_tokens": _TOKENS,
            "ttfc_s": st.one_of(st.none(), _FLOATS),
            "server_address": st.sampled_from([None, "api.openai.test"]),
            "server_port": st.sampled_from([None, 443, 1, True]),
        }
    ),
)
_COUNT = st.tuples(
    st.just("count"),
    st.fixed_dictionaries(
        {
            "name": st.sampled_from([*attr.COUNTERS, "casegate.custom_counter"]),
            "value": st.one_of(st.integers(min_value=-1, max_value=5), _FLOATS),
            "attributes": st.sampled_from(_ATTRS),
        }
    ),
)
_OVERHEAD = st.tuples(
    st.just("overhead"),
    st.fixed_dictionaries({"seconds": _FLOATS, "attributes": st.sampled_from(_ATTRS)}),
)
_COLLECT = st.tuples(st.just("collect"), st.integers(min_value=0, max_value=4))
_STEP = st.tuples(
    st.one_of(_OPERATION, _OPERATION, _COUNT, _COUNT, _OVERHEAD, _COLLECT),
    st.sampled_from([None, _SAMPLED, _UNSAMPLED]),
)


def _run(
    steps: Sequence[tuple[tuple[str, Any], SpanContext | None]],
    *,
    fast: bool,
    exemplar_filter: ExemplarFilter,
    readers: Callable[[], list[MetricReader]] = _readers,
    flush: bool = False,
) -> tuple[list[tuple[int, str, bytes]], list[tuple[str, int, str]]]:
    """Run ``steps`` on a fresh telemetry; return every collection (reader, JSON, OTLP)
    and the SDK's log records."""
    built = readers()
    provider = MeterProvider(
        metric_readers=built,
        resource=Resource({"service.name": "casegate-test"}),
        exemplar_filter=exemplar_filter,
        shutdown_on_exit=False,
    )
    telemetry = OtelTelemetry(None, provider, steps=False, fast_metrics=fast)
    assert (telemetry._metrics is not None) and ((telemetry._metrics.streams is not None) == fast)
    collected: list[tuple[int, str, bytes]] = []

    def collect(index: int) -> None:
        reader = built[index]
        if not isinstance(reader, InMemoryMetricReader):
            return
        data = reader.get_metrics_data()
        if data is None:
            collected.append((index, "", b""))
        else:
            collected.append((index, data.to_json(), encode_metrics(data).SerializeToString()))

    random.seed(20240601)
    with _frozen_clock(), _sdk_logs() as logs:
        for number, ((kind, args), span_context) in enumerate(steps):
            _CLOCK[0] = 1_000_000 * (number + 1)
            token = None
            if span_context is not None:
                span = NonRecordingSpan(span_context)
                token = otel_context.attach(trace.set_span_in_context(span))
            try:
                if kind == "operation":
                    telemetry.record_operation(**args)
                elif kind == "count":
                    telemetry.count(args["name"], args["value"], args["attributes"])
                elif kind == "overhead":
                    telemetry.record_overhead(args["seconds"], args["attributes"])
                else:
                    collect(args)
            finally:
                if token is not None:
                    otel_context.detach(token)
        _CLOCK[0] = 1_000_000 * (len(steps) + 1)
        if flush:
            telemetry.force_flush()
        for index in range(len(built)):
            collect(index)
        telemetry.shutdown()
    return collected, logs


_FILTERS: dict[str, Callable[[], ExemplarFilter]] = {
    "trace_based": TraceBasedExemplarFilter,
    "always_on": AlwaysOnExemplarFilter,
    "always_off": AlwaysOffExemplarFilter,
}


@pytest.mark.parametrize("exemplar_filter", sorted(_FILTERS))
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=st.lists(_STEP, max_size=60))
def test_fast_path_collects_what_the_sdk_instruments_collect(
    exemplar_filter: str, steps: list[tuple[tuple[str, Any], SpanContext | None]]
) -> None:
    make = _FILTERS[exemplar_filter]
    stock = _run(steps, fast=False, exemplar_filter=make())
    fast = _run(steps, fast=True, exemplar_filter=make())
    assert fast[0] == stock[0]
    assert fast[1] == stock[1]


def _gateway_like_steps(calls: int) -> list[tuple[tuple[str, Any], SpanContext | None]]:
    rng = random.Random(7)
    steps: list[tuple[tuple[str, Any], SpanContext | None]] = []
    for i in range(calls):
        use_case = rng.choice(["refund_triage", "billing", "(unknown)"])
        steps.append(
            (
                (
                    "operation",
                    {
                        "duration_s": rng.expovariate(2.0),
                        "provider": "openai",
                        "request_model": "gpt-4o-mini",
                        "response_model": rng.choice([None, "gpt-4o-mini-2024-07-18"]),
                        "error_type": rng.choice([None, None, None, "upstream_timeout"]),
                        "input_tokens": rng.randrange(1, 5000),
                        "output_tokens": rng.randrange(1, 800),
                        "ttfc_s": rng.choice([None, rng.random()]),
                        "server_address": "api.openai.test",
                        "server_port": 443,
                    },
                ),
                None,
            )
        )
        attributes = {"casegate.use_case": use_case, "casegate.decision": "allowed"}
        steps.append(
            (("count", {"name": attr.METRIC_REQUESTS, "value": 1, "attributes": attributes}), None)
        )
        steps.append(
            (
                (
                    "overhead",
                    {"seconds": rng.random() / 100, "attributes": {"casegate.use_case": use_case}},
                ),
                None,
            )
        )
        if i % 50 == 49:
            steps.append((("collect", 0), None))
            steps.append((("collect", 1), None))
    return steps


def test_gateway_like_load_collects_alike() -> None:
    steps = _gateway_like_steps(400)
    stock = _run(steps, fast=False, exemplar_filter=TraceBasedExemplarFilter())
    fast = _run(steps, fast=True, exemplar_filter=TraceBasedExemplarFilter())
    assert fast == stock
    assert len(stock[0]) == 8 + 5 + 8  # 16 mid-run collections of two readers + the final 5


def test_otlp_receiver_gets_the_same_bytes() -> None:
    steps = _gateway_like_steps(120)
    bodies: list[list[bytes]] = []
    for fast in (False, True):
        with OtlpReceiver() as receiver:

            def readers(url: str = receiver.url) -> list[MetricReader]:
                exporters = [
                    OTLPMetricExporter(endpoint=f"{url}/v1/metrics"),
                    OTLPMetricExporter(endpoint=f"{url}/v1/metrics", preferred_temporality=_DELTA),
                ]
                return [
                    PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
                    for exporter in exporters
                ]

            _run(
                steps,
                fast=fast,
                exemplar_filter=TraceBasedExemplarFilter(),
                readers=readers,
                flush=True,
            )
            bodies.append(list(receiver.raw_bodies))
    stock, fast_bodies = bodies
    assert len(stock) >= 2
    assert sorted(fast_bodies) == sorted(stock)  # the two readers export concurrently


def test_configured_telemetry_uses_the_fast_path_and_keeps_given_readers() -> None:
    reader = InMemoryMetricReader()
    telemetry = configure_telemetry(env={}, metric_readers=[reader])
    assert isinstance(telemetry, OtelTelemetry)
    assert telemetry._metrics is not None and telemetry._metrics.streams is not None
    telemetry.count(attr.METRIC_REQUESTS, 1, {"casegate.use_case": "refund_triage"})
    telemetry.record_overhead(0.002, {"casegate.use_case": "refund_triage"})
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {m.name: m for m in data.resource_metrics[0].scope_metrics[0].metrics}
    assert metrics[attr.METRIC_REQUESTS].data.data_points[0].value == 1  # type: ignore[union-attr]
    overhead = metrics[attr.METRIC_GATEWAY_OVERHEAD].data.data_points[0]
    assert overhead.count == 1 and overhead.sum == 0.002  # type: ignore[union-attr]
    telemetry.shutdown()


def test_disabled_sdk_falls_back_to_the_stock_instruments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    reader = InMemoryMetricReader()
    telemetry = configure_telemetry(env={}, metric_readers=[reader])
    assert isinstance(telemetry, OtelTelemetry) and telemetry._metrics is not None
    assert telemetry._metrics.fast_duration is None
    telemetry.count(attr.METRIC_REQUESTS)
    telemetry.record_overhead(0.1)
    assert reader.get_metrics_data() is None
    telemetry.shutdown()


def test_sdk_internals_the_fast_path_relies_on_are_there() -> None:
    """The module reads private SDK members; an upgrade must fail here first."""
    assert sdk_version == "1.45.2"
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    assert MetricStreams.supports(provider)
    provider.shutdown()
