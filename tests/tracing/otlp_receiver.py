"""A real OTLP receiver for tests: OTLP/HTTP (protobuf) or OTLP/gRPC on 127.0.0.1.

Usage::

    from tests.tracing.otlp_receiver import OtlpReceiver

    with OtlpReceiver() as receiver:              # or OtlpReceiver(protocol="grpc")
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        telemetry = configure_telemetry(env=env)
        ...
        telemetry.force_flush(); telemetry.shutdown()
        receiver.wait_for_spans(2)
        assert {s.name for s in receiver.spans()} == {...}
        assert not any(b"jane@example.com" in body for body in receiver.raw_bodies)

``raw_bodies`` holds every request body as received after content decoding (gzip,
deflate), so a test can assert that seeded personal data appears in no exported byte.
The receiver runs in background threads and answers every export with success.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

_KINDS = {
    trace_pb2.Span.SPAN_KIND_UNSPECIFIED: "UNSPECIFIED",
    trace_pb2.Span.SPAN_KIND_INTERNAL: "INTERNAL",
    trace_pb2.Span.SPAN_KIND_SERVER: "SERVER",
    trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "PRODUCER",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def decode_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [decode_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return getattr(value, which)


def decode_attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: decode_value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: str  # "SERVER", "CLIENT", "INTERNAL", ...
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    trace_state: str
    attributes: dict[str, Any]
    status: str  # "UNSET", "OK", "ERROR"
    status_message: str
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]
    scope: str
    start_ns: int = 0  # ns since the epoch
    end_ns: int = 0


@dataclass(frozen=True)
class ReceivedPoint:
    attributes: dict[str, Any]
    value: float | int | None = None  # sums and gauges
    count: int | None = None  # histograms
    sum: float | None = None
    bucket_counts: list[int] = field(default_factory=list)
    explicit_bounds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ReceivedMetric:
    name: str
    unit: str
    description: str
    kind: str  # "histogram", "sum", "gauge", ...
    points: list[ReceivedPoint]
    resource: dict[str, Any]
    scope: str


class OtlpReceiver:
    """Collects OTLP trace and metric exports sent to :attr:`url`."""

    def __init__(self, protocol: Literal["http/protobuf", "grpc"] = "http/protobuf") -> None:
        self.protocol = protocol
        self.raw_bodies: list[bytes] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self._lock = threading.Lock()
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._grpc: Any = None
        self._port = 0

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> Self:
        if self.protocol == "grpc":
            self._start_grpc()
        else:
            self._start_http()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(timeout=5)
            self._grpc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base endpoint, as for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        return f"http://127.0.0.1:{self._port}"

    # -- what arrived --------------------------------------------------------------------
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            requests = list(self.trace_requests)
        found: list[ReceivedSpan] = []
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = decode_attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            ReceivedSpan(
                                name=span.name,
                                kind=_KINDS[span.kind],
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                trace_state=span.trace_state,
                                attributes=decode_attributes(span.attributes),
                                status=_STATUS[span.status.code],
                                status_message=span.status.message,
                                events=[
                                    (event.name, decode_attributes(event.attributes))
                                    for event in span.events
                                ],
                                resource=resource,
                                scope=scope_spans.scope.name,
                                start_ns=span.start_time_unix_nano,
                                end_ns=span.end_time_unix_nano,
                            )
                        )
        return found

    def metrics(self) -> list[ReceivedMetric]:
        with self._lock:
            requests = list(self.metric_requests)
        found: list[ReceivedMetric] = []
        for request in requests:
            for resource_metrics in request.resource_metrics:
                resource = decode_attributes(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        kind = metric.WhichOneof("data") or ""
                        found.append(
                            ReceivedMetric(
                                name=metric.name,
                                unit=metric.unit,
                                description=metric.description,
                                kind=kind,
                                points=_points(metric, kind),
                                resource=resource,
                                scope=scope_metrics.scope.name,
                            )
                        )
        return found

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("OTLP receiver: condition not met in time")
            time.sleep(0.02)

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        self.wait_for(lambda: len(self.spans()) >= count, timeout)
        return self.spans()

    def wait_for_metric(self, name: str, timeout: float = 10.0) -> list[ReceivedMetric]:
        self.wait_for(lambda: any(m.name == name for m in self.metrics()), timeout)
        return [m for m in self.metrics() if m.name == name]

    # -- transports ----------------------------------------------------------------------
    def _record(self, path: str, headers: Mapping[str, str], body: bytes) -> bool:
        if path.endswith("/v1/traces") or path.endswith("TraceService/Export"):
            trace_request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            with self._lock:
                self._note(path, headers, body)
                self.trace_requests.append(trace_request)
            return True
        if path.endswith("/v1/metrics") or path.endswith("MetricsService/Export"):
            metric_request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
            with self._lock:
                self._note(path, headers, body)
                self.metric_requests.append(metric_request)
            return True
        return False

    def _note(self, path: str, headers: Mapping[str, str], body: bytes) -> None:
        self.paths.append(path)
        self.headers.append({k.lower(): v for k, v in headers.items()})
        self.raw_bodies.append(body)

    def _start_http(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                known = receiver._record(self.path, dict(self.headers.items()), body)
                self.send_response(200 if known else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._http = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _start_grpc(self) -> None:
        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self

        def metadata(context: Any) -> dict[str, str]:
            return {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                receiver._record(path, metadata(context), request.SerializeToString())
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                path = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
                receiver._record(path, metadata(context), request.SerializeToString())
                return metrics_service_pb2.ExportMetricsServiceResponse()

        server = grpc.server(ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        self._port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._grpc = server


def _points(metric: Any, kind: str) -> list[ReceivedPoint]:
    if kind == "histogram":
        return [
            ReceivedPoint(
                attributes=decode_attributes(p.attributes),
                count=p.count,
                sum=p.sum,
                bucket_counts=list(p.bucket_counts),
                explicit_bounds=list(p.explicit_bounds),
            )
            for p in metric.histogram.data_points
        ]
    if kind in ("sum", "gauge"):
        data = getattr(metric, kind)
        return [
            ReceivedPoint(
                attributes=decode_attributes(p.attributes),
                value=p.as_int if p.WhichOneof("value") == "as_int" else p.as_double,
            )
            for p in data.data_points
        ]
    return []
