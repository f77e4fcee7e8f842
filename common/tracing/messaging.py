"""Spans of messaging as OpenTelemetry's semantic conventions name them, and the W3C context in
the AMQP headers.

Followed: the messaging and RabbitMQ conventions of semantic conventions v1.27.0, span names
`{operation} {destination}` (`send service_b`, `process service_b`). One departure: every
message here goes through the default exchange, whose name is "", so `messaging.destination.name`
holds the queue (the routing key's stage), which is what the span is about.

The context travels as `traceparent`/`tracestate` headers (the W3C propagator, whatever
OTEL_PROPAGATORS says: the headers are this pipeline's contract between its processes). A header
that is not text (a hostile or foreign publisher's) is ignored: the span then starts a new trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pika
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

SEMCONV_VERSION = "1.27.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
SYSTEM = {"messaging.system": "rabbitmq"}
W3C = TraceContextTextMapPropagator()


class TextHeaders(Getter[Mapping[str, object]]):
    """Reads the headers' text values only (pika gives bytes, numbers, tables too)."""

    def get(self, carrier: Mapping[str, object], key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, object]) -> list[str]:
        return [key for key in carrier if isinstance(key, str)]


TEXT_HEADERS = TextHeaders()


def parent_of(properties: pika.BasicProperties) -> Context:
    """The context the message's headers carry (an empty one: a new trace)."""
    headers = properties.headers
    if not headers:
        return Context()
    return W3C.extract(headers, Context(), TEXT_HEADERS)


def operation(name: str, queue: str, routing_key: str | None, message_id: str | None) -> dict:
    attributes: dict[str, str] = {
        **SYSTEM,
        "messaging.operation.name": name,
        "messaging.operation.type": name,
        "messaging.destination.name": queue,
    }
    if routing_key:
        attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
    if message_id:
        attributes["messaging.message.id"] = message_id
    return attributes


def peer(node: str) -> dict[str, str | int]:
    """The broker node `host:port` as the conventions' peer attributes."""
    host, _, port = node.rpartition(":")
    if not host or not port.isdigit():
        return {"network.peer.address": node} if node else {}
    return {"network.peer.address": host, "network.peer.port": int(port)}


def start_send(
    tracer: Tracer, queue: str, routing_key: str, properties: pika.BasicProperties, parent: Context
) -> Span:
    """A PRODUCER span `send <queue>` under `parent`, its context put in `properties`' headers
    (before the publish: the headers go out with it)."""
    span = tracer.start_span(
        f"send {queue}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=operation("send", queue, routing_key, properties.message_id),
    )
    headers = dict(properties.headers or {})
    W3C.inject(headers, trace.set_span_in_context(span, Context()))
    properties.headers = headers
    return span


def fail(span: Span, error_type: str, description: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description))


def end_all(spans: Iterable[Span], error_type: str, description: str) -> None:
    for span in spans:
        fail(span, error_type, description)
        span.end()


class FloodSpans:
    """`first`'s PRODUCER spans, one per message: each starts a trace, and ends at its confirm.
    A message published again (its channel was lost before the confirm) gets a new send span,
    the child of the first one, so that the message keeps one trace."""

    def __init__(self, tracer: Tracer, queue: str) -> None:
        self._tracer = tracer
        self._queue = queue
        self._open: dict[str, Span] = {}

    def publishing(
        self, message_id: str, routing_key: str, properties: pika.BasicProperties
    ) -> None:
        parent = Context()
        earlier = self._open.pop(message_id, None)
        if earlier is not None:
            end_all((earlier,), "channel_lost", "the channel was lost before the confirm")
            parent = trace.set_span_in_context(earlier, Context())
        span = start_send(self._tracer, self._queue, routing_key, properties, parent)
        self._open[message_id] = span

    def confirmed(self, message_id: str) -> None:
        span = self._open.pop(message_id, None)
        if span is not None:
            span.end()
