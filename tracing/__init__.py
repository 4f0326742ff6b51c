"""Casegate telemetry and lineage: OpenTelemetry setup, attribute names, the hash chain.

Usage::

    import tracing
    from tracing import attributes as attr

    telemetry = tracing.configure_telemetry()          # OTEL_* from the environment
    span = telemetry.server_span("POST /v1/chat/completions", scope["headers"])
    span.set(attr.CASEGATE_DECISION, "allowed")
    span.end(http_status=200)

    writer = tracing.ChainWriter("gw-1")
    event = writer.next_event("request.started", "lin_01", {}, at_ms=1795850202123)
    assert tracing.verify_chains([event]).ok

Importing this package does nothing but define names: the OpenTelemetry SDK and OTLP
exporters are imported by :func:`configure_telemetry`, and only when export is
configured. A leaf package: it imports only the standard library and OpenTelemetry.
"""

from tracing import attributes
from tracing.config import TelemetryConfigError, step_spans_enabled
from tracing.lineage import (
    ZERO_HASH,
    BrokenLink,
    ChainReport,
    ChainWriter,
    canonical_json,
    checkpoint_body,
    checkpoint_signing_bytes,
    event_hash,
    rfc3339_ms,
    verify_chains,
)
from tracing.telemetry import (
    AttemptSpan,
    AttrValue,
    ServerSpan,
    StepSpan,
    Telemetry,
    configure_telemetry,
)

__all__ = [
    "ZERO_HASH",
    "AttemptSpan",
    "AttrValue",
    "BrokenLink",
    "ChainReport",
    "ChainWriter",
    "ServerSpan",
    "StepSpan",
    "Telemetry",
    "TelemetryConfigError",
    "attributes",
    "canonical_json",
    "checkpoint_body",
    "checkpoint_signing_bytes",
    "configure_telemetry",
    "event_hash",
    "rfc3339_ms",
    "step_spans_enabled",
    "verify_chains",
]
