"""A small OTLP/HTTP receiver for the tests: what the processes export, decoded with the
opentelemetry-proto messages, kept as plain `Span`s (the wire's ids as hex, as a trace viewer
shows them).

`python -m harness.otlp_receiver PORT` runs one as a process of its own until killed, decoding
what arrives and keeping nothing: the bench's collector for its row with traces on."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as WireSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

KINDS = {
    WireSpan.SPAN_KIND_INTERNAL: "internal",
    WireSpan.SPAN_KIND_SERVER: "server",
    WireSpan.SPAN_KIND_CLIENT: "client",
    WireSpan.SPAN_KIND_PRODUCER: "producer",
    WireSpan.SPAN_KIND_CONSUMER: "consumer",
}


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a trace's root
    attributes: dict[str, object]
    error: str | None  # the status's description if the span ended in error
    events: list[str] = field(default_factory=list)


def _value(value: AnyValue) -> object:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                failed = span.status.code == Status.STATUS_CODE_ERROR
                spans.append(
                    Span(
                        service=str(resource.get("service.name", "")),
                        name=span.name,
                        kind=KINDS.get(span.kind, "unspecified"),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        error=span.status.message if failed else None,
                        events=[event.name for event in span.events],
                    )
                )
    return spans


class Receiver:
    """Spans posted to `endpoint` (OTLP/HTTP, protobuf), gathered in `spans()`."""

    def __init__(self, port: int = 0, *, keep: bool = True) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                spans = decode(body)
                if keep:
                    with receiver._lock:
                        receiver._spans.extend(spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test says what it found

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        host, port = self._server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"

    def serve(self) -> None:
        """Answer until the process ends (for a receiver of its own process)."""
        self._server.serve_forever()

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver")
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()


if __name__ == "__main__":
    Receiver(int(sys.argv[1]), keep=False).serve()
