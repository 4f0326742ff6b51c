"""Spans started without the SDK ``Span`` (``tracing._lite_spans``) against the SDK path.

Each check runs the same random sequence of span operations twice, through
``OtelTelemetry(fast_spans=False)`` (``Tracer.start_span`` and the SDK ``Span``, the
reference) and through ``OtelTelemetry()`` (``LiteSpan``), each on its own provider
built alike, with the SDK's clock replaced by a counter and a seeded id generator, so
both runs see the same times and ids. The spans exported must be the same in every field
a processor or exporter reads (name, kind, ids, flags, trace state, remote flags, parent,
times, attributes in order, dropped counts, events with their attributes and times,
links, status, resource, instrumentation scope) and must encode to the same OTLP bytes,
with our encoder and the SDK's. Covered: the samplers ``build`` can make (always on/off,
trace id ratio, parent-based), incoming ``traceparent``/``tracestate`` sampled or not,
span limits on attributes, their lengths, events and event attributes, failures, spans
ended by an exception, step spans, several attempts per call.
"""

from __future__ import annotations

import hashlib
import inspect
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.attributes import BoundedAttributes, _clean_attribute_value
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    StaticSampler,
    TraceIdRatioBased,
    _get_parent_trace_state,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, get_current_span

from tracing import attributes as attr
from tracing._lite_spans import LiteSpan, start_span
from tracing._otel import (
    _PROPAGATOR,
    OtelAttemptSpan,
    OtelServerSpan,
    OtelStepSpan,
    OtelTelemetry,
    _trace_headers,
)
from tracing._span_encoder import SpanEncoder

SAMPLERS: dict[str, Callable[[], Sampler]] = {
    "always_on": lambda: ALWAYS_ON,
    "always_off": lambda: ALWAYS_OFF,
    "traceidratio": lambda: TraceIdRatioBased(0.5),
    "parentbased_always_on": lambda: ParentBased(ALWAYS_ON),
    "parentbased_always_off": lambda: ParentBased(ALWAYS_OFF),
    "parentbased_traceidratio": lambda: ParentBased(TraceIdRatioBased(0.5)),
}
KEYS = st.sampled_from(
    [
        attr.CASEGATE_CLIENT,
        attr.CASEGATE_DECISION,
        attr.CASEGATE_USE_CASE,
        attr.ERROR_TYPE,
        attr.HTTP_RESPONSE_STATUS_CODE,
        "casegate.redactions.EMAIL_ADDRESS",
        "",  # invalid: the SDK drops and counts it
    ]
)
VALUES = st.one_of(
    st.none(),
    st.sampled_from(["allowed", "refused", "x" * 40, "ключ"]),
    st.integers(min_value=-5, max_value=2**70),  # past int64 too
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.sampled_from(["a", "b", "long value"]), max_size=3),
    st.lists(st.integers(min_value=0, max_value=9), max_size=2).map(tuple),
)
EVENT_ATTRS = st.one_of(st.none(), st.dictionaries(KEYS, VALUES.filter(lambda v: v is not None)))
HEADERS = st.sampled_from(
    [
        [],
        [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
        [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")],
        [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03")],
        [
            (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            (b"tracestate", b"vendor=a1,other=b2"),
        ],
        [
            (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
            (b"tracestate", b"vendor=a1"),
        ],
        [(b"traceparent", b"garbage")],
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    ]
)
ATTEMPT = st.fixed_dictionaries(
    {
        "request_model": st.sampled_from(["gpt-4o-mini", "claude", ""]),
        "provider": st.sampled_from(["openai", "anthropic"]),
        "server_address": st.one_of(st.none(), st.just("api.example.com")),
        "server_port": st.one_of(st.none(), st.just(443)),
        "stream": st.booleans(),
        "attempt": st.integers(min_value=1, max_value=3),
        "deployment": st.sampled_from(["primary", "fallback"]),
    }
)
OUTCOME = st.one_of(
    st.tuples(
        st.just("finish"),
        st.one_of(st.none(), st.just("gpt-4o-mini-2024")),
        st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
        st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
        st.lists(st.sampled_from(["stop", "length"]), max_size=2),
        st.one_of(st.none(), st.floats(min_value=0, max_value=5)),
    ),
    st.tuples(st.just("fail"), st.sampled_from(["timeout", "429"])),
    st.tuples(st.just("raise")),
    st.tuples(st.just("close")),
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, VALUES),
        st.tuples(st.just("many"), st.dictionaries(KEYS, VALUES, max_size=4)),
        st.tuples(st.just("fail"), st.sampled_from(["timeout", "refused"])),
        st.tuples(
            st.just("event"), st.sampled_from([attr.EVENT_REDACTION, "refusal"]), EVENT_ATTRS
        ),
        st.tuples(st.just("attempt"), ATTEMPT, OUTCOME),
        st.tuples(st.just("step"), st.sampled_from(["redact", "route"]), KEYS, VALUES, OUTCOME),
    ),
    max_size=12,
)
LIMITS: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {
            "max_span_attributes": st.integers(min_value=0, max_value=8),
            "max_events": st.integers(min_value=0, max_value=3),
            "max_event_attributes": st.integers(min_value=0, max_value=2),
            "max_attribute_length": st.one_of(st.none(), st.integers(min_value=0, max_value=6)),
            "max_span_attribute_length": st.one_of(
                st.none(), st.integers(min_value=0, max_value=6)
            ),
        }
    ),
)


class SeededIds(IdGenerator):
    """Ids from a seeded generator: the same sequence for both runs."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


@contextmanager
def counting_clock() -> Iterator[None]:
    """The SDK's ``time_ns``, for both paths, as a counter: any extra, missing or
    reordered clock read shows in the times exported."""
    ticks = iter(range(1_700_000_000_000_000_000, 2**63, 1_000))
    with mock.patch.object(sdk_trace, "time_ns", lambda: next(ticks)):
        yield


def run_call(telemetry: OtelTelemetry, headers: Any, start: dict[str, Any], ops: list[Any]) -> None:
    server = telemetry.server_span("POST /v1/chat/completions", headers, start or None)
    for op in ops:
        kind = op[0]
        if kind == "set":
            server.set(op[1], op[2])
        elif kind == "many":
            server.set_many(op[1])
        elif kind == "fail":
            server.fail(op[1])
        elif kind == "event":
            server.event(op[1], op[2])
        elif kind == "attempt":
            attempt = telemetry.attempt_span(server, **op[1])
            finish(attempt, op[2])
        else:
            step = telemetry.step_span(server, op[1])
            step.set(op[2], op[3])
            if op[4][0] == "fail":
                step.fail(op[4][1])
            elif op[4][0] == "raise":
                with pytest.raises(TimeoutError), step:  # the span records it, lets it go
                    raise TimeoutError
            else:
                step.end()
    server.end(503 if any(op[0] == "fail" for op in ops) else 200)


def finish(attempt: Any, outcome: tuple[Any, ...]) -> None:
    if outcome[0] == "finish":
        attempt.finish(
            response_model=outcome[1],
            input_tokens=outcome[2],
            output_tokens=outcome[3],
            finish_reasons=outcome[4],
            ttfc_s=outcome[5],
        )
    elif outcome[0] == "fail":
        attempt.fail(outcome[1])
    elif outcome[0] == "raise":
        with pytest.raises(ConnectionError), attempt:  # the span records it, lets it go
            raise ConnectionError
    else:
        with attempt:
            pass  # a body that returns: the span ends as on success


def _attempt(telemetry: OtelTelemetry, server: Any) -> Any:
    """A first, non-streaming attempt on deployment "d" (model "m", provider "p")."""
    return telemetry.attempt_span(
        server,
        request_model="m",
        provider="p",
        server_address=None,
        server_port=None,
        stream=False,
        attempt=1,
        deployment="d",
    )


def provider_for(
    sampler: str, limits: dict[str, Any], seed: int, random_ids: bool = False, **kwargs: Any
) -> TracerProvider:
    """``random_ids``: the SDK's default ``RandomIdGenerator`` (which ``start_span`` reads
    the ``random`` module for itself), with ``random`` seeded here, so both runs draw the
    same ids; else :class:`SeededIds`."""
    if random_ids:
        random.seed(seed)
    return TracerProvider(
        sampler=SAMPLERS[sampler](),
        resource=Resource({"service.name": "casegate", "k": 1}, "https://schema/1"),
        shutdown_on_exit=False,
        span_limits=SpanLimits(**limits),
        id_generator=RandomIdGenerator() if random_ids else SeededIds(seed),
        **kwargs,
    )


def exported(
    fast: bool,
    sampler: str,
    limits: dict[str, Any],
    seed: int,
    calls: list[Any],
    random_ids: bool = False,
    batch: bool = False,
) -> tuple[ReadableSpan, ...]:
    """The spans a simple processor, or (``batch``) a batch processor and a second simple
    one behind it, hands an in-memory exporter (the batch one's, which shutdown flushes)."""
    provider = provider_for(sampler, limits, seed, random_ids)
    memory = InMemorySpanExporter()
    if batch:
        provider.add_span_processor(BatchSpanProcessor(memory))
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry = OtelTelemetry(
        provider,
        None,
        steps=True,
        fast_spans=fast,
    )
    with counting_clock():
        for headers, start, ops in calls:
            run_call(telemetry, headers, start, ops)
    telemetry.shutdown()
    return memory.get_finished_spans()


def fields(span: ReadableSpan) -> tuple[Any, ...]:
    """Everything of a finished span a processor or exporter can read."""
    status = span.status
    scope = span.instrumentation_scope
    return (
        type(span),
        list(vars(span)),  # the same fields, set in the same order
        span.name,
        span.kind,
        span.context,
        span.get_span_context(),
        span.context and dict(span.context.trace_state),
        span.context and (span.context.is_remote, int(span.context.trace_flags)),
        span.parent,
        span.parent and dict(span.parent.trace_state),
        span.parent and (span.parent.is_remote, int(span.parent.trace_flags)),
        span.start_time,
        span.end_time,
        list((span.attributes or {}).items()),
        span.dropped_attributes,
        [
            (
                e.name,
                e.timestamp,
                list((e.attributes or {}).items()),
                e.dropped_attributes,
                state(e.attributes),
            )
            for e in span.events
        ],
        span.dropped_events,
        list(span.links),
        span.dropped_links,
        (status.status_code, status.description, status.is_ok, status.is_unset),
        span.resource.attributes,
        span.resource.schema_url,
        (scope.name, scope.version, scope.schema_url, scope.attributes) if scope else None,
        span._instrumentation_info,  # deprecated property: read what it returns
        outcome(span.to_json),
    )


def state(attributes: Any) -> Any:
    """A ``BoundedAttributes``' type and fields in the order they were set (its lock is
    compared by type only)."""
    if attributes is None:
        return None
    return (
        type(attributes),
        [(k, type(v) if k == "_lock" else v) for k, v in vars(attributes).items()],
    )


def outcome(make: Callable[[], Any]) -> Any:
    """What ``make`` returns, or the type of what it raises (the same either way)."""
    try:
        return make()
    except Exception as exc:
        return type(exc)


def assert_same(ours: tuple[ReadableSpan, ...], sdk: tuple[ReadableSpan, ...]) -> None:
    assert [fields(span) for span in ours] == [fields(span) for span in sdk]
    assert outcome(lambda: SpanEncoder().encode(ours)) == outcome(lambda: SpanEncoder().encode(sdk))
    assert outcome(lambda: encode_spans(ours).SerializePartialToString()) == outcome(
        lambda: encode_spans(sdk).SerializePartialToString()
    )


CALL = st.tuples(
    HEADERS,
    st.dictionaries(KEYS, VALUES.filter(lambda v: v is not None), max_size=3),
    OPS,
)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(sorted(SAMPLERS)),
    LIMITS,
    st.integers(min_value=0, max_value=2**32),
    st.lists(CALL, min_size=1, max_size=3),
    st.booleans(),
    st.booleans(),
)
def test_random_calls_export_the_same_spans(
    sampler: str,
    limits: dict[str, Any],
    seed: int,
    calls: list[Any],
    random_ids: bool,
    batch: bool,
) -> None:
    ours = exported(True, sampler, limits, seed, calls, random_ids, batch)
    sdk = exported(False, sampler, limits, seed, calls, random_ids, batch)
    assert_same(ours, sdk)


def test_the_fast_path_is_the_one_taken() -> None:
    provider = provider_for("always_on", {}, 1)
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    telemetry = OtelTelemetry(provider, None, steps=True)
    server = telemetry.server_span("s", [])
    assert isinstance(server, OtelServerSpan)
    assert isinstance(server._span, LiteSpan)
    attempt = _attempt(telemetry, server)
    assert isinstance(attempt, OtelAttemptSpan)
    assert isinstance(attempt._span, LiteSpan)
    step = telemetry.step_span(server, "redact")
    assert isinstance(step, OtelStepSpan)
    assert isinstance(step._span, LiteSpan)
    # Children carry the server span's trace and name it as their parent.
    assert attempt._span._parent == server._span.get_span_context()
    assert server.trace_id_hex == format(server._span.get_span_context().trace_id, "032x")
    telemetry.shutdown()


class Watching(SpanProcessor):
    """A processor that needs the started span: the SDK Span must be used."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append(span)


class Custom(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return ALWAYS_ON.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "custom"


def test_a_processor_with_on_start_gets_the_sdk_span_even_when_added_later() -> None:
    provider = provider_for("always_on", {}, 1)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    telemetry = OtelTelemetry(provider, None, steps=False)
    first = telemetry.server_span("s", [])
    assert isinstance(first, OtelServerSpan)
    assert isinstance(first._span, LiteSpan)
    watching = Watching()
    provider.add_span_processor(watching)
    second = telemetry.server_span("s", [])
    assert isinstance(second, OtelServerSpan)
    assert isinstance(second._span, sdk_trace.Span)
    assert watching.started == [second._span]
    first.end()
    second.end()
    telemetry.shutdown()


def test_a_sampler_not_from_the_sdk_gets_the_sdk_span() -> None:
    provider = TracerProvider(sampler=Custom(), shutdown_on_exit=False)
    telemetry = OtelTelemetry(provider, None, steps=False)
    span = telemetry.server_span("s", [])
    assert isinstance(span, OtelServerSpan)
    assert isinstance(span._span, sdk_trace.Span)
    telemetry.shutdown()


def test_a_span_sampled_out_exports_nothing_and_still_parents_its_children() -> None:
    header = [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")]
    results: list[Any] = []
    for fast in (True, False):
        provider = provider_for("parentbased_always_on", {}, 7)
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        telemetry = OtelTelemetry(provider, None, steps=True, fast_spans=fast)
        server = telemetry.server_span("s", header)
        attempt = _attempt(telemetry, server)
        assert isinstance(attempt, OtelAttemptSpan)
        context = attempt._span.get_span_context()
        attempt.finish(response_model=None, input_tokens=1, output_tokens=2)
        server.end(200)
        telemetry.shutdown()
        assert memory.get_finished_spans() == ()
        assert server.trace_id_hex == "0af7651916cd43dd8448eb211c80319c"
        results.append((context.trace_id, context.span_id, context.trace_flags))
    assert results[0] == results[1]


class Opaque:
    """A value (or key) with neither ``__str__`` nor ``__repr__`` of its own."""

    __str__ = object.__str__
    __repr__ = object.__repr__


class Named:
    def __str__(self) -> str:
        return "named"


RAW_KEYS = st.one_of(KEYS, st.sampled_from([1, 2.5, None, b"k", "named"]), st.just(Named()))
RAW_VALUES = st.one_of(
    VALUES,
    st.sampled_from([b"bytes", None, "", "x" * 12]),
    st.builds(Named),
    st.builds(Opaque),
    st.dictionaries(st.sampled_from(["a", ""]), st.integers(0, 3), max_size=2),
    st.lists(st.one_of(st.integers(0, 3), st.text(max_size=8), st.none()), max_size=3),
)
STATUSES = [*(Status(code) for code in StatusCode), Status(StatusCode.ERROR, "d")]
RAW_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), RAW_KEYS, RAW_VALUES),
        st.tuples(st.just("many"), st.dictionaries(RAW_KEYS, RAW_VALUES, max_size=4)),
        st.tuples(
            st.just("event"),
            st.sampled_from(["e", ""]),
            st.one_of(st.none(), st.dictionaries(RAW_KEYS, RAW_VALUES, max_size=3)),
        ),
        st.tuples(st.just("status"), st.sampled_from(list(StatusCode)), st.none()),
        st.tuples(
            st.just("status"),
            st.sampled_from(STATUSES),
            st.none(),
        ),
        st.tuples(st.just("status"), st.just(StatusCode.ERROR), st.just("why")),
        st.tuples(st.just("end")),
    ),
    max_size=15,
)


def drive(span: Any, ops: list[Any]) -> None:
    for op in ops:
        if op[0] == "set":
            span.set_attribute(op[1], op[2])
        elif op[0] == "many":
            span.set_attributes(op[1])
        elif op[0] == "event":
            span.add_event(op[1], op[2])
        elif op[0] == "status":
            span.set_status(op[1], op[2])
        else:
            span.end()
    span.end()


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(sorted(SAMPLERS)),
    LIMITS,
    st.integers(min_value=0, max_value=2**32),
    HEADERS,
    st.one_of(st.none(), st.dictionaries(RAW_KEYS, RAW_VALUES, max_size=4)),
    st.sampled_from(list(SpanKind)),
    RAW_OPS,
    st.booleans(),
)
def test_the_span_api_used_behaves_as_the_sdk_span(
    sampler: str,
    limits: dict[str, Any],
    seed: int,
    headers: Any,
    start: dict[Any, Any] | None,
    kind: SpanKind,
    ops: list[Any],
    random_ids: bool,
) -> None:
    """``start_span`` and ``LiteSpan`` against ``Tracer.start_span`` and the SDK ``Span``
    directly, with the odd keys and values ``tracing`` never passes but the SDK handles."""
    results: list[Any] = []
    for fast in (True, False):
        provider = provider_for(sampler, limits, seed, random_ids)
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("casegate", "1.2.3", "https://schema/2")
        carrier = _trace_headers(headers)
        context = Context() if carrier is None else _PROPAGATOR.extract(carrier, Context())
        with counting_clock():
            if fast:
                assert isinstance(tracer, sdk_trace.Tracer)
                span: Any = start_span(tracer, "op", context, kind, start)
            else:
                span = tracer.start_span("op", context=context, kind=kind, attributes=start)
            context_seen = span.get_span_context()
            recording = span.is_recording()
            drive(span, ops)
            results.append((context_seen, recording, span.is_recording()))
        provider.shutdown()
        results.append(memory.get_finished_spans())
    assert results[0] == results[2]
    assert_same(results[1], results[3])


def test_the_sdks_own_span_metrics_are_recorded_alike() -> None:
    """With the SDK's internal metrics on (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``),
    the tracer's started and live span counts come out the same on both paths."""
    calls: list[Any] = [
        ([], {}, [("attempt", ATTEMPT_ARGS, ("finish", None, 1, 2, [], None))]),
        ([(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")], {}, []),
        ([(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")], {}, []),
    ]
    results = []
    for fast in (True, False):
        reader = InMemoryMetricReader()
        meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        with mock.patch.dict("os.environ", {"OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": "true"}):
            provider = provider_for("parentbased_always_on", {}, 3, meter_provider=meters)
            telemetry = OtelTelemetry(provider, None, steps=True, fast_spans=fast)
        with counting_clock():
            for headers, start, ops in calls:
                run_call(telemetry, headers, start, ops)
        telemetry.shutdown()
        data = reader.get_metrics_data()
        assert data is not None
        results.append(
            sorted(
                (metric.name, sorted(point.attributes.items()), point.value)  # type: ignore[union-attr]
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for metric in sm.metrics
                for point in metric.data.data_points
            )
        )
        meters.shutdown()
    assert results[0] == results[1]
    assert results[0]  # the metrics were on


ATTEMPT_ARGS = {
    "request_model": "m",
    "provider": "p",
    "server_address": None,
    "server_port": None,
    "stream": False,
    "attempt": 1,
    "deployment": "d",
}

#: sha256 of the SDK source ``tracing._lite_spans`` restates (opentelemetry-sdk and -api
#: 1.45.2, pinned by tests/tracing/test_span_exporter.py): an upgrade fails here, by name.
SDK_SOURCES = {
    "Tracer.start_span": (
        sdk_trace.Tracer.start_span,
        "3cd55e4a9e148e4117820b4da05af6cfc6dcff6f8d8e9809ccce5c85a5aea2d0",
    ),
    "Tracer._is_enabled": (
        sdk_trace.Tracer._is_enabled,
        "4204374b0613c070f1f57533f745c4c9b09ca3bc763740090e2bdd45a98cdf5e",
    ),
    "Span.set_attribute": (
        sdk_trace.Span.set_attribute,
        "1ed35e3cad63f66fd7ac6f6bae9083fa65df3ed5127df6a097903c3967b9a6a4",
    ),
    "Span.set_attributes": (
        sdk_trace.Span.set_attributes,
        "7973a9fb0ed80cf78fc33363c091895bfa63927393f7f0e87ebd2bd1bef08db4",
    ),
    "Span.add_event": (
        sdk_trace.Span.add_event,
        "6503d7d05c955a74570129f04b5e1bff127779a9bfcccc2b6e445271df439e9e",
    ),
    "Span.end": (
        sdk_trace.Span.end,
        "88aca2e904b83031224af2b5de537d975f0481f64b087aaff5f15212b57db154",
    ),
    "Span._readable_span": (
        sdk_trace.Span._readable_span,
        "09b0757dcd9c4e02bfe9b2386ba8d2f8642fdb12429e3f2cae3b97c2beebcc75",
    ),
    "Event.__init__": (
        sdk_trace.Event.__init__,
        "22ccf5497836a5aee4c3213155d3cd807c33262e088577d8fee563569d10e820",
    ),
    "EventBase.__init__": (
        sdk_trace.EventBase.__init__,
        "8b696d4725e1cab163144ff5dcc530ac54efff8e92e92aeb9ad1e7fb1b127670",
    ),
    "BoundedAttributes.__init__": (
        BoundedAttributes.__init__,
        "dbc75495ddf538bfb5ec1e7609c8cb923e6d1d3b7413d9c3a3574de0f1f90b71",
    ),
    "BoundedAttributes.__setitem__": (
        BoundedAttributes.__setitem__,
        "cd162b67001b485b0e0041fd63d72db3e2d86f1b8b258ae962e5dbde993373c5",
    ),
    "BoundedAttributes._set_items": (
        BoundedAttributes._set_items,
        "0bf5c57a76dac90180e56878bb2a82e6efea29e88af8dbf81e7a081220bf8d4c",
    ),
    "BoundedAttributes._setitem_locked": (
        BoundedAttributes._setitem_locked,
        "e32e93aeba04a5556c46cfb7939e5d7e534c5069f2e8d660e4c6d5876afc7f96",
    ),
    "_clean_attribute_value": (
        _clean_attribute_value,
        "6018b3fe7e6a07a6385e69d54f92ab00c7c48c332c47426ba1c0ef96ec867cdf",
    ),
    "SpanContext.__new__": (
        SpanContext.__new__,
        "ba12f8f39fd146249acb03bb4e4c682424635b54ba66841268cbb56b8ff43111",
    ),
    "get_current_span": (
        get_current_span,
        "e067c8d7672619634b301e8f5189b68ef18e611f9a69f1e73f1f1b4b01b931c9",
    ),
    "RandomIdGenerator": (
        RandomIdGenerator,
        "d717ab3c17adce3809ea655c31bee31d34080eea9c588bb15f6be5797630b0f0",
    ),
    "StaticSampler.should_sample": (
        StaticSampler.should_sample,
        "45cb9cd55e66eab3331ce13dbf60aee95d7c775279e2fbd6f0a1b36e3239417e",
    ),
    "TraceIdRatioBased.should_sample": (
        TraceIdRatioBased.should_sample,
        "f8786d237e5eab435af5c96bb82e7a9d67a77792fc52dbd9b0e961b83eb17b82",
    ),
    "ParentBased.should_sample": (
        ParentBased.should_sample,
        "2f4e7c936dc7616e244252aa433ebb79e132cdc16c3d0807f0d7990833d7bfde",
    ),
    "_get_parent_trace_state": (
        _get_parent_trace_state,
        "2913510b6d946c62659e91dafd204dcea8054a4d0ffcecac2ffd6c07e38f6967",
    ),
    "SamplingResult.__init__": (
        SamplingResult.__init__,
        "29227f90bb0b88034d8ffbb7e29f7383f833e3f43bcb5d04f72417c800beccaa",
    ),
    "Decision": (
        Decision,
        "8d417e3f0b2488140b2434541faf5230a0ee2c1665c42af804913ba4a55e42c0",
    ),
    "ReadableSpan.__init__": (
        ReadableSpan.__init__,
        "9fd2a50ea3546706293d58954ebb2381d81d76f2bb94b9bbf1a674b2dd095d4e",
    ),
    "BoundedList": (
        BoundedList,
        "6dd8fabfd5ebb4529547000d19e15df7e76e81c09ee205a88233e1807bb8ee0d",
    ),
    "SynchronousMultiSpanProcessor.on_end": (
        SynchronousMultiSpanProcessor.on_end,
        "3320b74a9dd2395b33f09c468b5a5c3114a1452a84eae4a1459f10cb630f68b5",
    ),
    "BatchSpanProcessor.on_end": (
        BatchSpanProcessor.on_end,
        "0f0a7d0eb4f998a46fc7045f582d93a53118268feeb54c888a55e4b1e514c40e",
    ),
    "NoOpTracerMetrics": (
        NoOpTracerMetrics,
        "351f706410e68d7143cadc881ee9ab262b77baa5469e10e1a73f795c1d9fa632",
    ),
}


@pytest.mark.parametrize("name", sorted(SDK_SOURCES))
def test_sdk_code_restated_is_unchanged(name: str) -> None:
    source_of, pinned = SDK_SOURCES[name]
    digest = hashlib.sha256(inspect.getsource(source_of).encode()).hexdigest()
    assert digest == pinned, (
        f"the SDK's {name} changed: tracing/_lite_spans.py restates it step by step; "
        "bring it in line, then update the pin"
    )
