"""The I/O thread's side of consuming with manual acks: deliveries in, outcomes settled.

pika is not thread-safe, so only this thread (running `ReconnectingConnection`) talks to the
broker. It receives deliveries and, as the ordering policy admits them, gives them to the worker
pool (`common.consumer.workers`); each outcome comes back here. Only here is the output
published and, once the broker has confirmed the output, the input acked (`common.consumer.acks`).
Because this thread never waits on the work, heartbeats keep flowing however long the work takes.

Each delivery remembers the channel generation it arrived on. After a reconnect, results for
older generations are dropped: the broker has already put those messages back in the queue, and
their delivery tags mean nothing (or something else) on the new channel.

What happens to an outcome: an output is published to the next queue and the input acked once
it is confirmed (a publish the broker refuses for now is sent again by `common.publisher`, the
input still in hand); a message that ends here is acked; a bad one is dead-lettered with the
reason (`common.consumer.dead_letters`), then acked; a failure goes to the ordering policy
(`common.consumer.ordering`), which requeues it, retries it here, or gives up and dead-letters
it. What was done is told as events (`common.consumer.events`) to the observers.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import pika
from pika.channel import Channel
from pika.spec import Basic

from common.connection import ReconnectingConnection
from common.consumer.channel import ChannelState
from common.consumer.dead_letters import DeadLetterCopy, send_dead_letter
from common.consumer.drain import Drain
from common.consumer.events import (
    AcksSent,
    Confirmed,
    Connected,
    DeadLettered,
    Events,
    HandlerFinished,
    Observer,
    Publishing,
    Received,
    Settled,
)
from common.consumer.ordering import Retry
from common.consumer.outcomes import DeadLetter, Delivery, Done, Failed, Forward, Handler, Outcome
from common.consumer.policies import policy_for
from common.consumer.processing import Processor
from common.consumer.settings import ConsumerSettings
from common.consumer.workers import HandBack, Process, WorkerPool
from common.nodes import node_of
from common.settings import BrokerSettings
from common.topology import Queues, input_queues

log = logging.getLogger("common.consumer")


class Consumer:
    """Consumes `settings.queue` with `handler` on `settings.workers` threads; publishes what the
    handler returns to `next_queue` (None: the handler's result must be None, the sink).

    `connect` builds the connection and `pool` the worker pool (seams for the unit tests, which
    pass fakes); `observers` are told every event (more may `events.subscribe` before `run`)."""

    def __init__(
        self,
        broker: BrokerSettings,
        settings: ConsumerSettings,
        handler: Handler,
        next_queue: str | None = None,
        *,
        connect: Callable[..., ReconnectingConnection] = ReconnectingConnection,
        pool: Callable[[int, Process, HandBack], WorkerPool] = WorkerPool,
        observers: tuple[Observer, ...] = (),
    ) -> None:
        self._broker = broker
        self._settings = settings
        self._inputs = input_queues(settings.queue, broker)
        identity = f"{settings.queue}@{settings.replica_id}"
        self._new_policy = policy_for(broker, identity)
        outputs = input_queues(next_queue, broker) if next_queue else ()
        queues = Queues(self._inputs, (*outputs, broker.dead_letter_queue))
        # basic.qos counts per consumer, and keyed mode has one per partition: each gets its
        # share, so that the process holds at most PREFETCH (quorum queues have no global qos).
        self._per_consumer = -(-settings.prefetch // len(self._inputs))
        self.connection = connect(broker, self, queues, self._per_consumer, name=identity)
        self.events = Events(observers)
        self._processor = Processor(handler, broker, settings, next_queue or "")
        hand_back = HandBack(self.connection.call_threadsafe, self._on_result)
        self._pool = pool(settings.workers, self._process, hand_back)
        self._generations = itertools.count(1)
        self._generation = 0  # read by workers: an int is swapped atomically
        self._state: ChannelState | None = None
        self._drain: Drain | None = None  # once the drain has begun

    def run(self) -> None:
        """Consume until stopped; raises `BrokerError` if the broker cannot be used."""
        self._pool.start()
        try:
            self.connection.run()
        finally:
            self._pool.stop()

    def request_stop(self) -> None:
        """Stop taking messages, finish those in hand, then close. Safe from any thread."""
        self.connection.call_threadsafe(self._begin_drain)

    # -- ChannelUser ---------------------------------------------------------------------------

    def on_channel_ready(self, channel: Channel) -> None:
        again = self._generation > 0
        self._generation = next(self._generations)
        state = self._state = ChannelState.open(
            channel,
            self._generation,
            self._new_policy(),
            self.connection,
            on_settled=self._on_settled,
            observe=self.events.emit,
        )
        channel.add_on_cancel_callback(
            lambda _frame: self.connection.reconnect("the broker cancelled our consumer")
        )
        for queue_name in self._inputs:
            arguments = state.policy.consume_arguments(queue_name)
            tag = channel.basic_consume(queue_name, self._on_message, arguments=arguments)
            state.consumer_tags.append(tag)
        settings = self._settings
        extra = {"queue": settings.queue, "workers": settings.workers}
        log.info("consuming", extra={**extra, "partitions": len(self._inputs)})
        self.events.emit(Connected(node_of(channel), again))

    def on_channel_lost(self) -> None:
        if self._state is not None:
            self._state.acks.void()
        self._state = None
        self._generation = next(self._generations)  # voids queued work from the lost channel
        if (
            self._drain is not None
        ):  # nothing left to finish: the broker redelivers what was in hand
            self.connection.stop()

    def waiting_for_work(self) -> bool:
        return self._state is not None and not self._state.acks

    # -- deliveries and outcomes ---------------------------------------------------------------

    def _on_message(
        self, channel: Channel, method: Basic.Deliver, properties: pika.BasicProperties, body: bytes
    ) -> None:
        state = self._state
        if state is None or state.channel is not channel:
            return  # a channel we have given up: its deliveries go back to the queue with it
        delivery = Delivery(
            state.generation, method.delivery_tag, method.redelivered, properties, body
        )
        state.acks.hold(delivery)
        self.events.emit(Received(delivery))
        if state.policy.admit(delivery):
            self._pool.submit(delivery)

    def _process(self, delivery: Delivery) -> Outcome | None:  # on a worker thread
        if delivery.generation != self._generation:
            return None  # from a lost channel: the broker redelivers it
        return self._processor.process(delivery)

    def _current(self, delivery: Delivery) -> ChannelState | None:
        """The channel state, if the delivery came on the channel we still have."""
        state = self._state
        if state is None or state.generation != delivery.generation:
            return None
        return state

    def _on_result(self, delivery: Delivery, outcome: Outcome, seconds: float) -> None:
        state = self._current(delivery)
        if state is None:
            return  # its channel is gone; the broker redelivers the message
        self.events.emit(HandlerFinished(delivery, outcome, seconds))
        match outcome:
            case Forward(routing_key, body, properties):
                self.events.emit(Publishing(delivery, routing_key, properties))
                state.publisher.publish(
                    routing_key, body, properties, lambda: self._forwarded(delivery)
                )
            case Done():
                self._settle(delivery, ack=True)
            case DeadLetter(reason):
                self._dead_letter(state, delivery, reason)
            case Failed(reason):
                self._after_failure(state, delivery, reason)

    def _forwarded(self, delivery: Delivery) -> None:
        self.events.emit(Confirmed(delivery))
        self._settle(delivery, ack=True)

    def _after_failure(self, state: ChannelState, delivery: Delivery, reason: str) -> None:
        extra = {"queue": self._settings.queue, "reason": reason}
        match state.policy.failed(delivery, reason):
            case DeadLetter(why):
                self._dead_letter(state, delivery, why)
            case Retry(attempt, None):
                log.warning("processing failed, requeued", extra={**extra, "attempt": attempt})
                self._settle(delivery, ack=False)
            case Retry(attempt, delay):
                log.warning(
                    "processing failed, retried in order", extra={**extra, "attempt": attempt}
                )
                self.connection.call_later(delay, lambda: self._pool.submit(delivery))

    def _dead_letter(self, state: ChannelState, delivery: Delivery, reason: str) -> None:
        send_dead_letter(
            state.publisher,
            self._broker.dead_letter_queue,
            DeadLetterCopy(delivery, reason, self._settings.queue),
            lambda: self._dead_lettered(delivery, reason),
        )

    def _dead_lettered(self, delivery: Delivery, reason: str) -> None:
        self.events.emit(DeadLettered(delivery, reason))
        self._settle(delivery, ack=True)

    def _settle(self, delivery: Delivery, *, ack: bool) -> None:
        state = self._current(delivery)
        if state is None:
            return
        following = state.policy.settled(delivery)
        if following is not None:
            self._pool.submit(following)
        if ack:
            state.acks.ack(delivery)
        else:
            state.acks.requeue(delivery)
        self.events.emit(Settled(delivery, ack))

    def _on_settled(self, acked: int) -> None:
        if acked:
            self.events.emit(AcksSent(acked))
        self.connection.note_progress()
        if self._drain is not None:
            self._drain.finish_if_done(self._state)

    # -- draining ------------------------------------------------------------------------------

    def _begin_drain(self) -> None:
        if self._drain is None:
            self._drain = Drain(self.connection, self.events, self._settings, self._per_consumer)
            self._drain.begin(self._state)
