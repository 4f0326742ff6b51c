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

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

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
                try:
                    with step:
                        raise TimeoutError
                except TimeoutError:
                    pass
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
        try:
            with attempt:
                raise ConnectionError
        except ConnectionError:
            pass
    else:
        with attempt:
            pass


def provider_for(sampler: str, limits: dict[str, Any], seed: int) -> TracerProvider:
    return TracerProvider(
        sampler=SAMPLERS[sampler](),
        resource=Resource({"service.name": "casegate", "k": 1}, "https://schema/1"),
        shutdown_on_exit=False,
        span_limits=SpanLimits(**limits),
        id_generator=SeededIds(seed),
    )


def exported(
    fast: bool, sampler: str, limits: dict[str, Any], seed: int, calls: list[Any]
) -> tuple[ReadableSpan, ...]:
    provider = provider_for(sampler, limits, seed)
    memory = InMemorySpanExporter()
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
            (e.name, e.timestamp, list((e.attributes or {}).items()), e.dropped_attributes)
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
)
def test_random_calls_export_the_same_spans(
    sampler: str, limits: dict[str, Any], seed: int, calls: list[Any]
) -> None:
    ours = exported(True, sampler, limits, seed, calls)
    sdk = exported(False, sampler, limits, seed, calls)
    assert_same(ours, sdk)


def test_the_fast_path_is_the_one_taken() -> None:
    provider = provider_for("always_on", {}, 1)
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    telemetry = OtelTelemetry(provider, None, steps=True)
    server = telemetry.server_span("s", [])
    assert isinstance(server, OtelServerSpan)
    assert isinstance(server._span, LiteSpan)
    attempt = telemetry.attempt_span(
        server,
        request_model="m",
        provider="p",
        server_address=None,
        server_port=None,
        stream=False,
        attempt=1,
        deployment="d",
    )
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
        attempt = telemetry.attempt_span(
            server,
            request_model="m",
            provider="p",
            server_address=None,
            server_port=None,
            stream=False,
            attempt=1,
            deployment="d",
        )
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
)
def test_the_span_api_used_behaves_as_the_sdk_span(
    sampler: str,
    limits: dict[str, Any],
    seed: int,
    headers: Any,
    start: dict[Any, Any] | None,
    kind: SpanKind,
    ops: list[Any],
) -> None:
    """``start_span`` and ``LiteSpan`` against ``Tracer.start_span`` and the SDK ``Span``
    directly, with the odd keys and values ``tracing`` never passes but the SDK handles."""
    results: list[Any] = []
    for fast in (True, False):
        provider = provider_for(sampler, limits, seed)
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
