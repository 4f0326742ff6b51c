"""Synchronous metric instruments aggregated by hand, handed to the SDK at collection.

Usage (by ``tracing._otel``, never directly)::

    streams = MetricStreams(provider, readers)    # after MeterProvider(metric_readers=...)
    duration = streams.histogram(meter.create_histogram(...))
    duration.record(0.42, key, attributes)        # == histogram.record(0.42, attributes)

Why: ``Histogram.record`` / ``Counter.add`` of the SDK (1.45.2) build a ``Measurement``
(cleaning the attributes), hash the attributes into the SDK's aggregation key, and
aggregate under two locks, for every reader. That was almost all of the metrics cost of a
gateway call. Here the caller passes a key it computed once for the attribute set, and a
measurement is a dict lookup, a ``bisect`` and a few list and float updates under one
lock. At each collection (every reader's ``collect``, including ``force_flush`` and
``shutdown``) the state gathered since the previous one is written into the SDK's own
aggregation objects, then the SDK collects as usual: temporality, start times, data
points, exemplars, resource and scope all come from the SDK.

Exactness: the SDK's own functions do everything that decides what is exported, at the
moment the SDK would: the value checks and their warnings (an invalid value goes to the
SDK instrument, which warns and drops it), the attribute cleaning and its warnings (any
attribute set the caller has not vouched for as clean goes through ``Measurement``),
the aggregation key (``_hash_attributes``), the per-storage instrument order and
per-stream data point order, the cardinality limit and its overflow point, start times
(``_get_or_create_aggregation`` on the first measurement of an attribute set, as before).
What is deferred is only the arithmetic, and it is done in the same order from the same
start values (``0``, ``inf``, ``-inf``, ``None``) as ``aggregate`` does, per SDK
aggregation and per reader, so sums are bit-identical. Each collection takes the pending
state for that reader only and the SDK's collection runs under the same lock, so a
measurement lands in exactly one collection and a delta storage's reset aggregations are
never written to afterwards. When the exemplar filter says so, the measurement is offered
to the SDK aggregation's reservoir right away, in the SDK's order. A storage whose
aggregation is not the default explicit-bucket histogram or sum (a reader preferring
another aggregation, a view) gets every measurement the SDK way, ``consume_measurement``.
``tests/tracing/test_metric_streams.py`` records random sequences both ways and compares
the collected data and the OTLP a receiver gets.

Private SDK API used (opentelemetry-sdk 1.45.2, pinned by the tests): the meter
provider's ``_measurement_consumer``, ``_sdk_config`` and ``_reader_storages``;
``MetricReader._set_collect_callback``; ``MetricReaderStorage._get_or_init_view_instrument_match``;
``_ViewInstrumentMatch`` ``_lock``, ``_view``, ``_aggregation``, ``_reset_on_collect``,
``_get_or_create_aggregation``; ``_hash_attributes``; the aggregations' ``_lock``,
``_value``, ``_sum``, ``_min``, ``_max``, ``_record_min_max``, ``_boundaries``,
``_reservoir``.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Hashable, Mapping, Sequence
from time import time_ns
from typing import Any, Final

from opentelemetry.context import Context, get_current
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal._view_instrument_match import (
    _hash_attributes,
    _ViewInstrumentMatch,
)
from opentelemetry.sdk.metrics._internal.aggregation import (
    _ExplicitBucketHistogramAggregation,
    _SumAggregation,
)
from opentelemetry.sdk.metrics._internal.exemplar import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics._internal.instrument import _Counter, _Histogram
from opentelemetry.sdk.metrics._internal.measurement import Measurement
from opentelemetry.sdk.metrics._internal.measurement_consumer import (
    SynchronousMeasurementConsumer,
)
from opentelemetry.sdk.metrics._internal.metric_reader_storage import MetricReaderStorage
from opentelemetry.sdk.metrics.export import MetricReader, MetricsData
from opentelemetry.trace import INVALID_SPAN, get_current_span

#: Bound of each stream's key -> state cache (the SDK bounds the states themselves).
KEY_CACHE: Final = 4096

_FILTERS: Final = (AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter)


def clean_attributes(attributes: Mapping[str, object] | None) -> bool:
    """Whether the SDK's cleaning of ``attributes`` changes nothing and warns of nothing:
    then a caller may record them under a precomputed key. Strict on purpose: plain
    ``str`` keys (non-empty) and values of exactly str, bool, int (int64) or float."""
    if attributes is None:
        return True
    if type(attributes) is not dict:
        return False
    for key, value in attributes.items():
        if type(key) is not str or not key:
            return False
        kind = type(value)
        if kind is int:
            if not -(2**63) <= value < 2**63:  # type: ignore[operator,unused-ignore]
                return False
        elif kind is not str and kind is not bool and kind is not float:
            return False
    return True


def str_key(attributes: Mapping[str, object] | None) -> Hashable | None:
    """A cheap key for attributes whose keys and values are all plain, non-empty-keyed
    ``str`` (the gateway's counters and overhead): the items themselves. ``None`` for
    anything else. It cannot equal an :func:`sdk_key`, which starts with ``"mapping"``."""
    if attributes is None:
        return ()
    if type(attributes) is not dict:
        return None
    for key, value in attributes.items():
        if type(key) is not str or not key or type(value) is not str:
            return None
    return tuple(attributes.items())


def sdk_key(attributes: Mapping[str, Any] | None) -> Hashable:
    """The SDK's aggregation key of clean ``attributes``: a key for :meth:`_Stream.record`
    that can never collide with another attribute set."""
    return _hash_attributes(dict(attributes) if attributes else {})


class _HistState:
    """What ``_ExplicitBucketHistogramAggregation.aggregate`` would have added since the
    last collection, starting from the values its ``collect`` resets to."""

    __slots__ = ("agg", "counts", "max", "min", "sum")

    def __init__(self, agg: Any) -> None:
        self.agg = agg
        self.counts: list[int] | None = None
        self.sum: float = 0
        self.min: float = math.inf
        self.max: float = -math.inf

    def flush(self) -> None:
        agg = self.agg
        with agg._lock:
            agg._value = self.counts
            agg._sum = self.sum
            if agg._record_min_max:
                agg._min = self.min
                agg._max = self.max
        self.counts = None
        self.sum = 0
        self.min = math.inf
        self.max = -math.inf


class _SumState:
    __slots__ = ("agg", "value")

    def __init__(self, agg: Any) -> None:
        self.agg = agg
        self.value: float | None = None

    def flush(self) -> None:
        agg = self.agg
        with agg._lock:
            agg._value = self.value
        self.value = None


class _Stream:
    """One reader storage's view match of one instrument: key -> state of the SDK
    aggregation that key's measurements go to."""

    __slots__ = ("bounds", "by_agg", "dirty", "histogram", "minmax", "states", "vim")

    def __init__(self, vim: _ViewInstrumentMatch) -> None:
        self.vim = vim
        template: Any = vim._aggregation
        self.histogram = isinstance(template, _ExplicitBucketHistogramAggregation)
        self.bounds: tuple[float, ...] = template._boundaries if self.histogram else ()
        self.minmax: bool = template._record_min_max if self.histogram else False
        self.states: dict[Hashable, Any] = {}
        self.by_agg: dict[int, Any] = {}
        self.dirty: list[Any] = []

    def resolve(self, key: Hashable, attributes: Mapping[str, Any] | None) -> Any:
        """The SDK's ``consume_measurement`` up to ``aggregate``: same copy, same key, same
        ``_get_or_create_aggregation`` (cardinality limit, overflow, start time)."""
        attrs = dict(attributes) if attributes else {}
        vim = self.vim
        with vim._lock:
            agg = vim._get_or_create_aggregation(_hash_attributes(attrs), attrs)
        state = self.by_agg.get(id(agg))
        if state is None or state.agg is not agg:
            state = _HistState(agg) if self.histogram else _SumState(agg)
            self.by_agg[id(agg)] = state
        if len(self.states) >= KEY_CACHE:
            self.states.clear()
        self.states[key] = state
        return state

    def flush(self) -> None:
        for state in self.dirty:
            state.flush()
        self.dirty.clear()

    def forget(self) -> None:
        """After a delta collection the SDK starts new aggregations."""
        self.states.clear()
        self.by_agg.clear()


def _supported(storage: MetricReaderStorage, instrument: Any) -> list[_Stream] | None:
    vims = storage._get_or_init_view_instrument_match(instrument)
    wanted = (
        _ExplicitBucketHistogramAggregation
        if isinstance(instrument, _Histogram)
        else _SumAggregation
    )
    for vim in vims:
        if vim._view._attribute_keys is not None or type(vim._aggregation) is not wanted:
            return None
    return [_Stream(vim) for vim in vims]


class FastInstrument:
    """A synchronous SDK histogram or counter, recorded through :class:`MetricStreams`."""

    __slots__ = ("_owner", "_parts", "histogram", "sdk")

    def __init__(self, owner: MetricStreams, sdk: Any) -> None:
        self._owner = owner
        self.sdk = sdk
        self.histogram = isinstance(sdk, _Histogram)
        # Built on the first measurement, as the SDK storages build theirs: per storage,
        # either its streams or the storage itself (measurements go in the SDK way).
        self._parts: list[tuple[MetricReaderStorage, list[_Stream] | None]] | None = None

    def record(
        self, value: float, key: Hashable | None, attributes: Mapping[str, Any] | None
    ) -> None:
        """Record (histogram) or add (counter) ``value``. ``key`` is :func:`sdk_key` of
        ``attributes``, given only when :func:`clean_attributes` holds for them (else
        ``None``, and they are cleaned as the SDK does, warnings included)."""
        sdk = self.sdk
        if not math.isfinite(value) or value < 0 or not sdk._is_enabled():
            sdk.record(value, attributes) if self.histogram else sdk.add(value, attributes)
            return
        owner = self._owner
        context: Context | None = None
        measurement: Measurement | None = None
        if key is None:
            context = get_current()
            measurement = Measurement(value, time_ns(), sdk, context, attributes)
            attributes = measurement.attributes
            key = _hash_attributes(dict(attributes) if attributes else {})
        sample = owner.sample(context)
        with owner.lock:
            parts = self._parts
            if parts is None:
                parts = self._init_parts()
            for storage, streams in parts:
                if streams is None:
                    if measurement is None:
                        context = context or get_current()
                        measurement = Measurement(value, time_ns(), sdk, context, attributes)
                    storage.consume_measurement(measurement, sample)
                    continue
                for stream in streams:
                    state = stream.states.get(key)
                    if state is None:
                        state = stream.resolve(key, attributes)
                    if stream.histogram:
                        counts = state.counts
                        if counts is None:
                            counts = state.counts = [0] * (len(stream.bounds) + 1)
                            stream.dirty.append(state)
                        state.sum += value
                        if stream.minmax:
                            state.min = min(state.min, value)
                            state.max = max(state.max, value)
                        counts[bisect_left(stream.bounds, value)] += 1
                    else:
                        if state.value is None:
                            state.value = 0
                            stream.dirty.append(state)
                        state.value = state.value + value
                    if sample:
                        if measurement is None:
                            context = context or get_current()
                            measurement = Measurement(value, time_ns(), sdk, context, attributes)
                        state.agg._reservoir.offer(
                            value,
                            measurement.time_unix_nano,
                            measurement.attributes,
                            measurement.context,
                        )

    def _init_parts(self) -> list[tuple[MetricReaderStorage, list[_Stream] | None]]:
        parts = [
            (storage, _supported(storage, self.sdk)) for storage in self._owner.storages().values()
        ]
        self._parts = parts
        self._owner.instruments.append(self)
        return parts


class MetricStreams:
    """The fast instruments of one meter provider and the collection hook they need."""

    def __init__(self, provider: MeterProvider, readers: Sequence[MetricReader]) -> None:
        self.lock = threading.Lock()
        self.instruments: list[FastInstrument] = []
        self._consumer = provider._measurement_consumer
        exemplar_filter = provider._sdk_config.exemplar_filter
        self._filter = exemplar_filter
        self._filter_kind = (
            "off"
            if type(exemplar_filter) is AlwaysOffExemplarFilter
            else "trace"
            if type(exemplar_filter) is TraceBasedExemplarFilter
            else "on"
        )
        for reader in readers:
            reader._set_collect_callback(self._collect)  # type: ignore[arg-type]

    @staticmethod
    def supports(provider: MeterProvider) -> bool:
        """Whether this provider is one this module knows how to feed: the SDK's
        synchronous measurement consumer and one of its three built-in exemplar filters
        (which look at the context only). ``build`` makes no other kind."""
        consumer = getattr(provider, "_measurement_consumer", None)
        config = getattr(provider, "_sdk_config", None)
        return (
            type(consumer) is SynchronousMeasurementConsumer
            and config is not None
            and type(config.exemplar_filter) in _FILTERS
            and isinstance(getattr(provider, "_metric_readers", None), Sequence)
        )

    def storages(self) -> Mapping[MetricReader, MetricReaderStorage]:
        return self._consumer._reader_storages

    def wrap(self, instrument: Any) -> FastInstrument | None:
        """The fast instrument for an SDK histogram or counter; ``None`` for anything
        else (a no-op instrument when the SDK is disabled), to be used as it is."""
        if isinstance(instrument, (_Histogram, _Counter)):
            return FastInstrument(self, instrument)
        return None

    def sample(self, context: Context | None) -> bool:
        """The exemplar filter's verdict, as ``consume_measurement`` asks it. The SDK's
        built-in filters look at the context only (value, time and attributes unused)."""
        kind = self._filter_kind
        if kind == "off":
            return False
        if context is None:
            context = get_current()
        if kind == "trace":
            span = get_current_span(context)
            if span == INVALID_SPAN:
                return False
            return bool(span.get_span_context().trace_flags.sampled)
        return True

    def _collect(self, reader: MetricReader, timeout_millis: float = 10_000) -> MetricsData | None:
        with self.lock:
            storage = self.storages().get(reader)
            own: list[_Stream] = []
            for instrument in self.instruments:
                for part_storage, streams in instrument._parts or ():
                    if part_storage is storage and streams is not None:
                        own.extend(streams)
            for stream in own:
                stream.flush()
            try:
                return self._consumer.collect(reader, timeout_millis=timeout_millis)
            finally:
                for stream in own:
                    if stream.vim._reset_on_collect:
                        stream.forget()
