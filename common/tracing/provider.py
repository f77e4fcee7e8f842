"""The OpenTelemetry SDK, set up for one process: a batch span processor over OTLP/HTTP.

Spans go to a queue and a background thread posts them in batches, so the pipeline never waits
on the collector: one that is slow or gone costs dropped spans (the processor's queue is
bounded), never a slower or stopped pipeline. What goes wrong with the export is told in one
line when it starts and one when it mends (`ReportingExporter`), not a line (or a traceback) per
batch: the SDK's own log lines are kept from the process's log, and the last of them is quoted.

On exit the spans still queued are flushed, for at most FLUSH_ON_EXIT seconds: a collector that
does not answer must not hold the process's stop (nor its SIGTERM) for the exporter's timeouts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from common.tracing.settings import TraceSettings

log = logging.getLogger("common.tracing")

# Seconds the last spans may take to leave at exit: a few round trips to a collector that
# answers; well inside the 10 s a container is given between SIGTERM and SIGKILL.
FLUSH_ON_EXIT = 3.0


class LastLine(logging.Handler):
    """Keeps the SDK's latest log line, to quote it, instead of letting every one through."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.line = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.line = record.getMessage().splitlines()[0][:300]


class ReportingExporter(SpanExporter):
    """`exporter`, its failures told once per outage, in one line each way."""

    def __init__(self, exporter: SpanExporter, endpoint: str, sdk_log: LastLine) -> None:
        self._exporter = exporter
        self._endpoint = endpoint
        self._sdk_log = sdk_log
        self._failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._exporter.export(spans)
        if result is SpanExportResult.SUCCESS and self._failing:
            self._failing = False
            log.info("traces are exported again", extra={"endpoint": self._endpoint})
        elif result is not SpanExportResult.SUCCESS and not self._failing:
            self._failing = True
            log.warning(
                "traces cannot be exported: spans are dropped until the collector answers "
                "(check OTEL_EXPORTER_OTLP_ENDPOINT)",
                extra={"endpoint": self._endpoint, "error": self._sdk_log.line},
            )
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class Traces:
    """The process's tracer provider, exporting to `settings.endpoint`."""

    def __init__(self, settings: TraceSettings, schema_url: str) -> None:
        sdk_log = self._sdk_log = LastLine()
        sdk_logger = logging.getLogger("opentelemetry")
        sdk_logger.handlers[:] = [sdk_log]
        sdk_logger.propagate = False
        self._endpoint = settings.endpoint
        exporter = OTLPSpanExporter(endpoint=settings.endpoint)
        self.provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: settings.service_name})
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(ReportingExporter(exporter, settings.endpoint, sdk_log))
        )
        self.tracer = self.provider.get_tracer("rabbitholemq", schema_url=schema_url)
        log.info(
            "exporting traces",
            extra={"service": settings.service_name, "endpoint": settings.endpoint},
        )

    def shutdown(self) -> None:
        """Flush what is queued and stop, giving up after FLUSH_ON_EXIT seconds."""
        closing = threading.Thread(target=self.provider.shutdown, name="traces-flush", daemon=True)
        closing.start()
        closing.join(FLUSH_ON_EXIT)
        if closing.is_alive():
            log.warning(
                f"traces: the last spans were not flushed within {FLUSH_ON_EXIT:g} s; they are "
                "dropped (check OTEL_EXPORTER_OTLP_ENDPOINT)",
                extra={"endpoint": self._endpoint, "error": self._sdk_log.line},
            )
