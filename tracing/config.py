"""Read the standard ``OTEL_*`` variables into one closed, validated export config.

Usage::

    cfg = read_config(os.environ)
    if cfg.traces is None and cfg.metrics is None:
        ...  # telemetry off: no providers, no threads

Pure stdlib: nothing from OpenTelemetry is imported here, so deciding that export is off
costs nothing. Export is *on* for a signal only when it is asked for: an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or the per-signal ``..._TRACES_ENDPOINT`` /
``..._METRICS_ENDPOINT``) or an explicit ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``.
``none`` switches a signal off; ``OTEL_SDK_DISABLED=true`` switches everything off.

Read here: exporter kinds (``otlp``, ``console``, ``none``; comma lists allowed), protocol
(``http/protobuf`` default, ``grpc``), endpoints, headers, compression, service name,
resource attributes, sampler, the metric export interval and ``CASEGATE_TRACE_STEPS``.
Left to the SDK, which reads them from the process environment: exporter timeouts, TLS
files, batch-processor tuning (``OTEL_BSP_*``) and span limits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

Protocol = Literal["http/protobuf", "grpc"]
ExporterKind = Literal["otlp", "console"]
Signal = Literal["traces", "metrics"]

_PROTOCOLS: frozenset[str] = frozenset({"http/protobuf", "grpc"})
_EXPORTERS: frozenset[str] = frozenset({"otlp", "console", "none"})
_COMPRESSIONS: frozenset[str] = frozenset({"none", "gzip", "deflate"})
_SAMPLERS: frozenset[str] = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)
_DEFAULT_ENDPOINT = {"http/protobuf": "http://localhost:4318", "grpc": "http://localhost:4317"}
_SIGNAL_PATH = {"traces": "v1/traces", "metrics": "v1/metrics"}
_TRUE = frozenset({"1", "true", "yes", "on"})


class TelemetryConfigError(ValueError):
    """An ``OTEL_*`` or ``CASEGATE_TRACE_*`` variable holds a value we cannot use."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class OtlpTarget:
    """Where and how one signal is exported over OTLP."""

    protocol: Protocol
    endpoint: str  # full URL; for HTTP it includes the signal path
    headers: Mapping[str, str] = field(default_factory=dict)
    compression: str | None = None  # "gzip" | "deflate" | "none"; None leaves the default


@dataclass(frozen=True, slots=True)
class SignalConfig:
    exporters: frozenset[ExporterKind]
    otlp: OtlpTarget | None  # set when "otlp" is among the exporters


@dataclass(frozen=True, slots=True)
class ExportConfig:
    service_name: str
    resource: Mapping[str, str]  # from OTEL_RESOURCE_ATTRIBUTES, service.name excluded
    traces: SignalConfig | None
    metrics: SignalConfig | None
    sampler: str = "parentbased_always_on"
    sampler_arg: float | None = None
    metric_export_interval_ms: int | None = None
    trace_steps: bool = False


def step_spans_enabled(env: Mapping[str, str] | None = None) -> bool:
    """True when ``CASEGATE_TRACE_STEPS`` asks for one child span per pipeline step."""
    source = os.environ if env is None else env
    return source.get("CASEGATE_TRACE_STEPS", "").strip().lower() in _TRUE


def read_config(env: Mapping[str, str], service_name: str = "casegate") -> ExportConfig:
    """Resolve ``env`` into an :class:`ExportConfig`; raise :class:`TelemetryConfigError`."""
    resource = _parse_pairs(env, "OTEL_RESOURCE_ATTRIBUTES")
    name = _get(env, "OTEL_SERVICE_NAME") or resource.pop("service.name", None) or service_name
    resource.pop("service.name", None)
    disabled = _get(env, "OTEL_SDK_DISABLED")
    off = disabled is not None and disabled.lower() == "true"
    sampler = (_get(env, "OTEL_TRACES_SAMPLER") or "parentbased_always_on").lower()
    if sampler not in _SAMPLERS:
        raise TelemetryConfigError("OTEL_TRACES_SAMPLER", f"unsupported sampler {sampler!r}")
    return ExportConfig(
        service_name=name,
        resource=resource,
        traces=None if off else _signal(env, "traces"),
        metrics=None if off else _signal(env, "metrics"),
        sampler=sampler,
        sampler_arg=_sampler_arg(env, sampler),
        metric_export_interval_ms=_positive_int(env, "OTEL_METRIC_EXPORT_INTERVAL"),
        trace_steps=step_spans_enabled(env),
    )


def _get(env: Mapping[str, str], key: str) -> str | None:
    value = env.get(key)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _signal(env: Mapping[str, str], signal: Signal) -> SignalConfig | None:
    upper = signal.upper()
    exporter_var = f"OTEL_{upper}_EXPORTER"
    endpoint = _get(env, f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
    base = _get(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
    raw = _get(env, exporter_var)
    if raw is None:
        if endpoint is None and base is None:
            return None
        raw = "otlp"
    kinds = {part.strip().lower() for part in raw.split(",") if part.strip()}
    unknown = kinds - _EXPORTERS
    if unknown:
        raise TelemetryConfigError(exporter_var, f"unsupported exporter(s) {sorted(unknown)}")
    kinds.discard("none")
    if not kinds:
        return None
    exporters: frozenset[ExporterKind] = frozenset(k for k in ("otlp", "console") if k in kinds)
    otlp = _otlp_target(env, signal, endpoint, base) if "otlp" in exporters else None
    return SignalConfig(exporters=exporters, otlp=otlp)


def _otlp_target(
    env: Mapping[str, str], signal: Signal, endpoint: str | None, base: str | None
) -> OtlpTarget:
    upper = signal.upper()
    protocol_var = f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL"
    protocol = _get(env, protocol_var)
    if protocol is None:
        protocol_var = "OTEL_EXPORTER_OTLP_PROTOCOL"
        protocol = _get(env, protocol_var) or "http/protobuf"
    if protocol not in _PROTOCOLS:
        raise TelemetryConfigError(
            protocol_var, f"unsupported protocol {protocol!r} (use http/protobuf or grpc)"
        )
    checked: Protocol = "grpc" if protocol == "grpc" else "http/protobuf"
    endpoint_var = f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT"
    if endpoint is None:
        endpoint_var = "OTEL_EXPORTER_OTLP_ENDPOINT"
        root = base or _DEFAULT_ENDPOINT[checked]
        # OTLP/HTTP appends the signal path to the base endpoint; gRPC uses it as is.
        endpoint = root if checked == "grpc" else f"{root.rstrip('/')}/{_SIGNAL_PATH[signal]}"
    if not endpoint.startswith(("http://", "https://")):
        raise TelemetryConfigError(endpoint_var, f"endpoint must be an http(s) URL: {endpoint!r}")
    headers = _parse_pairs(env, "OTEL_EXPORTER_OTLP_HEADERS")
    headers.update(_parse_pairs(env, f"OTEL_EXPORTER_OTLP_{upper}_HEADERS"))
    compression_var = f"OTEL_EXPORTER_OTLP_{upper}_COMPRESSION"
    compression = _get(env, compression_var)
    if compression is None:
        compression_var = "OTEL_EXPORTER_OTLP_COMPRESSION"
        compression = _get(env, compression_var)
    if compression is not None:
        compression = compression.lower()
        allowed = _COMPRESSIONS - {"deflate"} if checked == "grpc" else _COMPRESSIONS
        if compression not in allowed:
            raise TelemetryConfigError(compression_var, f"unsupported compression {compression!r}")
    return OtlpTarget(
        protocol=checked,
        endpoint=endpoint,
        headers={k.lower(): v for k, v in headers.items()},
        compression=compression,
    )


def _parse_pairs(env: Mapping[str, str], variable: str) -> dict[str, str]:
    """Parse the W3C-baggage-like ``k1=v1,k2=v2`` form (values percent-decoded)."""
    raw = _get(env, variable)
    pairs: dict[str, str] = {}
    if raw is None:
        return pairs
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = unquote(key.strip())
        if not sep or not key:
            raise TelemetryConfigError(variable, "expected comma-separated key=value pairs")
        pairs[key] = unquote(value.strip())
    return pairs


def _sampler_arg(env: Mapping[str, str], sampler: str) -> float | None:
    if not sampler.endswith("traceidratio"):
        return None
    raw = _get(env, "OTEL_TRACES_SAMPLER_ARG")
    if raw is None:
        return 1.0
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise TelemetryConfigError("OTEL_TRACES_SAMPLER_ARG", f"need a ratio in [0, 1]: {raw!r}")
    return ratio


def _positive_int(env: Mapping[str, str], variable: str) -> int | None:
    raw = _get(env, variable)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise TelemetryConfigError(variable, f"need a positive integer: {raw!r}")
    return int(raw)
