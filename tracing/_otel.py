"""The OpenTelemetry SDK behind :mod:`tracing.telemetry`, imported only when export is on.

Usage (through :func:`tracing.configure_telemetry`, never directly)::

    telemetry = _otel.build(read_config(os.environ), {}, ())

Providers are private to the returned object, not installed as the global ones, so
several instances can live side by side (tests) and nothing else in the process starts
exporting by accident. Only the W3C trace-context propagator is honoured on the way in;
baggage is ignored because it may carry personal data.
"""

from __future__ import annotations

import atexit
import importlib
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tracing import attributes as attr
from tracing._lite_spans import LiteSpan, LiteTracer, SpanLike
from tracing._metric_streams import (
    FastInstrument,
    MetricStreams,
    clean_attributes,
    sdk_key,
    str_key,
)
from tracing.config import ExportConfig, OtlpTarget
from tracing.telemetry import (
    NOOP_ATTEMPT_SPAN,
    NOOP_SERVER_SPAN,
    NOOP_STEP_SPAN,
    AttemptSpan,
    AttrValue,
    Headers,
    ServerSpan,
    StepSpan,
    Telemetry,
)

if TYPE_CHECKING:
    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression

_ERROR = Status(StatusCode.ERROR)
_ROOT = Context()
_PROPAGATOR = TraceContextTextMapPropagator()
_SCOPE = "casegate"
#: Bound of the per-combination caches of metric attribute dicts.
_ATTRIBUTE_SETS = 1024


def _mark_failed(span: SpanLike, error_type: str) -> None:
    """The one place a span becomes an error: status ERROR plus ``error.type``. No status
    description, because exception messages may carry request content."""
    span.set_attribute(attr.ERROR_TYPE, error_type)
    span.set_status(_ERROR)


class OtelServerSpan(ServerSpan):
    __slots__ = ("_context", "_ended", "_failed", "_span")

    def __init__(self, span: SpanLike) -> None:
        self._span = span
        self._context: Context | None = None
        self._ended = False
        self._failed = False

    @property
    def trace_id_hex(self) -> str | None:
        return format(self._span.get_span_context().trace_id, "032x")

    @property
    def context(self) -> Context:
        """A context whose current span is this one, for children."""
        if self._context is None:
            span = self._span
            self._context = (
                span.context_for_children()
                if isinstance(span, LiteSpan)
                else trace.set_span_in_context(span, _ROOT)  # type: ignore[arg-type]
            )
        return self._context

    def set(self, key: str, value: AttrValue | None) -> None:
        if value is not None and not self._ended:
            self._span.set_attribute(key, value)

    def set_many(self, attrs: Mapping[str, AttrValue | None]) -> None:
        if self._ended:
            return
        span = self._span
        for key, value in attrs.items():
            if value is not None:
                span.set_attribute(key, value)

    def event(self, name: str, attrs: Mapping[str, AttrValue] | None = None) -> None:
        if not self._ended:
            self._span.add_event(name, attrs)

    def fail(self, error_type: str) -> None:
        if not self._failed and not self._ended:
            self._failed = True
            _mark_failed(self._span, error_type)

    def end(self, http_status: int | None = None) -> None:
        if self._ended:
            return
        if http_status is not None:
            self._span.set_attribute(attr.HTTP_RESPONSE_STATUS_CODE, http_status)
            if http_status >= 500:
                self.fail(str(http_status))
        self._ended = True
        self._span.end()

    def _close(self) -> None:
        self.end()


class OtelAttemptSpan(AttemptSpan):
    __slots__ = ("_done", "_span")

    def __init__(self, span: SpanLike) -> None:
        self._span = span
        self._done = False

    def finish(
        self,
        *,
        response_model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        finish_reasons: Sequence[str] = (),
        ttfc_s: float | None = None,
        end_ns: int | None = None,
    ) -> None:
        if self._done:
            return
        self._done = True
        # One SDK call for all of them, in the order they were set one by one before.
        attrs: dict[str, AttrValue] = {}
        if response_model is not None:
            attrs[attr.GEN_AI_RESPONSE_MODEL] = response_model
        if input_tokens is not None:
            attrs[attr.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
        if output_tokens is not None:
            attrs[attr.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
        if finish_reasons:
            attrs[attr.GEN_AI_RESPONSE_FINISH_REASONS] = tuple(finish_reasons)
        if ttfc_s is not None:
            attrs[attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc_s
        span = self._span
        if attrs:
            span.set_attributes(attrs)
        span.end(end_ns)

    def fail(self, error_type: str) -> None:
        if self._done:
            return
        self._done = True
        _mark_failed(self._span, error_type)
        self._span.end()

    def _close(self) -> None:
        if not self._done:
            self._done = True
            self._span.end()


class OtelStepSpan(StepSpan):
    __slots__ = ("_done", "_span")

    def __init__(self, span: SpanLike) -> None:
        self._span = span
        self._done = False

    def set(self, key: str, value: AttrValue | None) -> None:
        if value is not None and not self._done:
            self._span.set_attribute(key, value)

    def fail(self, error_type: str) -> None:
        if not self._done:
            _mark_failed(self._span, error_type)
            self.end()

    def end(self) -> None:
        if not self._done:
            self._done = True
            self._span.end()

    def _close(self) -> None:
        self.end()


def _trace_headers(headers: Headers) -> dict[str, str] | None:
    """Pick ``traceparent``/``tracestate`` out of ASGI header pairs or a str mapping."""
    parent: str | None = None
    state: list[str] = []
    if isinstance(headers, Mapping):
        parent = headers.get("traceparent")
        value = headers.get("tracestate")
        if parent is None:  # a plain dict is case-sensitive; Starlette's Headers is not
            for key, value in headers.items():
                lowered = key.lower()
                if lowered == "traceparent":
                    parent = value
                elif lowered == "tracestate":
                    state.append(value)
        elif value is not None:
            state.append(value)
    else:
        for raw_key, raw_value in headers:
            # ASGI lowercases header names.
            if raw_key == b"traceparent":
                parent = raw_value.decode("latin-1")
            elif raw_key == b"tracestate":
                state.append(raw_value.decode("latin-1"))
    if parent is None:
        return None
    carrier = {"traceparent": parent}
    if state:
        carrier["tracestate"] = ",".join(state)
    return carrier


class _Instruments:
    """The metric instruments, and (``fast``) their :class:`FastInstrument` twins, which
    record the same measurements at a fraction of the cost (see
    ``tracing._metric_streams``). A twin is ``None`` when the SDK gave no SDK instrument
    (``OTEL_SDK_DISABLED``); the instrument is then used as it is."""

    __slots__ = (
        "counters",
        "duration",
        "fast_counters",
        "fast_duration",
        "fast_overhead",
        "fast_tokens",
        "fast_ttfc",
        "lock",
        "meter",
        "overhead",
        "streams",
        "tokens",
        "ttfc",
    )

    def __init__(self, provider: MeterProvider, *, fast: bool = True) -> None:
        self.meter = meter = provider.get_meter(_SCOPE)
        self.streams = (
            MetricStreams(provider, provider._metric_readers)
            if fast and MetricStreams.supports(provider)
            else None
        )
        self.duration: Histogram = meter.create_histogram(
            attr.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=attr.DURATION_BUCKETS,
        )
        self.tokens: Histogram = meter.create_histogram(
            attr.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=attr.TOKEN_BUCKETS,
        )
        self.ttfc: Histogram = meter.create_histogram(
            attr.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=attr.DURATION_BUCKETS,
        )
        self.overhead: Histogram = meter.create_histogram(
            attr.METRIC_GATEWAY_OVERHEAD,
            unit="s",
            description="Request time spent in the gateway: total minus provider time.",
            explicit_bucket_boundaries_advisory=attr.OVERHEAD_BUCKETS,
        )
        self.counters: dict[str, Counter] = {
            name: meter.create_counter(name, unit=unit, description=description)
            for name, (unit, description) in attr.COUNTERS.items()
        }
        self.fast_duration = self._fast(self.duration)
        self.fast_tokens = self._fast(self.tokens)
        self.fast_ttfc = self._fast(self.ttfc)
        self.fast_overhead = self._fast(self.overhead)
        self.fast_counters: dict[str, FastInstrument | None] = {
            name: self._fast(counter) for name, counter in self.counters.items()
        }
        self.lock = threading.Lock()

    def _fast(self, instrument: Histogram | Counter) -> FastInstrument | None:
        return None if self.streams is None else self.streams.wrap(instrument)

    def counter(self, name: str) -> Counter:
        found = self.counters.get(name)
        if found is None:
            with self.lock:
                found = self.counters.get(name)
                if found is None:
                    found = self.meter.create_counter(name, unit="1")
                    self.fast_counters[name] = self._fast(found)
                    self.counters[name] = found
        return found


class OtelTelemetry(Telemetry):
    def __init__(
        self,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        *,
        steps: bool,
        fast_metrics: bool = True,
        fast_spans: bool = True,
    ) -> None:
        self.enabled = True
        self.traces_enabled = tracer_provider is not None
        self.metrics_enabled = meter_provider is not None
        self.steps_enabled = steps and tracer_provider is not None
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer = None if tracer_provider is None else tracer_provider.get_tracer(_SCOPE)
        # Spans started without the SDK Span where the set-up allows (tracing._lite_spans);
        # fast_spans=False keeps the SDK's start_span (the tests' reference path).
        self._lite = None if self._tracer is None or not fast_spans else LiteTracer(self._tracer)
        self._metrics = (
            None if meter_provider is None else _Instruments(meter_provider, fast=fast_metrics)
        )
        # (provider, models, address, port, error) -> the attribute dicts record_operation
        # passes; the SDK copies what it is given, so one dict per combination serves.
        self._operation_attrs: dict[tuple[object, ...], _OperationAttrs] = {}
        self._shut = False
        atexit.register(self.shutdown)

    def _start(
        self,
        name: str,
        context: Context,
        kind: SpanKind,
        attributes: Mapping[str, AttrValue] | None,
        start_time: int | None = None,
    ) -> SpanLike:
        lite = self._lite
        if lite is not None:
            return lite.start(name, context, kind, attributes, start_time)
        assert self._tracer is not None
        return self._tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_time
        )

    def server_span(
        self,
        name: str,
        headers: Headers,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> ServerSpan:
        if self._tracer is None:
            return NOOP_SERVER_SPAN
        carrier = _trace_headers(headers)
        context = _ROOT if carrier is None else _PROPAGATOR.extract(carrier, _ROOT)
        return OtelServerSpan(self._start(name, context, SpanKind.SERVER, attributes))

    def attempt_span(
        self,
        parent: ServerSpan,
        *,
        request_model: str,
        provider: str,
        server_address: str | None,
        server_port: int | None,
        stream: bool,
        attempt: int,
        deployment: str,
        start_ns: int | None = None,
    ) -> AttemptSpan:
        if self._tracer is None:
            return NOOP_ATTEMPT_SPAN
        attrs: dict[str, AttrValue] = {
            attr.GEN_AI_OPERATION_NAME: attr.GEN_AI_OPERATION_CHAT,
            attr.GEN_AI_PROVIDER_NAME: provider,
            attr.GEN_AI_REQUEST_MODEL: request_model,
            attr.GEN_AI_REQUEST_STREAM: stream,
            attr.CASEGATE_ATTEMPT: attempt,
            attr.CASEGATE_DEPLOYMENT: deployment,
        }
        if server_address is not None:
            attrs[attr.SERVER_ADDRESS] = server_address
        if server_port is not None:
            attrs[attr.SERVER_PORT] = server_port
        span = self._start(
            f"{attr.GEN_AI_OPERATION_CHAT} {request_model}",
            _parent_context(parent),
            SpanKind.CLIENT,
            attrs,
            start_ns,
        )
        return OtelAttemptSpan(span)

    def step_span(self, parent: ServerSpan, name: str) -> StepSpan:
        if not self.steps_enabled or self._tracer is None:
            return NOOP_STEP_SPAN
        span = self._start(
            name, _parent_context(parent), SpanKind.INTERNAL, {attr.CASEGATE_STEP: name}
        )
        return OtelStepSpan(span)

    def record_operation(
        self,
        *,
        duration_s: float,
        provider: str,
        request_model: str,
        response_model: str | None,
        error_type: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        ttfc_s: float | None,
        server_address: str | None = None,
        server_port: int | None = None,
    ) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        key = (
            provider,
            request_model,
            response_model,
            server_address,
            server_port,
            type(server_port),  # so that a port of True never shares 1's entry
            error_type,
        )
        attrs = self._operation_attrs.get(key)
        if attrs is None:
            attrs = _operation_attrs(
                provider, request_model, response_model, server_address, server_port, error_type
            )
            if len(self._operation_attrs) >= _ATTRIBUTE_SETS:
                self._operation_attrs.clear()
            self._operation_attrs[key] = attrs
        keys = attrs.keys
        fast = metrics.fast_duration
        if fast is not None:
            fast.record(duration_s, keys[0], attrs.duration)
        else:
            metrics.duration.record(duration_s, attrs.duration)
        fast = metrics.fast_tokens
        if input_tokens is not None:
            if fast is not None:
                fast.record(input_tokens, keys[1], attrs.input_tokens)
            else:
                metrics.tokens.record(input_tokens, attrs.input_tokens)
        if output_tokens is not None:
            if fast is not None:
                fast.record(output_tokens, keys[2], attrs.output_tokens)
            else:
                metrics.tokens.record(output_tokens, attrs.output_tokens)
        if ttfc_s is not None:
            fast = metrics.fast_ttfc
            if fast is not None:
                fast.record(ttfc_s, keys[3], attrs.base)
            else:
                metrics.ttfc.record(ttfc_s, attrs.base)

    def count(self, name: str, value: int = 1, attributes: Mapping[str, str] | None = None) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        counter = metrics.counter(name)
        fast = metrics.fast_counters.get(name)
        if fast is not None:
            fast.record(value, str_key(attributes), attributes)
        else:
            counter.add(value, attributes)

    def record_overhead(self, seconds: float, attributes: Mapping[str, str] | None = None) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        fast = metrics.fast_overhead
        if fast is not None:
            fast.record(seconds, str_key(attributes), attributes)
        else:
            metrics.overhead.record(seconds, attributes)

    def force_flush(self, timeout_ms: int = 5000) -> None:
        if self._shut:
            return
        if self._tracer_provider is not None:
            self._tracer_provider.force_flush(timeout_ms)
        if self._meter_provider is not None:
            self._meter_provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        atexit.unregister(self.shutdown)
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        if self._meter_provider is not None:
            self._meter_provider.shutdown()


class _OperationAttrs(NamedTuple):
    base: Mapping[str, AttrValue]
    duration: Mapping[str, AttrValue]
    input_tokens: Mapping[str, AttrValue]
    output_tokens: Mapping[str, AttrValue]
    #: For :meth:`FastInstrument.record`: the SDK aggregation key of duration,
    #: input_tokens, output_tokens and base, or ``None`` for one the SDK would clean.
    keys: tuple[object, object, object, object]


def _operation_attrs(
    provider: str,
    request_model: str,
    response_model: str | None,
    server_address: str | None,
    server_port: int | None,
    error_type: str | None,
) -> _OperationAttrs:
    """The attribute sets of one provider attempt's GenAI client metrics."""
    base: dict[str, AttrValue] = {
        attr.GEN_AI_OPERATION_NAME: attr.GEN_AI_OPERATION_CHAT,
        attr.GEN_AI_PROVIDER_NAME: provider,
        attr.GEN_AI_REQUEST_MODEL: request_model,
    }
    if response_model is not None:
        base[attr.GEN_AI_RESPONSE_MODEL] = response_model
    if server_address is not None:
        base[attr.SERVER_ADDRESS] = server_address
    if server_port is not None:
        base[attr.SERVER_PORT] = server_port
    duration = base if error_type is None else {**base, attr.ERROR_TYPE: error_type}
    input_tokens = {**base, attr.GEN_AI_TOKEN_TYPE: attr.GEN_AI_TOKEN_TYPE_INPUT}
    output_tokens = {**base, attr.GEN_AI_TOKEN_TYPE: attr.GEN_AI_TOKEN_TYPE_OUTPUT}
    keys = tuple(
        sdk_key(attrs) if clean_attributes(attrs) else None
        for attrs in (duration, input_tokens, output_tokens, base)
    )
    return _OperationAttrs(
        base=base,
        duration=duration,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        keys=(keys[0], keys[1], keys[2], keys[3]),
    )


def _parent_context(parent: ServerSpan) -> Context:
    return parent.context if isinstance(parent, OtelServerSpan) else _ROOT


def build(
    config: ExportConfig,
    resource_attributes: Mapping[str, str],
    metric_readers: Sequence[MetricReader],
) -> OtelTelemetry:
    resource = Resource(
        {
            "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry",
            "telemetry.sdk.version": sdk_version,
            **config.resource,
            "service.name": config.service_name,
            **resource_attributes,
        }
    )
    tracer_provider: TracerProvider | None = None
    if config.traces is not None:
        tracer_provider = TracerProvider(
            sampler=_sampler(config), resource=resource, shutdown_on_exit=False
        )
        if "otlp" in config.traces.exporters and config.traces.otlp is not None:
            exporter = _span_exporter(config.traces.otlp)
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        if "console" in config.traces.exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    readers = list(metric_readers)
    if config.metrics is not None:
        interval = config.metric_export_interval_ms
        if "otlp" in config.metrics.exporters and config.metrics.otlp is not None:
            metric_exporter = _metric_exporter(config.metrics.otlp)
            readers.append(PeriodicExportingMetricReader(metric_exporter, interval))
        if "console" in config.metrics.exporters:
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(), interval))
    meter_provider = (
        MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
        if readers
        else None
    )
    return OtelTelemetry(tracer_provider, meter_provider, steps=config.trace_steps)


def _sampler(config: ExportConfig) -> Sampler:
    ratio = 1.0 if config.sampler_arg is None else config.sampler_arg
    root: Sampler
    if config.sampler.endswith("always_off"):
        root = ALWAYS_OFF
    elif config.sampler.endswith("traceidratio"):
        root = TraceIdRatioBased(ratio)
    else:
        root = ALWAYS_ON
    return ParentBased(root) if config.sampler.startswith("parentbased_") else root


def _span_exporter(target: OtlpTarget) -> SpanExporter:
    """Import and build only the exporter the configuration names (gRPC is heavy). Over
    HTTP, the stock exporter with our own encoder (see ``tracing._span_exporter``)."""
    headers = dict(target.headers) or None
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(
            endpoint=target.endpoint, headers=headers, compression=_grpc_compression(target)
        )
    from tracing._span_exporter import SpanExporterHttp

    return SpanExporterHttp(
        endpoint=target.endpoint, headers=headers, compression=_http_compression(target)
    )


def _metric_exporter(target: OtlpTarget) -> MetricExporter:
    headers = dict(target.headers) or None
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(
            endpoint=target.endpoint, headers=headers, compression=_grpc_compression(target)
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(
        endpoint=target.endpoint, headers=headers, compression=_http_compression(target)
    )


def _grpc_compression(target: OtlpTarget) -> Any:
    if target.compression is None:
        return None
    # grpcio ships no type stubs; the exporter wants its ``grpc.Compression`` enum.
    grpc = importlib.import_module("grpc")
    return grpc.Compression.Gzip if target.compression == "gzip" else grpc.Compression.NoCompression


def _http_compression(target: OtlpTarget) -> HttpCompression | None:
    from opentelemetry.exporter.otlp.proto.http import Compression

    return None if target.compression is None else Compression(target.compression)
