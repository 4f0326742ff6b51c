"""Spans without the SDK ``Span``: what ``Tracer.start_span`` and ``Span.end`` do for the
spans :mod:`tracing._otel` makes, minus the machinery those spans never use.

Usage (by ``tracing._otel``, never directly)::

    tracer = LiteTracer(provider.get_tracer("casegate"))
    span = tracer.start(name, context, SpanKind.SERVER, attributes)
    span.set_attributes({...}); span.add_event("x", {...}); span.end()

Why: with OTLP on, building, starting and ending the SDK ``Span`` of the SERVER and the
attempt span cost about 0.64 M CPU instructions per gateway call: the ``Span``
constructor (a ``ReadableSpan`` base, a lock, empty bounded lists of events and links),
``start()`` and ``end()`` under the span lock, the span processors' ``on_start`` and
``_on_ending`` hooks, and the ``ReadableSpan`` copy ``end()`` hands to ``on_end``.
Most of it was attribute cleaning (``isinstance`` against ABCs, per value, twice for
the SERVER span's start attributes). Measured with ``bench.gateway.inproc --callgrind``
(traces only): 4.443 M -> 4.218 M instructions per call, against 3.56-3.59 M without
OTLP.

Exactness: :func:`start_span` is ``opentelemetry.sdk.trace.Tracer.start_span`` 1.45.2,
step for step and in the same order: the parent's ``SpanContext`` from the context, the
tracer's enabled check, a trace id from the tracer's id generator for a root, the
tracer's sampler asked with the same arguments, the same trace flags (sampled, random
trace id from the id generator or the parent), a span id from the id generator, the
sampler's trace state, the tracer's own span metrics, and the start time from the SDK's
``time_ns`` (looked up in the SDK module at each call, so a test that replaces it
replaces it for both). A span the sampler does not record is the SDK's own
``NonRecordingSpan``. A recorded one is a :class:`LiteSpan`, which holds its attributes
as the SDK ``Span``'s ``BoundedAttributes`` does, in a dict and a dropped count, by the
same rules: ``set_attribute`` is ``BoundedAttributes.__setitem__`` and
``set_attributes`` its ``_set_items`` (the span attribute limits; an invalid key dropped
and counted, or, in a mapping, turned into a str as ``_clean_attribute_value`` does; a
re-set key moved to the end; the oldest dropped and counted when full; the same log
warnings). Values are cleaned by the SDK's ``_clean_attribute_value``, except the ones
it returns as they are (a str within the length limit, an int, a bool, a float), whose
type is checked exactly instead of through ``isinstance`` against ABCs; at :meth:`end`
dict and count go into a ``BoundedAttributes`` of the span's limits, made immutable as
``Span.end`` does. Its events are the SDK's ``Event``s with the same
``BoundedAttributes``, in a ``BoundedList`` of the same bound, and its status follows
``Span.set_status``'s rules. At :meth:`end` it makes the ``ReadableSpan``
``Span._readable_span`` would make and hands it to the tracer's span processor
``on_end``. A span without events or links gets ``()`` for
them instead of empty ``BoundedList``s: every reader sees the same empty tuple and a
dropped count of 0.

What is skipped, and why that is safe: the processors' ``on_start`` and ``_on_ending``,
which only :class:`BatchSpanProcessor` and :class:`SimpleSpanProcessor` of the SDK may
be behind the tracer for this module to be used (their hooks do nothing; any other
processor gets the SDK ``Span``, see :class:`LiteTracer`); and the
span's lock, which guarded against concurrent mutation from several threads, while each
of our spans is used by one request's task. The sampler sees, as the current span of
the context, a ``NonRecordingSpan`` with the parent's ``SpanContext`` where the SDK path
had the parent's SDK ``Span``; so only the SDK's own samplers, which read nothing else
of it, are accepted. ``tests/tracing/test_lite_spans.py`` drives random operations
through both paths and compares the exported spans field by field and as OTLP bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes, _clean_attribute_value
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SynchronousMultiSpanProcessor,
    Tracer,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ParentBased,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

__all__ = ["LiteSpan", "LiteTracer", "SpanLike", "start_span"]

#: The four trace flag combinations ``Tracer.start_span`` can produce.
_FLAGS: Final = tuple(TraceFlags(bits) for bits in range(4))
_SAMPLED: Final = TraceFlags.SAMPLED
_RANDOM: Final = TraceFlags.RANDOM_TRACE_ID
#: Processors whose ``on_start`` and ``_on_ending`` do nothing.
_QUIET_PROCESSORS: Final = (BatchSpanProcessor, SimpleSpanProcessor)
_OK: Final = StatusCode.OK
_ROOT: Final = Context()
#: What a span's status is until set (``Span`` takes ``ReadableSpan``'s default).
_UNSET_STATUS: Final = Status(StatusCode.UNSET)
_UNSET: Final = StatusCode.UNSET


#: The logger ``BoundedAttributes`` warns through.
_attributes_logger: Final = logging.getLogger("opentelemetry.attributes")


def _clean_items(
    attributes: Mapping[str, types.AttributeValue], max_len: int | None
) -> dict[str, types.AnyValue]:
    """``_clean_attribute_value(attributes, max_len)`` for a mapping: the same dict, in the
    same order. A valid key with a str value within ``max_len``, or an int, bool or float
    value, is kept as the SDK function keeps it (as it is); anything else goes through the
    SDK function itself, one pair at a time, which is how it handles pairs."""
    cleaned: dict[str, types.AnyValue] = {}
    for key, value in attributes.items():
        if type(key) is str and key:
            kind = type(value)
            if kind is str:
                if max_len is not None and len(value) > max_len:  # type: ignore[arg-type]
                    value = _clean_attribute_value(value, max_len)
            elif kind is not int and kind is not bool and kind is not float:
                value = _clean_attribute_value(value, max_len)
            cleaned[key] = value
        else:
            cleaned.update(_clean_attribute_value({key: value}, max_len))
    return cleaned


class SpanLike(Protocol):
    """What ``tracing._otel`` uses of a span: the SDK ``Span``, ``NonRecordingSpan`` and
    :class:`LiteSpan` all have it."""

    def get_span_context(self) -> SpanContext: ...

    def is_recording(self) -> bool: ...

    def set_attribute(self, key: str, value: types.AttributeValue) -> None: ...

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None: ...

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None: ...

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None: ...

    def end(self, end_time: int | None = None) -> None: ...


def _known_sampler(sampler: Sampler) -> bool:
    if type(sampler) in (StaticSampler, TraceIdRatioBased):
        return True
    if type(sampler) is ParentBased:
        return all(
            _known_sampler(delegate)
            for delegate in (
                sampler._root,
                sampler._remote_parent_sampled,
                sampler._remote_parent_not_sampled,
                sampler._local_parent_sampled,
                sampler._local_parent_not_sampled,
            )
        )
    return False


class LiteTracer:
    """Starts spans for one SDK tracer: through :func:`start_span` when the tracer's set-up
    is one it stands in for, else through the tracer itself. The check is redone when the
    provider's tuple of processors or the tracer's sampler changes."""

    __slots__ = ("_ok", "_processors", "_sampler", "tracer")

    def __init__(self, tracer: trace_api.Tracer) -> None:
        self.tracer = tracer
        self._processors: object = None
        self._sampler: object = None
        self._ok = False

    def _supported(self) -> bool:
        tracer = self.tracer
        if type(tracer) is not Tracer:
            return False
        multi = tracer.span_processor
        if type(multi) is not SynchronousMultiSpanProcessor:
            return False
        processors = multi._span_processors
        sampler = tracer.sampler
        if self._processors is not processors or self._sampler is not sampler:
            self._ok = _known_sampler(sampler) and all(
                type(processor) in _QUIET_PROCESSORS for processor in processors
            )
            self._processors = processors
            self._sampler = sampler
        return self._ok

    def start(
        self,
        name: str,
        context: Context,
        kind: SpanKind,
        attributes: types.Attributes,
    ) -> SpanLike:
        tracer = self.tracer
        if self._supported():
            assert isinstance(tracer, Tracer)
            return start_span(tracer, name, context, kind, attributes)
        return tracer.start_span(name, context=context, kind=kind, attributes=attributes)


def start_span(
    tracer: Tracer,
    name: str,
    context: Context,
    kind: SpanKind,
    attributes: types.Attributes,
) -> SpanLike:
    """``tracer.start_span(name, context=context, kind=kind, attributes=attributes)``
    for a tracer :class:`LiteTracer` accepts."""
    parent_span_context = trace_api.get_current_span(context).get_span_context()
    if parent_span_context is not None and not isinstance(parent_span_context, SpanContext):
        raise TypeError("parent_span_context must be a SpanContext or None.")
    if not tracer._is_enabled():
        return NonRecordingSpan(context=parent_span_context)
    id_generator = tracer.id_generator
    parent: SpanContext | None
    if parent_span_context is None or not parent_span_context.is_valid:
        parent = None
        trace_id = id_generator.generate_trace_id()
    else:
        parent = parent_span_context
        trace_id = parent.trace_id
    result = tracer.sampler.should_sample(context, trace_id, name, kind, attributes, ())
    decision = result.decision
    sampled: bool = decision.is_sampled()  # type: ignore[no-untyped-call]
    bits = _SAMPLED if sampled else 0
    if parent is None:
        if id_generator.is_trace_id_random():
            bits |= _RANDOM
    elif parent.trace_flags.random_trace_id:
        bits |= _RANDOM
    span_context = SpanContext(
        trace_id,
        id_generator.generate_span_id(),
        is_remote=False,
        trace_flags=_FLAGS[bits],
        trace_state=result.trace_state,
    )
    end_metrics = tracer._tracer_metrics.start_span(parent, decision)
    if not decision.is_recording():  # type: ignore[no-untyped-call]
        return NonRecordingSpan(context=span_context)
    return LiteSpan(tracer, name, span_context, parent, kind, result.attributes, end_metrics)


class LiteSpan:
    """A recorded span's data until it ends (see the module docstring)."""

    __slots__ = (
        "_attributes",
        "_context",
        "_dropped",
        "_end_metrics",
        "_end_time",
        "_events",
        "_kind",
        "_limits",
        "_name",
        "_parent",
        "_start_time",
        "_status",
        "_tracer",
    )

    def __init__(
        self,
        tracer: Tracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: types.Attributes,
        end_metrics: Callable[[], None],
    ) -> None:
        self._tracer = tracer
        self._limits = tracer._span_limits
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        # What the SDK Span keeps in a BoundedAttributes: its dict and dropped count.
        self._attributes: dict[str, types.AnyValue] = {}
        self._dropped = 0
        if attributes:
            self._set_items(attributes)
        self._events: BoundedList[Event] | None = None
        self._status = _UNSET_STATUS
        self._end_metrics = end_metrics
        self._end_time: int | None = None
        self._start_time: int = sdk_trace.time_ns()  # type: ignore[attr-defined]

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def context_for_children(self) -> Context:
        """A context whose current span has this span's ``SpanContext``."""
        return trace_api.set_span_in_context(NonRecordingSpan(self._context), _ROOT)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        """``BoundedAttributes.__setitem__``."""
        if self._end_time is not None:
            return
        maxlen = self._limits.max_span_attributes
        if maxlen == 0:
            self._dropped += 1
            return
        if not key or not isinstance(key, str):
            _attributes_logger.warning(
                "invalid key `%s`. must be non-empty string. Dropping key from attributes.",
                key,
            )
            self._dropped += 1
            return
        kind = type(value)
        max_len = self._limits.max_span_attribute_length
        if not (
            (kind is str and (max_len is None or len(value) <= max_len))  # type: ignore[arg-type]
            or kind is int
            or kind is bool
            or kind is float
        ):
            value = _clean_attribute_value(value, max_len)
        self._put(key, value, maxlen)

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if self._end_time is None:
            self._set_items(attributes)

    def _set_items(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        """``BoundedAttributes._set_items``."""
        maxlen = self._limits.max_span_attributes
        if maxlen == 0:
            self._dropped += len(attributes)
            return
        cleaned = _clean_items(attributes, self._limits.max_span_attribute_length)
        self._dropped += len(attributes) - len(cleaned)
        put = self._put
        for key, value in cleaned.items():
            put(key, value, maxlen)

    def _put(self, key: str, value: types.AnyValue, maxlen: int | None) -> None:
        """``BoundedAttributes._setitem_locked``: a re-set key moves to the end; when full,
        the oldest goes (and is counted)."""
        held = self._attributes
        if key in held:
            del held[key]
        if maxlen is not None and len(held) >= maxlen:
            _attributes_logger.warning(
                "Attributes dict is full. Dropping the oldest key-value pair from attributes "
                "to make space for the new key-value pair.",
            )
            del held[next(iter(held))]
            self._dropped += 1
        held[key] = value

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        limits = self._limits
        bounded = BoundedAttributes(
            limits.max_event_attributes,
            attributes,
            max_value_len=limits.max_attribute_length,
            immutable=True,
        )
        event = Event(name=name, attributes=bounded, timestamp=timestamp)
        if self._end_time is None:
            events = self._events
            if events is None:
                events = self._events = BoundedList(limits.max_events)
            events.append(event)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """``Span.set_status``, for a span not yet ended: OK is final, UNSET ignored."""
        if self._end_time is not None:
            return
        if self._status.status_code is _OK:
            return
        if isinstance(status, Status):
            if status.status_code is _UNSET:
                return
            self._status = status
        elif status is not _UNSET:
            self._status = Status(status, description)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return
        if end_time is None:
            end_time = sdk_trace.time_ns()  # type: ignore[attr-defined]
        self._end_time = end = end_time
        limits = self._limits
        # The BoundedAttributes the SDK Span would hold, made immutable as Span.end does.
        attributes = BoundedAttributes(
            limits.max_span_attributes,
            None,
            immutable=True,
            max_value_len=limits.max_span_attribute_length,
        )
        attributes._dict = self._attributes
        attributes.dropped = self._dropped
        self._end_metrics()
        tracer = self._tracer
        readable = ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=tracer.resource,
            attributes=attributes,
            events=() if self._events is None else self._events,
            links=(),
            kind=self._kind,
            status=self._status,
            start_time=self._start_time,
            end_time=end,
            instrumentation_info=tracer.instrumentation_info,
            instrumentation_scope=tracer._instrumentation_scope,
        )
        tracer.span_processor.on_end(readable)
