"""A consumer's spans, from its events: the consumer driven on a fake broker (as in
test_consumer_states), its spans caught by the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial

import pika
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from common.consumer import Consumer, ConsumerSettings
from common.consumer.workers import Around, HandBack, Process, WorkerPool
from common.messages import InvalidMessage, Message
from common.tracing.client import ClientSpans
from common.tracing.consumer import ConsumerSpans
from common.tracing.messaging import FloodSpans
from tests.unit.fakes import FakeChannel, FakeClock, FakeConnection, FakeIOLoop
from tests.unit.test_consumer_states import BROKER, CountingConnection, ManualPool

Handler = Callable[[Message], Message | None]


class AroundPool(ManualPool):
    """The manual pool, given the tracer's hook: the pool's own `work_on` runs it around each
    delivery's work."""

    def __init__(self, size: int, process: Process, hand_back: HandBack, around: Around) -> None:
        WorkerPool.__init__(self, size, process, hand_back, around)
        self.submitted = []


class Traced:
    """A consumer of service_b publishing to service_c, on a fake broker, its spans in memory."""

    def __init__(self, handler: Handler) -> None:
        FakeConnection.made.clear()
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = provider.get_tracer("test")
        self.clock = FakeClock()
        self.loop = FakeIOLoop(self.clock)
        self.spans = ConsumerSpans(self.tracer, "service_b", "service_c", "service_b")
        self.pools: list[AroundPool] = []

        def pool(*args: object) -> AroundPool:
            self.pools.append(AroundPool(*args, around=self.spans.around))
            return self.pools[-1]

        connect = partial(
            CountingConnection, ioloop=self.loop, connection_class=FakeConnection, clock=self.clock
        )
        settings = ConsumerSettings("service_b", workers=1, prefetch=100, drain_timeout=20.0)
        self.consumer = Consumer(
            BROKER, settings, handler, "service_c", connect=connect, pool=pool,
            observers=(self.spans,),
        )  # fmt: skip
        self.consumer.connection.run()
        FakeConnection.made[-1].open()
        self.flood = FloodSpans(self.tracer, "service_b")

    @property
    def channel(self) -> FakeChannel:
        return FakeConnection.made[-1].channel_

    def deliver(self, properties: pika.BasicProperties | None = None) -> int:
        """A message as service_a would publish it, inside a send span of its own."""
        body, encoded = Message.first(1, 1.0).stamped("service_a", 2.0).encode()
        if properties is None:
            self.flood.publishing(encoded.message_id, "service_b", encoded)
            self.flood.confirmed(encoded.message_id)
            properties = encoded
        return self.channel.deliver(body, properties)

    def work(self) -> None:
        self.pools[-1].work()
        self.loop.run(until=self.clock.now)

    def confirm_all(self) -> None:
        self.channel.confirm(len(self.channel.published), multiple=True)
        self.loop.run(until=self.clock.now)

    def finished(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.name == name]


seen_current: list[trace.Span] = []


def stamp(message: Message) -> Message:
    seen_current.append(trace.get_current_span())
    return message.stamped("service_b", 3.0)


@pytest.fixture
def traced() -> Iterator[Traced]:
    seen_current.clear()
    yield Traced(stamp)
    FakeConnection.made.clear()


def test_one_message_gives_send_process_send_each_the_child_of_the_one_before(
    traced: Traced,
) -> None:
    tag = traced.deliver()
    traced.work()
    traced.confirm_all()
    [upstream] = traced.finished("send service_b")
    [process] = traced.finished("process service_b")
    [send] = traced.finished("send service_c")
    assert process.kind is SpanKind.CONSUMER and send.kind is SpanKind.PRODUCER
    assert process.parent is not None and process.parent.span_id == upstream.context.span_id
    assert send.parent is not None and send.parent.span_id == process.context.span_id
    assert len({upstream.context.trace_id, process.context.trace_id, send.context.trace_id}) == 1
    assert process.attributes is not None and send.attributes is not None
    assert dict(process.attributes) == {
        "messaging.system": "rabbitmq",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": "service_b",
        "messaging.rabbitmq.destination.routing_key": "service_b",
        "messaging.message.id": traced.channel.published[0].properties.message_id,
        "messaging.rabbitmq.message.delivery_tag": tag,
        "messaging.message.body.size": len(b'["seq-1","service_a"]'),
        **{"network.peer.address": "localhost", "network.peer.port": 5672},
    }
    assert send.attributes["messaging.destination.name"] == "service_c"
    assert send.attributes["messaging.rabbitmq.destination.routing_key"] == "service_c"
    # The output carries the send span's context, for service_c's process span.
    [out] = traced.channel.published
    headers = out.properties.headers
    assert headers["traceparent"].startswith(
        f"00-{send.context.trace_id:032x}-{send.context.span_id:016x}-"
    )
    # The handler ran with its delivery's process span current.
    assert [span.get_span_context().span_id for span in seen_current] == [process.context.span_id]


def test_the_process_span_lasts_until_the_input_is_settled(traced: Traced) -> None:
    traced.deliver()
    traced.work()
    assert traced.finished("process service_b") == []  # the output is not confirmed yet
    traced.confirm_all()
    [process] = traced.finished("process service_b")
    assert process.status.status_code is StatusCode.UNSET


def fails(message: Message) -> Message:
    raise RuntimeError("the database is down")


def test_a_requeued_delivery_says_why_and_its_redelivery_is_a_sibling_under_the_same_send() -> None:
    traced = Traced(fails)
    traced.deliver()
    traced.work()  # fails: requeued (first delivery, attempts left)
    [first] = traced.finished("process service_b")
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "requeued after: RuntimeError: the database is down"
    assert first.attributes is not None and first.attributes["error.type"] == "requeued"
    assert [event.name for event in first.events] == ["handler failed"]
    # The broker redelivers it, with the same headers.
    [send] = traced.finished("send service_b")
    body, encoded = Message.first(1, 1.0).stamped("service_a", 2.0).encode()
    encoded.headers = {**(encoded.headers or {}), **_context_headers(send)}
    traced.channel.deliver(body, encoded, redelivered=True)
    traced.work()
    _, second = traced.finished("process service_b")
    assert first.parent is not None and second.parent is not None
    assert first.parent.span_id == second.parent.span_id == send.context.span_id
    assert second.attributes is not None and second.attributes["rabbithole.redelivered"] is True


def _context_headers(span: ReadableSpan) -> dict[str, str]:
    return {"traceparent": f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"}


def refuses(message: Message) -> Message:
    raise InvalidMessage("the order has no customer")


def test_a_dead_lettered_delivery_says_why() -> None:
    traced = Traced(refuses)
    traced.deliver()
    traced.work()
    traced.confirm_all()  # the dead-letter copy is confirmed: the input is acked
    [process] = traced.finished("process service_b")
    assert process.status.status_code is StatusCode.ERROR
    assert process.status.description == "dead-lettered: the order has no customer"
    assert process.attributes is not None
    assert process.attributes["rabbithole.dead_letter.reason"] == "the order has no customer"
    assert process.attributes["error.type"] == "dead_lettered"
    # The dead-letter copy is no output: no send span.
    assert traced.finished("send service_c") == []


def test_the_spans_of_a_lost_channel_end_when_the_next_one_consumes(traced: Traced) -> None:
    traced.deliver()
    traced.work()  # published, not confirmed
    FakeConnection.made[-1].lose()
    traced.loop.run(until=traced.clock.now)
    FakeConnection.made[-1].open()
    lost = {span.name: span for span in traced.exporter.get_finished_spans()}
    for name in ("process service_b", "send service_c"):
        assert lost[name].status.status_code is StatusCode.ERROR
        assert lost[name].attributes is not None
        assert lost[name].attributes["error.type"] == "channel_lost"


def test_a_traceparent_that_is_not_text_starts_a_new_trace(traced: Traced) -> None:
    _, encoded = Message.first(1, 1.0).stamped("service_a", 2.0).encode()
    encoded.headers = {**(encoded.headers or {}), "traceparent": b"\xff\x00 not text"}
    traced.deliver(properties=encoded)
    traced.work()
    traced.confirm_all()
    [process] = traced.finished("process service_b")
    assert process.parent is None


def test_first_publishing_a_message_again_keeps_it_in_one_trace(traced: Traced) -> None:
    _, properties = Message.first(1, 1.0).encode()
    traced.flood.publishing("id-1", "service_a", properties)
    traced.flood.publishing("id-1", "service_a", properties)  # its channel was lost meanwhile
    traced.flood.confirmed("id-1")
    lost, sent = traced.finished("send service_b")
    assert lost.parent is None and lost.status.status_code is StatusCode.ERROR
    assert sent.parent is not None and sent.parent.span_id == lost.context.span_id
    assert properties.headers is not None
    assert properties.headers["traceparent"].split("-")[2] == f"{sent.context.span_id:016x}"


def test_a_store_write_is_a_client_span_under_the_current_one_ending_with_its_answer(
    traced: Traced,
) -> None:
    write = ClientSpans(traced.tracer, "store write", {"db.system.name": "redis"})
    answers: list[Future[None]] = [Future(), Future()]
    with traced.tracer.start_as_current_span("process service_log") as process:
        settled = [write(lambda answer=answer: answer) for answer in answers]
    assert traced.finished("store write") == []  # the store has not answered yet
    answers[0].set_result(None)
    answers[1].set_exception(ConnectionError("the store went away"))
    assert settled == answers
    ok, failed = traced.finished("store write")
    for span in (ok, failed):
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id == process.get_span_context().span_id
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "the store went away"
    assert [event.name for event in failed.events] == ["exception"]
