"""The SERVER span, whichever span object carries it (tracing._lite_spans or the SDK's),
must finish exactly as an SDK span driven one ``set_attribute`` call per attribute.

These tests run random call sequences through ``OtelServerSpan`` and through a span driven
that way, and require the same finished span: attributes in the same order with the same
values, the same dropped count under small attribute limits, the same status and events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, Status, StatusCode

from tracing import attributes as attr
from tracing._otel import OtelServerSpan, OtelTelemetry

KEYS = st.sampled_from(
    [
        attr.CASEGATE_CLIENT,
        attr.CASEGATE_DECISION,
        attr.CASEGATE_USE_CASE,
        attr.ERROR_TYPE,
        attr.HTTP_RESPONSE_STATUS_CODE,
        attr.HTTP_REQUEST_METHOD,
        "casegate.redactions.EMAIL_ADDRESS",
        "",  # invalid: the SDK drops and counts it
    ]
)
VALUES = st.one_of(
    st.none(),
    st.sampled_from(["allowed", "refused", "x" * 40]),
    st.integers(min_value=-5, max_value=600),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.sampled_from(["a", "b"]), max_size=2),
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, VALUES),
        st.tuples(st.just("many"), st.dictionaries(KEYS, VALUES, max_size=4)),
        st.tuples(st.just("fail"), st.sampled_from(["timeout", "refused"])),
        st.tuples(st.just("event"), st.sampled_from([attr.EVENT_REDACTION, attr.EVENT_REFUSAL])),
    ),
    max_size=14,
)
_ERROR = Status(StatusCode.ERROR)


class OldServerSpan:
    """The SERVER span as it was: one SDK call per attribute."""

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._ended = False
        self._failed = False

    def set(self, key: str, value: Any) -> None:
        if value is not None and not self._ended:
            self._span.set_attribute(key, value)

    def set_many(self, attrs: Mapping[str, Any]) -> None:
        if self._ended:
            return
        for key, value in attrs.items():
            if value is not None:
                self._span.set_attribute(key, value)

    def event(self, name: str, attrs: Mapping[str, Any] | None = None) -> None:
        if not self._ended:
            self._span.add_event(name, attrs)

    def fail(self, error_type: str) -> None:
        if not self._failed and not self._ended:
            self._failed = True
            self._span.set_attribute(attr.ERROR_TYPE, error_type)
            self._span.set_status(_ERROR)

    def end(self, http_status: int | None = None) -> None:
        if self._ended:
            return
        if http_status is not None:
            self._span.set_attribute(attr.HTTP_RESPONSE_STATUS_CODE, http_status)
            if http_status >= 500:
                self.fail(str(http_status))
        self._ended = True
        self._span.end()


def run(ops: list[Any], span: Any, status: int | None) -> None:
    for op in ops:
        if op[0] == "set":
            span.set(op[1], op[2])
        elif op[0] == "many":
            span.set_many(op[1])
        elif op[0] == "fail":
            span.fail(op[1])
        else:
            span.event(op[1], {"n": 1})
    span.end(status)
    span.set(attr.CASEGATE_ROUTE, "after end")  # ignored


def snapshot(span: ReadableSpan) -> tuple[Any, ...]:
    return (
        list((span.attributes or {}).items()),
        span.dropped_attributes,
        span.status.status_code,
        span.status.description,
        [(e.name, dict(e.attributes or {})) for e in span.events],
    )


@settings(max_examples=400, deadline=None)
@given(
    OPS,
    st.dictionaries(KEYS.filter(bool), VALUES.filter(lambda v: v is not None), max_size=3),
    st.one_of(st.none(), st.integers(min_value=0, max_value=6)),
    st.one_of(st.none(), st.sampled_from([200, 404, 502])),
)
def test_the_server_span_finishes_as_one_sdk_call_per_attribute_would(
    ops: list[Any], start: dict[str, Any], limit: int | None, status: int | None
) -> None:
    memory = InMemorySpanExporter()
    limits = SpanLimits(max_span_attributes=limit)
    provider = TracerProvider(span_limits=limits, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry = OtelTelemetry(provider, None, steps=False)
    ours = telemetry.server_span("ours", [], start or None)
    assert isinstance(ours, OtelServerSpan)
    tracer = provider.get_tracer("casegate")
    old = OldServerSpan(tracer.start_span("old", kind=SpanKind.SERVER, attributes=start or None))
    run(ops, ours, status)
    run(ops, old, status)
    telemetry.shutdown()
    by_name = {span.name: span for span in memory.get_finished_spans()}
    assert snapshot(by_name["ours"]) == snapshot(by_name["old"])


def test_a_span_the_sampler_dropped_exports_nothing() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry = OtelTelemetry(provider, None, steps=False)
    span = telemetry.server_span("dropped", [])
    span.set(attr.CASEGATE_CLIENT, "helpdesk")
    span.set_many({attr.CASEGATE_DECISION: "allowed"})
    span.fail("boom")
    span.end(503)
    telemetry.shutdown()
    assert memory.get_finished_spans() == ()
