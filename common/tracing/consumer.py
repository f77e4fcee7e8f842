"""A consumer's spans, from its events (`common.consumer.events`): an observer on the I/O thread.

Each delivery gets a CONSUMER span `process <queue>` from `Received` to `Settled`, the child of
the PRODUCER span whose context its headers carry (one trace from `first` to `last`). Its
output gets a PRODUCER span `send <next queue>` from `Publishing` (where its context goes into
the output's headers) to `Confirmed`, the child of the process span. Every span is opened with
an explicit parent, never the thread's current context: the I/O thread serves every delivery
at once. What the worker does runs with the process span current (`around`, given to the worker
pool), so that a handler's own spans (`last`'s store write) are its children.

Errors are on the process span: each failure of the handler is an event; a delivery handed
back to its queue ends `requeued`, a dead-lettered one `dead_lettered` with the reason. A
redelivery is a new process span under the same send span, marked `rabbithole.redelivered`; a
channel lost with deliveries in hand ends their spans `channel_lost` (the broker redelivers
them). A process killed outright exports nothing more: its attempt is missing from the trace,
and the redelivery's span says that there was one.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer

from common.consumer import events
from common.consumer.outcomes import Delivery, Failed
from common.tracing.messaging import end_all, fail, operation, parent_of, peer, start_send


class ConsumerSpans:
    """The spans of a consumer of `queue` publishing to `next_queue` ("": none). `routing_key`
    is the one its deliveries come with, if it has one input queue (None: keyed partitions)."""

    def __init__(
        self, tracer: Tracer, queue: str, next_queue: str, routing_key: str | None
    ) -> None:
        self._tracer = tracer
        self._queue = queue
        self._next_queue = next_queue
        self._routing_key = routing_key
        self._processing: dict[Delivery, Span] = {}
        self._sending: dict[Delivery, Span] = {}
        self._failure: dict[Delivery, str] = {}  # the latest, for a requeue's description
        self._peer: dict[str, str | int] = {}  # the node the channel is connected to

    def __call__(self, event: events.Event) -> None:
        match event:
            case events.Received(delivery):
                self._received(delivery)
            case events.HandlerFinished(delivery, Failed(reason)):
                self._failed(delivery, reason)
            case events.Publishing(delivery, routing_key, properties):
                parent = trace.set_span_in_context(self._span(delivery), Context())
                span = start_send(self._tracer, self._next_queue, routing_key, properties, parent)
                self._sending[delivery] = span
            case events.Confirmed(delivery):
                if (span := self._sending.pop(delivery, None)) is not None:
                    span.end()
            case events.DeadLettered(delivery, reason):
                span = self._span(delivery)
                span.set_attribute("rabbithole.dead_letter.reason", reason)
                fail(span, "dead_lettered", f"dead-lettered: {reason}")
            case events.Settled(delivery, acked):
                self._settled(delivery, acked)
            case events.Connected(node, again):
                self._peer = peer(node)
                if again:
                    self._lost()

    def _lost(self) -> None:
        lost = [*self._sending.values(), *self._processing.values()]
        end_all(lost, "channel_lost", "the channel was lost: the broker redelivers it")
        self._sending.clear()
        self._processing.clear()
        self._failure.clear()

    def around(self, delivery: Delivery) -> AbstractContextManager[object]:
        """The delivery's process span made current, for the worker (on its thread)."""
        span = self._processing.get(delivery)
        if span is None:
            return nullcontext()
        return trace.use_span(span, record_exception=False, set_status_on_exception=False)

    def _span(self, delivery: Delivery) -> Span:
        """The delivery's process span (one opened now if the observer came in late)."""
        span = self._processing.get(delivery)
        if span is None:
            self._received(delivery)
            span = self._processing[delivery]
        return span

    def _received(self, delivery: Delivery) -> None:
        attributes = operation(
            "process", self._queue, self._routing_key, delivery.properties.message_id
        )
        attributes.update(self._peer)
        attributes["messaging.rabbitmq.message.delivery_tag"] = delivery.tag
        attributes["messaging.message.body.size"] = len(delivery.body)
        if delivery.redelivered:
            attributes["rabbithole.redelivered"] = True
        self._processing[delivery] = self._tracer.start_span(
            f"process {self._queue}",
            context=parent_of(delivery.properties),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )

    def _failed(self, delivery: Delivery, reason: str) -> None:
        self._span(delivery).add_event("handler failed", {"reason": reason})
        self._failure[delivery] = reason

    def _settled(self, delivery: Delivery, acked: bool) -> None:
        failure = self._failure.pop(delivery, None)
        span = self._processing.pop(delivery, None)
        if span is None:
            return
        if not acked:
            fail(span, "requeued", f"requeued after: {failure or 'a failure'}")
        span.end()
