"""Tracing's export (docs/tracing.md): the spans workers send with their
reports become OpenTelemetry spans and go over OTLP/HTTP (protobuf) to
``tracing.endpoint``, batched by opentelemetry-sdk's BatchSpanProcessor in
its own thread, so the control process never waits on the collector.

opentelemetry-sdk is the optional extra ``l7lb[tracing]``; it is imported
only when tracing is on, and its absence then stops the start with the
command that installs it."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

import structlog

from .. import __version__
from ..config import TracingSettings
from ..tracing.recorder import SpanRecord

if TYPE_CHECKING:
    from ..channel.messages import Spans

log = structlog.get_logger("l7lb.control")
QUEUE = 8192               # spans waiting for export; more are dropped by the SDK
MISSING = ("tracing is on but opentelemetry-sdk is not installed: "
           "pip install 'l7lb[tracing]' (or set tracing.enabled: false)")


class TracingUnavailable(Exception):
    pass


class TraceExport:
    def __init__(self, settings: TracingSettings) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise TracingUnavailable(MISSING) from None
        self.resource = Resource.create({
            "service.name": settings.service_name, "service.version": __version__,
            "host.name": socket.gethostname(), "process.pid": os.getpid()})
        self.processor = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=settings.endpoint, headers=settings.headers,
                             timeout=float(settings.timeout)),
            max_queue_size=QUEUE, schedule_delay_millis=1000)
        self.dropped = 0          # by workers, over their per-report bound

    def add(self, message: "Spans") -> None:
        self.dropped += message.dropped
        for record in message.records:
            for span in self._spans(record):
                self.processor.on_end(span)

    def close(self) -> None:
        """Send what is queued (within the exporter's timeout) and stop."""
        self.processor.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it untyped

    def _spans(self, record: SpanRecord) -> list[Any]:
        """The server span, and the client span under it when the request
        went upstream."""
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        trace_id = int(record.trace_id, 16)
        status = Status(StatusCode.ERROR if record.error else StatusCode.UNSET)

        def context(span_id: str) -> SpanContext:
            return SpanContext(trace_id, int(span_id, 16), is_remote=False,
                               trace_flags=TraceFlags(TraceFlags.SAMPLED))
        server = context(record.server_id)
        parent = SpanContext(trace_id, int(record.parent_id, 16), is_remote=True,
                             trace_flags=TraceFlags(TraceFlags.SAMPLED)) \
            if record.parent_id else None
        spans = [ReadableSpan(record.name, server, parent, self.resource, record.attributes,
                              kind=SpanKind.SERVER, status=status, start_time=record.start_ns,
                              end_time=record.end_ns)]
        if record.sent_ns:
            upstream = {key: value for key, value in record.attributes.items()
                        if key.startswith(("server.", "http.request.method", "l7lb."))}
            spans.append(ReadableSpan(f"{record.name} upstream", context(record.client_id),
                                      server, self.resource, upstream, kind=SpanKind.CLIENT,
                                      status=status, start_time=record.sent_ns,
                                      end_time=record.end_ns))
        return spans
