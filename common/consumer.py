"""Consuming with manual acks: worker threads do the work, one I/O thread talks to the broker.

pika is not thread-safe, so the threads never touch it. The I/O thread (running
`ReconnectingConnection`) receives deliveries and puts them on a queue; `WORKERS` threads take
them, decode and validate the message and run the handler; each result goes back to the I/O
thread through `call_threadsafe`. Only there is the output published and, once the broker has
confirmed the output, the input acked. Because the I/O thread never waits on the work, heartbeats
keep flowing however long the work takes.

Each delivery remembers the channel generation it arrived on. After a reconnect, results for
older generations are dropped: the broker has already put those messages back in the queue, and
their delivery tags mean nothing (or something else) on the new channel.

Outcomes of the handler:
- returns a Message: publish it to the next queue, ack the input once confirmed;
- returns None: ack (the message ends here);
- raises InvalidMessage (or the body does not decode): dead-letter with the reason, then ack;
- raises anything else: requeue for another try, and dead-letter with the error on the
  DELIVERY_LIMIT-th delivery. Quorum queues count deliveries (on RabbitMQ 3.x every return
  counts, a crash's too); classic queues count nothing, so there a failure on a redelivered
  message, whatever brought it back, is the last.

On SIGTERM the consumer is cancelled and every message in hand is finished: handing unstarted
ones back would count as a delivery against the limit.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pika
from pika.channel import Channel
from pika.spec import Basic

from common.connection import ReconnectingConnection, describe
from common.messages import InvalidMessage, Message
from common.publisher import ConfirmedPublisher
from common.settings import BrokerSettings, Env, SettingsError

log = logging.getLogger(__name__)

Handler = Callable[[Message], Message | None]


@dataclass(frozen=True)
class ConsumerSettings:
    queue: str
    workers: int
    prefetch: int
    drain_timeout: float

    @classmethod
    def from_env(
        cls, env: Env, broker: BrokerSettings, *, default_queue: str, default_workers: int
    ) -> ConsumerSettings:
        queue = env.queue_name("RABBITMQ_QUEUE", default_queue)
        if queue == broker.dead_letter_queue:
            raise SettingsError(
                "RABBITMQ_QUEUE", queue, "a queue other than DEAD_LETTER_QUEUE (it would loop)"
            )
        return cls(
            queue=queue,
            workers=env.integer("WORKERS", default_workers, minimum=1, maximum=256),
            # Unacked messages the broker lets this process hold: those being worked on, those
            # waiting for a worker, and those whose output awaits its confirm.
            prefetch=env.integer("PREFETCH", 100, minimum=1, maximum=65535),
            drain_timeout=env.number("DRAIN_TIMEOUT", 20.0, minimum=0.0, maximum=3600.0),
        )


@dataclass(eq=False)
class Delivery:
    generation: int
    tag: int
    redelivered: bool
    properties: pika.BasicProperties
    body: bytes


@dataclass(frozen=True)
class Forward:
    """The output, already encoded by the worker: the I/O thread only sends it."""

    body: bytes
    properties: pika.BasicProperties


@dataclass(frozen=True)
class Done:
    pass


@dataclass(frozen=True)
class DeadLetter:
    reason: str


@dataclass(frozen=True)
class Failed:
    reason: str


Outcome = Forward | Done | DeadLetter | Failed


@dataclass
class _ChannelState:
    """What is valid only for the life of one channel."""

    channel: Channel
    publisher: ConfirmedPublisher
    generation: int
    consumer_tag: str | None = None
    # Deliveries not yet acked or nacked, by delivery tag: ascending, as the broker numbers them.
    unsettled: dict[int, Delivery] = field(default_factory=dict)
    to_ack: set[int] = field(default_factory=set)
    ack_flush_scheduled: bool = False


class Consumer:
    def __init__(
        self,
        broker: BrokerSettings,
        settings: ConsumerSettings,
        handler: Handler,
        next_queue: str | None = None,
    ) -> None:
        self._broker = broker
        self._settings = settings
        self._handler = handler
        self._next_queue = next_queue
        queues = [settings.queue, *([next_queue] if next_queue else []), broker.dead_letter_queue]
        self.connection = ReconnectingConnection(broker, self, queues, settings.prefetch)
        self._work: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        # Results travel back in a deque; a worker wakes the I/O thread only when no wake-up
        # is pending already, so a burst of results costs one wake-up, not one each.
        self._results: deque[tuple[Delivery, Outcome]] = deque()
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._generations = itertools.count(1)
        self._generation = 0  # read by workers: an int is swapped atomically
        self._state: _ChannelState | None = None
        self._draining = False

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until stopped; raises `BrokerError` if the broker cannot be used."""
        threads = [
            threading.Thread(target=self._worker, name=f"worker-{n}", daemon=True)
            for n in range(self._settings.workers)
        ]
        for thread in threads:
            thread.start()
        try:
            self.connection.run()
        finally:
            # Workers still busy hold only void work now (its channel is closed): they are
            # daemon threads and need not be waited for.
            for _ in threads:
                self._work.put(None)

    def request_stop(self) -> None:
        """Stop taking messages, finish those in hand, then close. Safe from any thread."""
        self.connection.call_threadsafe(self._drain)

    # -- ChannelUser ---------------------------------------------------------------------------

    def on_channel_ready(self, channel: Channel) -> None:
        self._generation = next(self._generations)
        publisher = ConfirmedPublisher(channel, self.connection.reconnect)
        self._state = _ChannelState(channel, publisher, self._generation)
        channel.add_on_cancel_callback(
            lambda _frame: self.connection.reconnect("the broker cancelled our consumer")
        )
        self._state.consumer_tag = channel.basic_consume(self._settings.queue, self._on_message)
        log.info(
            "consuming",
            extra={"queue": self._settings.queue, "workers": self._settings.workers},
        )

    def on_channel_lost(self) -> None:
        self._state = None
        self._generation = next(self._generations)  # voids queued work from the lost channel
        if self._draining:  # nothing left to finish: the broker redelivers what was in hand
            self.connection.stop()

    # -- I/O thread ----------------------------------------------------------------------------

    def _on_message(
        self,
        _channel: Channel,
        method: Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        assert self._state is not None
        delivery = Delivery(
            self._state.generation, method.delivery_tag, method.redelivered, properties, body
        )
        self._state.unsettled[delivery.tag] = delivery
        self._work.put(delivery)

    def _current(self, delivery: Delivery) -> _ChannelState | None:
        """The channel state, if the delivery came on the channel we still have."""
        state = self._state
        if state is None or state.generation != delivery.generation:
            return None
        return state

    def _on_results(self) -> None:
        with self._wake_lock:
            self._wake_pending = False
        while self._results:
            self._on_outcome(*self._results.popleft())

    def _on_outcome(self, delivery: Delivery, outcome: Outcome) -> None:
        state = self._current(delivery)
        if state is None:
            return  # its channel is gone; the broker redelivers the message
        match outcome:
            case Forward(body, properties):
                state.publisher.publish(
                    self._next_queue or "",
                    body,
                    properties,
                    lambda failure: self._after_forward(delivery, failure),
                )
            case Done():
                self._settle(delivery, ack=True)
            case DeadLetter(reason):
                self._dead_letter(state, delivery, reason)
            case Failed(reason):
                self._retry_or_dead_letter(state, delivery, reason)

    def _retry_or_dead_letter(self, state: _ChannelState, delivery: Delivery, reason: str) -> None:
        attempt = self._attempt(delivery)
        if attempt >= self._attempt_limit():
            self._dead_letter(state, delivery, f"failed on delivery {attempt}: {reason}")
            return
        log.warning(
            "processing failed, requeued",
            extra={"queue": self._settings.queue, "reason": reason, "attempt": attempt},
        )
        self._settle(delivery, ack=False)

    def _after_forward(self, delivery: Delivery, failure: str | None) -> None:
        state = self._current(delivery)
        if state is None:
            return
        if failure is None:
            self._settle(delivery, ack=True)
        else:
            self._retry_or_dead_letter(state, delivery, f"output not accepted: {failure}")

    def _after_dead_letter(self, delivery: Delivery, failure: str | None) -> None:
        if failure is not None:
            log.error(
                "the dead-letter queue did not accept the message; input requeued",
                extra={"queue": self._settings.queue, "reason": failure},
            )
        self._settle(delivery, ack=failure is None)

    def _dead_letter(self, state: _ChannelState, delivery: Delivery, reason: str) -> None:
        log.warning(
            "dead-lettered",
            extra={
                "queue": self._settings.queue,
                "reason": reason,
                "message_id": _printable(delivery.properties.message_id),
            },
        )
        state.publisher.publish(
            self._broker.dead_letter_queue,
            delivery.body,
            self._dead_letter_properties(delivery, reason),
            lambda failure: self._after_dead_letter(delivery, failure),
        )

    def _dead_letter_properties(self, delivery: Delivery, reason: str) -> pika.BasicProperties:
        """The original's properties, plus why and where it failed, in `x-error-*` headers."""
        error = {
            "x-error-reason": reason,
            "x-error-queue": self._settings.queue,
            "x-error-at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        original = delivery.properties.headers
        properties = pika.BasicProperties(
            content_type=_printable(delivery.properties.content_type),
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=_printable(delivery.properties.message_id),
            headers={**(original if isinstance(original, dict) else {}), **error},
        )
        try:
            properties.encode()
        except Exception:
            # pika decodes some header types it cannot encode again (floats): drop the originals
            # rather than fail to dead-letter.
            properties.headers = error
        return properties

    def _attempt(self, delivery: Delivery) -> int:
        count = (delivery.properties.headers or {}).get("x-delivery-count")
        if isinstance(count, int):
            return count + 1
        return 2 if delivery.redelivered else 1

    def _attempt_limit(self) -> int:
        return self._broker.delivery_limit if self._broker.queue_type == "quorum" else 2

    def _settle(self, delivery: Delivery, *, ack: bool) -> None:
        state = self._current(delivery)
        if state is None:
            return
        if ack:
            state.to_ack.add(delivery.tag)
            if not state.ack_flush_scheduled:
                state.ack_flush_scheduled = True
                self.connection.call_later(0, lambda: self._flush_acks(state))
            return
        state.channel.basic_nack(delivery.tag, requeue=True)
        del state.unsettled[delivery.tag]
        self._finish_drain_if_done()

    def _flush_acks(self, state: _ChannelState) -> None:
        """Send the acks gathered since the last flush: one `multiple` ack for the run of oldest
        deliveries that are all done (the usual case), single acks for the rest."""
        state.ack_flush_scheduled = False
        if state is not self._state:
            return  # the channel is gone, and its delivery tags with it
        run = []
        for tag in state.unsettled:
            if tag not in state.to_ack:
                break
            run.append(tag)
        if run:
            state.channel.basic_ack(run[-1], multiple=True)
        for tag in run:
            del state.unsettled[tag]
        for tag in state.to_ack.difference(run):
            state.channel.basic_ack(tag)
            del state.unsettled[tag]
        state.to_ack.clear()
        self._finish_drain_if_done()

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        state = self._state
        if state is None:
            self.connection.stop()
            return
        if state.consumer_tag:
            state.channel.basic_cancel(state.consumer_tag)
        log.info("stopping: finishing messages in hand", extra={"in_hand": len(state.unsettled)})
        self.connection.call_later(self._settings.drain_timeout, self._drain_timed_out)
        self._finish_drain_if_done()

    def _finish_drain_if_done(self) -> None:
        if self._draining and (self._state is None or not self._state.unsettled):
            self.connection.stop()

    def _drain_timed_out(self) -> None:
        if self._state is not None and not self.connection.stopping:
            log.warning(
                "drain timed out; the broker redelivers what was not finished",
                extra={"unfinished": len(self._state.unsettled)},
            )
            self.connection.stop()

    # -- worker threads ------------------------------------------------------------------------

    def _worker(self) -> None:
        while (delivery := self._work.get()) is not None:
            if delivery.generation != self._generation:
                continue
            self._results.append((delivery, self._process(delivery)))
            with self._wake_lock:
                if self._wake_pending:
                    continue  # the I/O thread has yet to run: it will see this result too
                self._wake_pending = True
            self.connection.call_threadsafe(self._on_results)

    def _process(self, delivery: Delivery) -> Outcome:
        try:
            message = Message.decode(
                delivery.body, delivery.properties, self._broker.max_body_bytes
            )
            output = self._handler(message)
        except InvalidMessage as error:
            return DeadLetter(str(error))
        except Exception as error:
            return Failed(describe(error))
        return Done() if output is None else Forward(*output.encode())


def _printable(value: object) -> str | None:
    return value if isinstance(value, str) and value.isprintable() else None
