"""The span and metric surface the gateway calls, and its no-op form.

Usage::

    telemetry = configure_telemetry()  # reads OTEL_*; off (no-op, no threads) when unset
    with telemetry.server_span("POST /v1/chat/completions", scope["headers"]) as span:
        span.set(attr.CASEGATE_USE_CASE, "refund_triage")
        attempt = telemetry.attempt_span(
            span, request_model="gpt-4o-mini", provider="openai",
            server_address="api.openai.com", server_port=443,
            stream=False, attempt=1, deployment="openai-primary",
        )
        attempt.finish(response_model="gpt-4o-mini-2024-07-18",
                       input_tokens=812, output_tokens=64, finish_reasons=("stop",))
        span.end(http_status=200)
    telemetry.shutdown()

The classes here *are* the disabled implementation: every method does nothing and
:class:`Telemetry` hands out shared no-op span objects, so a gateway without ``OTEL_*``
configuration pays one method call per hook and starts no threads. When export is
configured, :func:`configure_telemetry` imports ``tracing._otel`` (the SDK, and only the
OTLP exporter the configuration names) and returns its subclasses.

Failure marking is the same for server, attempt and step spans: ``fail(error_type)`` sets
the span status to ERROR and ``error.type`` (``tracing._otel``). The first failure
recorded on a span wins; calls after a span ended are ignored.

With OTLP/HTTP export, spans are encoded by ``tracing._span_encoder`` (the same bytes as
the SDK encoder, written directly) and sent by ``tracing._span_exporter``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeAlias

from tracing.config import read_config

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader

AttrValue: TypeAlias = (
    str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
)
Headers: TypeAlias = Iterable[tuple[bytes, bytes]] | Mapping[str, str]


def error_type_of(exc_type: type[BaseException]) -> str:
    """``error.type`` for an exception escaping a ``with`` block: its class name."""
    return exc_type.__qualname__


class _SpanScope:
    """Context-manager behaviour shared by the span handles: an exception escaping the
    block fails the span with the exception's class name, then the span ends."""

    __slots__ = ()

    def fail(self, error_type: str) -> None:
        """Mark the span failed: status ERROR and ``error.type`` (first call wins)."""

    def _close(self) -> None:
        """End the span if it is still open."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.fail(error_type_of(exc_type))
        self._close()


class ServerSpan(_SpanScope):
    """The SERVER span of one request. This base class is the no-op form."""

    __slots__ = ()

    @property
    def trace_id_hex(self) -> str | None:
        """The 32-hex-digit trace id, or ``None`` when tracing is off."""
        return None

    def set(self, key: str, value: AttrValue | None) -> None:
        """Set one attribute; ``None`` values are skipped."""

    def set_many(self, attrs: Mapping[str, AttrValue | None]) -> None:
        """Set several attributes; ``None`` values are skipped."""

    def event(self, name: str, attrs: Mapping[str, AttrValue] | None = None) -> None:
        """Add a span event (guardrail outcomes)."""

    def end(self, http_status: int | None = None) -> None:
        """End the span, recording ``http.response.status_code``; a 5xx status fails the
        span with ``error.type`` = the status code unless it already failed."""


class AttemptSpan(_SpanScope):
    """The CLIENT span of one provider attempt. Call exactly one of :meth:`finish` or
    :meth:`fail`; both end the span and later calls do nothing. No-op in this base."""

    __slots__ = ()

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
        """Record the response's GenAI attributes and end the span (at `end_ns`, ns
        since the epoch, when the attempt ended before this is called; else now)."""


class StepSpan(_SpanScope):
    """An INTERNAL child span for one pipeline step (only with ``CASEGATE_TRACE_STEPS``)."""

    __slots__ = ()

    def set(self, key: str, value: AttrValue | None) -> None:
        """Set one attribute; ``None`` values are skipped."""

    def end(self) -> None:
        """End the span."""


NOOP_SERVER_SPAN = ServerSpan()
NOOP_ATTEMPT_SPAN = AttemptSpan()
NOOP_STEP_SPAN = StepSpan()


class Telemetry:
    """Spans and metrics for the gateway. This base class is the disabled form."""

    enabled: bool = False
    traces_enabled: bool = False
    metrics_enabled: bool = False
    steps_enabled: bool = False

    def server_span(
        self,
        name: str,
        headers: Headers,
        attributes: Mapping[str, AttrValue] | None = None,
    ) -> ServerSpan:
        """Start the SERVER span, continuing a W3C ``traceparent`` found in ``headers``
        (ASGI ``(bytes, bytes)`` pairs or a str mapping)."""
        return NOOP_SERVER_SPAN

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
        """Start a CLIENT span ``chat {request_model}`` under ``parent``; ``start_ns``
        (``time.time_ns()``) dates it when it is started after the attempt began."""
        return NOOP_ATTEMPT_SPAN

    def step_span(self, parent: ServerSpan, name: str) -> StepSpan:
        """Start an INTERNAL step span under ``parent`` when step spans are enabled."""
        return NOOP_STEP_SPAN

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
        """Record the GenAI client metrics of one provider attempt."""

    def count(self, name: str, value: int = 1, attributes: Mapping[str, str] | None = None) -> None:
        """Add ``value`` to the counter ``name`` (see ``attributes.COUNTERS``)."""

    def record_overhead(self, seconds: float, attributes: Mapping[str, str] | None = None) -> None:
        """Record gateway overhead: request time minus provider time."""

    def force_flush(self, timeout_ms: int = 5000) -> None:
        """Export everything buffered so far."""

    def shutdown(self) -> None:
        """Flush and stop the exporters; safe to call more than once."""


DISABLED = Telemetry()


def configure_telemetry(
    service_name: str = "casegate",
    *,
    env: Mapping[str, str] | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """Build telemetry from the standard ``OTEL_*`` variables (``env``, default
    ``os.environ``). Returns the shared disabled :class:`Telemetry` when no export is
    configured and no ``metric_readers`` are given. Raises
    :class:`tracing.config.TelemetryConfigError` naming the variable on a bad value.

    ``metric_readers`` attaches extra SDK readers (for instance one that serves
    ``GET /metrics``) next to any configured exporter.
    """
    config = read_config(os.environ if env is None else env, service_name)
    if config.traces is None and config.metrics is None and not metric_readers:
        return DISABLED
    from tracing import _otel

    return _otel.build(config, resource_attributes or {}, metric_readers)
