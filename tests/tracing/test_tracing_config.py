"""How the standard OTEL_* variables map to an export configuration."""

from __future__ import annotations

import pytest

from tracing import TelemetryConfigError, step_spans_enabled
from tracing.config import OtlpTarget, read_config

BASE = "http://collector:4318"


@pytest.mark.parametrize(
    ("env", "traces", "metrics"),
    [
        pytest.param({}, None, None, id="off-by-default"),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE},
            OtlpTarget("http/protobuf", f"{BASE}/v1/traces"),
            OtlpTarget("http/protobuf", f"{BASE}/v1/metrics"),
            id="base-endpoint-appends-signal-paths",
        ),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE + "/"},
            OtlpTarget("http/protobuf", f"{BASE}/v1/traces"),
            OtlpTarget("http/protobuf", f"{BASE}/v1/metrics"),
            id="trailing-slash",
        ),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/custom"},
            OtlpTarget("http/protobuf", "http://t:1/custom"),
            None,
            id="per-signal-endpoint-used-as-is",
        ),
        pytest.param(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            OtlpTarget("grpc", "http://collector:4317"),
            OtlpTarget("grpc", "http://collector:4317"),
            id="grpc-uses-base-endpoint",
        ),
        pytest.param(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": BASE,
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://m:4317",
            },
            OtlpTarget("http/protobuf", f"{BASE}/v1/traces"),
            OtlpTarget("grpc", "https://m:4317"),
            id="per-signal-protocol",
        ),
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "otlp"},
            OtlpTarget("http/protobuf", "http://localhost:4318/v1/traces"),
            None,
            id="explicit-exporter-default-endpoint",
        ),
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            OtlpTarget("grpc", "http://localhost:4317"),
            None,
            id="explicit-exporter-default-grpc-endpoint",
        ),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE, "OTEL_TRACES_EXPORTER": "none"},
            None,
            OtlpTarget("http/protobuf", f"{BASE}/v1/metrics"),
            id="traces-none",
        ),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE, "OTEL_SDK_DISABLED": "TRUE"},
            None,
            None,
            id="sdk-disabled",
        ),
    ],
)
def test_endpoints_and_protocols(
    env: dict[str, str], traces: OtlpTarget | None, metrics: OtlpTarget | None
) -> None:
    config = read_config(env)
    assert (config.traces.otlp if config.traces else None) == traces
    assert (config.metrics.otlp if config.metrics else None) == metrics


def test_console_and_lists_of_exporters() -> None:
    config = read_config(
        {"OTEL_TRACES_EXPORTER": "console, otlp", "OTEL_METRICS_EXPORTER": "console"}
    )
    assert config.traces is not None and config.traces.exporters == {"console", "otlp"}
    assert config.metrics is not None and config.metrics.exporters == {"console"}
    assert config.metrics.otlp is None


def test_headers_compression_resource_and_service_name() -> None:
    config = read_config(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": BASE,
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc, x-a=1",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-a=2",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "GZIP",
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,k8s.pod.name=gw-0",
            "OTEL_METRIC_EXPORT_INTERVAL": "15000",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
        }
    )
    assert config.service_name == "from-attrs"
    assert config.resource == {"k8s.pod.name": "gw-0"}
    assert config.traces is not None and config.traces.otlp is not None
    assert config.traces.otlp.headers == {"authorization": "Bearer abc", "x-a": "2"}
    assert config.traces.otlp.compression == "gzip"
    assert config.metrics is not None and config.metrics.otlp is not None
    assert config.metrics.otlp.headers == {"authorization": "Bearer abc", "x-a": "1"}
    assert config.metrics.otlp.compression is None
    assert config.metric_export_interval_ms == 15000
    assert (config.sampler, config.sampler_arg) == ("parentbased_traceidratio", 0.25)
    assert (
        read_config(
            {"OTEL_SERVICE_NAME": "svc", "OTEL_RESOURCE_ATTRIBUTES": "service.name=x"}
        ).service_name
        == "svc"
    )
    assert read_config({}, service_name="casegate-admin").service_name == "casegate-admin"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_METRICS_EXPORTER": "prometheus"}, "OTEL_METRICS_EXPORTER"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318"},
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_COMPRESSION": "deflate",
            },
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE, "OTEL_EXPORTER_OTLP_HEADERS": "novalue"},
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        ({"OTEL_RESOURCE_ATTRIBUTES": "=x"}, "OTEL_RESOURCE_ATTRIBUTES"),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "0"}, "OTEL_METRIC_EXPORT_INTERVAL"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(TelemetryConfigError) as caught:
        read_config(env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("ON", True), ("0", False), ("", False), (None, False)],
)
def test_step_spans_flag(value: str | None, expected: bool) -> None:
    env = {} if value is None else {"CASEGATE_TRACE_STEPS": value}
    assert step_spans_enabled(env) is expected
    assert read_config(env).trace_steps is expected


@pytest.mark.parametrize(
    ("name", "arg", "description"),
    [
        ("always_on", None, "AlwaysOnSampler"),
        ("always_off", None, "AlwaysOffSampler"),
        ("traceidratio", 0.5, "TraceIdRatioBased{0.5}"),
        ("parentbased_always_on", None, "ParentBased{root:AlwaysOnSampler"),
        ("parentbased_always_off", None, "ParentBased{root:AlwaysOffSampler"),
        ("parentbased_traceidratio", 0.1, "ParentBased{root:TraceIdRatioBased{0.1}"),
    ],
)
def test_sampler_names_map_to_sdk_samplers(name: str, arg: float | None, description: str) -> None:
    from tracing import _otel

    env = {"OTEL_TRACES_SAMPLER": name}
    if arg is not None:
        env["OTEL_TRACES_SAMPLER_ARG"] = str(arg)
    assert _otel._sampler(read_config(env)).get_description().startswith(description)
