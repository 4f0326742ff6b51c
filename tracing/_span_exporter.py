"""The OTLP/HTTP span exporter with our encoder: the stock exporter, minus its encoding.

Usage (by ``tracing._otel``, only for ``http/protobuf``)::

    exporter = SpanExporterHttp(endpoint=url, headers=headers, compression=compression)

Why a subclass: the stock ``OTLPSpanExporter.export`` calls the SDK encoder by name, so
the one way to swap the encoder while keeping everything else (endpoint, TLS, session,
headers, compression, retries, timeout, size limit, the exporter's own metrics) is to
restate ``export`` with :class:`tracing._span_encoder.SpanEncoder` in the encoder's
place. That restatement reads private members of the stock exporter (``_shutdown``,
``_metrics``, ``_max_request_size``, ``_client``) and two private helpers of its package.
It is written against opentelemetry-exporter-otlp-proto-http 1.45.2, the version in
``requirements/lock.txt``; ``tests/tracing/test_span_exporter.py`` pins the stock
``export`` source and those members, so an upgrade fails there, loudly, before it can
change what is sent. gRPC keeps the stock exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http._common import (
    RequestPayloadTooLargeError,
    _is_request_too_large,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from tracing._span_encoder import SpanEncoder

# The stock exporter's logger, so its warnings keep their source.
_logger = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")


class SpanExporterHttp(OTLPSpanExporter):
    """``OTLPSpanExporter`` whose request body comes from :class:`SpanEncoder`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """``OTLPSpanExporter.export`` of 1.45.2, line for line, with one change:
        ``encode_spans(spans).SerializePartialToString()`` is ``self._encoder.encode``."""
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE

        with self._metrics.export_operation(len(spans)) as result:
            try:
                serialized_data = self._encoder.encode(spans)
            except Exception as error:
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE

            if _is_request_too_large(serialized_data, self._max_request_size):
                _logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds "
                    "max_request_size %d bytes.",
                    len(serialized_data),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(serialized_data)} "
                    f"bytes exceeds max_request_size "
                    f"{self._max_request_size} bytes."
                )
                return SpanExportResult.FAILURE

            export_result = self._client.export(serialized_data)
            if not export_result.success:
                result.error = export_result.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: export_result.status_code}
                    if export_result.status_code is not None
                    else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
