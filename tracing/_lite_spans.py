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
OTLP. Restating the SDK steps below that were still calls (the sampler's decision, id
generation, ``SpanContext``, the event and end-of-span objects, the batch processor's
``on_end``) took the spans' share down by about 0.12 M more per call (issue #10).

Exactness: :func:`start_span` is ``opentelemetry.sdk.trace.Tracer.start_span`` 1.45.2,
step for step and in the same order: the parent's ``SpanContext`` from the context, the
tracer's enabled check, a trace id from the tracer's id generator for a root, the
tracer's sampler's decision, the same trace flags (sampled, random trace id from the id
generator or the parent), a span id from the id generator, the sampler's trace state,
the tracer's own span metrics, and the start time from the SDK's ``time_ns`` (looked up
in the SDK module at each call, so a test that replaces it replaces it for both). Where
the SDK object is one of its own kinds, what its method would do is done inline: the
decision of ``ParentBased``, ``StaticSampler`` and ``TraceIdRatioBased`` (the delegate
chosen by the parent's remote and sampled flags; the static decision or the trace id
against the bound; the parent's trace state), ``RandomIdGenerator``'s draws from the
``random`` module (looked up at each call too), ``SpanContext.__new__``'s tuple, and no
call of ``NoOpTracerMetrics``; any other sampler is asked with the same arguments, any
other id generator called. ``tests/tracing/test_lite_spans.py`` pins the source of every
SDK function restated here. A span the sampler does not record is the SDK's own
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
``BoundedAttributes`` (built field by field as their constructors set them when every
pair fits), kept in a list while the span is open, and its status follows
``Span.set_status``'s rules. At :meth:`end` it makes the ``ReadableSpan``
``Span._readable_span`` would make (fields set in its constructor's order) and hands it
to the tracer's processors as ``SynchronousMultiSpanProcessor.on_end`` does, with a
``BatchSpanProcessor``'s ``on_end`` done inline. The events go into that span as a
``BoundedList`` of the span's bound only when they overflowed it; within the bound (and
for links, always empty) they are a tuple: every reader sees the same tuple from
``events`` and a dropped count of 0, as from a ``BoundedList`` that dropped nothing.

What is skipped, and why that is safe: the processors' ``on_start`` and ``_on_ending``,
which only :class:`BatchSpanProcessor` and :class:`SimpleSpanProcessor` of the SDK may
be behind the tracer for this module to be used (their hooks do nothing; any other
processor gets the SDK ``Span``, see :class:`LiteTracer`); and the
span's lock, which guarded against concurrent mutation from several threads, while each
of our spans is used by one request's task. The parent is a ``NonRecordingSpan`` with
the parent's ``SpanContext`` where the SDK path had the parent's SDK ``Span``; so only
the SDK's own samplers, which read nothing else of it, are accepted.
``tests/tracing/test_lite_spans.py`` drives random operations through both paths (with
simple and batch processors, seeded and random ids) and compares the exported spans field
by field and as OTLP bytes.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
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
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import (
    INVALID_SPAN,
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
)
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.span import DEFAULT_TRACE_STATE
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

__all__ = ["LiteSpan", "LiteTracer", "SpanLike", "start_span"]

#: The four trace flag combinations ``Tracer.start_span`` can produce.
_FLAGS: Final = tuple(TraceFlags(bits) for bits in range(4))
_SAMPLED: Final = TraceFlags.SAMPLED
_RANDOM: Final = TraceFlags.RANDOM_TRACE_ID
#: Processors whose ``on_start`` and ``_on_ending`` do nothing.
_QUIET_PROCESSORS: Final = (BatchSpanProcessor, SimpleSpanProcessor)
_RECORD_AND_SAMPLE: Final = Decision.RECORD_AND_SAMPLE
_RECORD_ONLY: Final = Decision.RECORD_ONLY
_DROP: Final = Decision.DROP
_INVALID_SPAN_CONTEXT: Final = INVALID_SPAN.get_span_context()
_TRACE_ID_MAX: Final = 2**128 - 1
_SPAN_ID_MAX: Final = 2**64 - 1
_tuple_new: Final = tuple.__new__
_OK: Final = StatusCode.OK
_ROOT: Final = Context()
#: What a span's status is until set (``Span`` takes ``ReadableSpan``'s default).
_UNSET_STATUS: Final = Status(StatusCode.UNSET)
_UNSET: Final = StatusCode.UNSET


_new: Final = object.__new__
_allocate_lock: Final = threading.Lock

#: The logger ``BoundedAttributes`` warns through.
_attributes_logger: Final = logging.getLogger("opentelemetry.attributes")


#: Element types ``_clean_attribute_value`` returns as they are inside a sequence (a str
#: only within the length limit; ``None`` too: it is in the SDK's first ``isinstance``).
_KEPT_IN_SEQUENCE: Final = frozenset({str, int, bool, float, bytes, type(None)})


def _clean_sequence(value: list[object] | tuple[object, ...], max_len: int | None) -> object:
    """``_clean_attribute_value(value, max_len)`` for a list or tuple: the SDK returns
    ``tuple(clean(v) for v in value)``, which for elements it keeps as they are is
    ``tuple(value)``; anything else (a long str, a nested sequence) goes through it."""
    for item in value:
        kind = type(item)
        if kind not in _KEPT_IN_SEQUENCE or (
            kind is str and max_len is not None and len(item) > max_len  # type: ignore[arg-type]
        ):
            return _clean_attribute_value(value, max_len)  # type: ignore[arg-type]
    return tuple(value)


def _clean_items(
    attributes: Mapping[str, types.AttributeValue], max_len: int | None
) -> dict[str, types.AnyValue]:
    """``_clean_attribute_value(attributes, max_len)`` for a mapping: the same dict, in the
    same order. A valid key with a str value within ``max_len``, or an int, bool or float
    value, is kept as the SDK function keeps it (as it is), and a list or tuple value is
    cleaned by :func:`_clean_sequence`; anything else goes through the SDK function
    itself, one pair at a time, which is how it handles pairs."""
    cleaned: dict[str, types.AnyValue] = {}
    for key, value in attributes.items():
        if type(key) is str and key:
            kind = type(value)
            if kind is str:
                if max_len is not None and len(value) > max_len:  # type: ignore[arg-type]
                    value = _clean_attribute_value(value, max_len)
            elif kind is list or kind is tuple:
                value = _clean_sequence(value, max_len)  # type: ignore[arg-type,assignment]
            elif kind is not int and kind is not bool and kind is not float:
                value = _clean_attribute_value(value, max_len)
            cleaned[key] = value
        else:
            cleaned.update(_clean_attribute_value({key: value}, max_len))
    return cleaned


def _event_attributes(
    maxlen: int | None, attributes: types.Attributes, max_len: int | None
) -> BoundedAttributes:
    """``BoundedAttributes(maxlen, attributes, max_value_len=max_len, immutable=True)``.
    When every pair fits (``0 < len(attributes) <= maxlen``), what its ``_set_items``
    makes of them is the cleaned dict itself, in order (its keys are distinct, so no
    pair moves or drops), and the dropped count is what cleaning dropped: the same
    object is built field by field around :func:`_clean_items`. Anything else goes
    through the constructor."""
    if (
        not attributes
        or (maxlen is not None and not 0 < len(attributes) <= maxlen)
        or (max_len is not None and max_len < 0)
    ):
        return BoundedAttributes(maxlen, attributes, max_value_len=max_len, immutable=True)
    cleaned = _clean_items(attributes, max_len)
    bounded: BoundedAttributes = _new(BoundedAttributes)
    # The fields BoundedAttributes.__init__ sets, in its order.
    bounded._dict = cleaned
    bounded.maxlen = maxlen
    bounded.dropped = len(attributes) - len(cleaned)
    bounded.max_value_len = max_len
    bounded._lock = _allocate_lock()
    bounded._immutable = True
    return bounded


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
        start_time: int | None = None,
    ) -> SpanLike:
        tracer = self.tracer
        if self._supported():
            assert isinstance(tracer, Tracer)
            return start_span(tracer, name, context, kind, attributes, start_time)
        return tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_time
        )


def start_span(
    tracer: Tracer,
    name: str,
    context: Context,
    kind: SpanKind,
    attributes: types.Attributes,
    start_time: int | None = None,
) -> SpanLike:
    """``tracer.start_span(name, context=context, kind=kind, attributes=attributes,
    start_time=start_time)`` for a tracer :class:`LiteTracer` accepts."""
    parent_span_context = _current_span_context(context)
    if parent_span_context is not None and not isinstance(parent_span_context, SpanContext):
        raise TypeError("parent_span_context must be a SpanContext or None.")
    if not tracer._tracer_config.is_enabled:  # Tracer._is_enabled()
        return NonRecordingSpan(context=parent_span_context)  # type: ignore[arg-type]
    id_generator = tracer.id_generator
    random_ids = type(id_generator) is RandomIdGenerator
    parent: SpanContext | None
    if parent_span_context is None or not parent_span_context.is_valid:
        parent = None
        if random_ids:  # RandomIdGenerator.generate_trace_id()
            trace_id = random.getrandbits(128)
            while trace_id == INVALID_TRACE_ID:
                trace_id = random.getrandbits(128)
        else:
            trace_id = id_generator.generate_trace_id()
    else:
        parent = parent_span_context
        trace_id = parent.trace_id
    sampler = tracer.sampler
    decision = (
        _decide(sampler, parent, trace_id)
        if attributes is None or type(attributes) is dict
        else None
    )
    span_attributes: types.Attributes
    if decision is None:
        result = sampler.should_sample(context, trace_id, name, kind, attributes, ())
        decision = result.decision
        trace_state = result.trace_state
        span_attributes = result.attributes
    else:
        # What SamplingResult would hold: the parent's trace state (_get_parent_trace_state)
        # and, for a recorded span, a read-only view of the same attributes.
        trace_state = None if parent is None else parent.trace_state
        span_attributes = attributes
    bits = _SAMPLED if decision is _RECORD_AND_SAMPLE else 0  # Decision.is_sampled()
    if parent is None:
        if random_ids or id_generator.is_trace_id_random():
            bits |= _RANDOM
    elif parent.trace_flags.random_trace_id:
        bits |= _RANDOM
    if random_ids:  # RandomIdGenerator.generate_span_id()
        span_id = random.getrandbits(64)
        while span_id == INVALID_SPAN_ID:
            span_id = random.getrandbits(64)
    else:
        span_id = id_generator.generate_span_id()
    # SpanContext(trace_id, span_id, is_remote=False, trace_flags=..., trace_state=...),
    # as its __new__ builds the tuple.
    span_context: SpanContext = _tuple_new(
        SpanContext,
        (
            trace_id,
            span_id,
            False,
            _FLAGS[bits],
            DEFAULT_TRACE_STATE if trace_state is None else trace_state,
            INVALID_TRACE_ID < trace_id <= _TRACE_ID_MAX
            and INVALID_SPAN_ID < span_id <= _SPAN_ID_MAX,
        ),
    )
    metrics = tracer._tracer_metrics
    end_metrics = (
        None if type(metrics) is NoOpTracerMetrics else metrics.start_span(parent, decision)
    )
    if decision is not _RECORD_AND_SAMPLE and decision is not _RECORD_ONLY:
        return NonRecordingSpan(context=span_context)  # Decision.is_recording() is false
    return LiteSpan(
        tracer, name, span_context, parent, kind, span_attributes, end_metrics, start_time
    )


def _current_span_context(context: Context) -> SpanContext | None:
    """``trace_api.get_current_span(context).get_span_context()``, looked up directly for
    the contexts this module sees (a ``Context`` holding no span or a
    ``NonRecordingSpan``)."""
    if type(context) is Context:
        span = context.get(_SPAN_KEY)
        if span is None:
            return _INVALID_SPAN_CONTEXT  # INVALID_SPAN's
        if type(span) is NonRecordingSpan:
            return span.get_span_context()
    return trace_api.get_current_span(context).get_span_context()


def _decide(sampler: Sampler, parent: SpanContext | None, trace_id: int) -> Decision | None:
    """The decision ``sampler.should_sample`` makes for a span whose valid parent is
    ``parent`` (``None`` for a root), when the sampler is one of the SDK's own kinds
    (``ParentBased`` choosing its delegate as it does, ``StaticSampler``,
    ``TraceIdRatioBased``); ``None`` for any other, which is then asked itself."""
    if type(sampler) is ParentBased:
        if parent is None:
            sampler = sampler._root
        elif parent.is_remote:
            sampler = (
                sampler._remote_parent_sampled
                if parent.trace_flags.sampled
                else sampler._remote_parent_not_sampled
            )
        else:
            sampler = (
                sampler._local_parent_sampled
                if parent.trace_flags.sampled
                else sampler._local_parent_not_sampled
            )
    kind = type(sampler)
    if kind is StaticSampler:
        return sampler._decision  # type: ignore[attr-defined,no-any-return]
    if kind is TraceIdRatioBased:
        if trace_id & sampler.TRACE_ID_LIMIT < sampler.bound:  # type: ignore[attr-defined]
            return _RECORD_AND_SAMPLE
        return _DROP
    return None


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
        end_metrics: Callable[[], None] | None,
        start_time: int | None = None,
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
        self._events: list[Event] | None = None
        self._status = _UNSET_STATUS
        self._end_metrics = end_metrics
        self._end_time: int | None = None
        self._start_time: int = (
            sdk_trace.time_ns() if start_time is None else start_time  # type: ignore[attr-defined]
        )

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
        held = self._attributes
        if key in held or (maxlen is not None and len(held) >= maxlen):
            self._put(key, value, maxlen)
        else:
            held[key] = value  # what _put comes to for a new key with room

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
        held = self._attributes
        if (maxlen is None or len(held) + len(cleaned) <= maxlen) and held.keys().isdisjoint(
            cleaned
        ):
            # What the puts below come to when no key is re-set and nothing is dropped.
            held.update(cleaned)
            return
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
        bounded = _event_attributes(
            limits.max_event_attributes, attributes, limits.max_attribute_length
        )
        # Event(name=name, attributes=bounded, timestamp=timestamp): the fields its
        # __init__ (and EventBase's) set, in that order, the clock read where it reads it.
        event: Event = _new(Event)
        event._name = name
        event._timestamp = sdk_trace.time_ns() if timestamp is None else timestamp  # type: ignore[attr-defined]
        event._attributes = bounded
        if self._end_time is None:
            events = self._events
            if events is None:
                self._events = [event]
            else:
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
        # The BoundedAttributes the SDK Span would hold, made immutable as Span.end does:
        # the fields its __init__ sets, in that order, holding the span's dict and count.
        attributes: BoundedAttributes = _new(BoundedAttributes)
        attributes._dict = self._attributes
        attributes.maxlen = limits.max_span_attributes
        attributes.dropped = self._dropped
        attributes.max_value_len = limits.max_span_attribute_length
        attributes._lock = _allocate_lock()
        attributes._immutable = True
        if self._end_metrics is not None:
            self._end_metrics()
        tracer = self._tracer
        resource = tracer.resource
        readable: ReadableSpan
        if resource is None:  # not from a TracerProvider: the constructor's default
            readable = ReadableSpan(self._name, resource=None)
        else:
            readable = _new(ReadableSpan)
        # ReadableSpan(name=..., ...) as Span._readable_span calls it: the fields its
        # __init__ sets, in that order.
        readable._name = self._name
        readable._context = self._context
        readable._kind = self._kind
        readable._instrumentation_info = tracer.instrumentation_info
        readable._instrumentation_scope = tracer._instrumentation_scope
        readable._parent = self._parent
        readable._start_time = self._start_time
        readable._end_time = end
        readable._attributes = attributes
        readable._events = self._bounded_events(limits.max_events)
        readable._links = ()
        if resource is not None:
            readable._resource = resource
        readable._status = self._status
        # SynchronousMultiSpanProcessor.on_end, with BatchSpanProcessor.on_end inlined.
        multi = tracer.span_processor
        if type(multi) is not SynchronousMultiSpanProcessor:
            multi.on_end(readable)
            return
        for processor in multi._span_processors:
            if type(processor) is BatchSpanProcessor:
                if self._context.trace_flags.sampled:
                    processor._batch_processor.emit(readable)
            else:
                processor.on_end(readable)

    def _bounded_events(self, maxlen: int | None) -> Sequence[Event]:
        """The span's events as the SDK ``Span``'s ``BoundedList`` of ``maxlen`` would hold
        them. Within the bound nothing was dropped, and every reader (``events``, a
        ``tuple`` of them; ``dropped_events``, 0 for anything but a ``BoundedList``) sees
        the same in a tuple; past it, the list itself, appended to as the span did."""
        events = self._events
        if events is None:
            return ()
        if maxlen is None or len(events) <= maxlen:
            return tuple(events)
        bounded: BoundedList[Event] = BoundedList(maxlen)
        for event in events:
            bounded.append(event)
        return bounded
