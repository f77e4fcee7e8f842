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

Outcomes of the handler (or of the Future it returns: a handler that waits on something outside,
such as `last` on its store, hands the wait to whoever resolves the Future, and the delivery is
settled when it resolves, with no worker thread held):
- returns a Message: publish it to the next queue, ack the input once confirmed (a publish the
  broker refuses for now is sent again by `common.publisher`, the input still in hand);
- returns None: ack (the message ends here);
- raises InvalidMessage, or the message does not decode, or its history did not come through
  the stages before this queue in order (`common.topology.stages_before`): dead-letter with the
  reason, then ack;
- raises anything else: requeue for another try, and dead-letter with the error on the
  DELIVERY_LIMIT-th delivery. Quorum queues count deliveries (on RabbitMQ 3.x every return
  counts, a crash's too); classic queues count nothing, so there a failure on a redelivered
  message, whatever brought it back, is the last.

With ORDERING=keyed the consumer reads every partition of its stage (`common.topology`), each a
queue with a single active consumer. Replicas of a stage subscribe to every partition with a
consumer priority that hashes their identity with the partition (rendezvous hashing): the broker
makes the highest one active, so the partitions spread over the replicas, and when one goes its
partitions pass to the next highest. (Quorum queues honour priorities for single active
consumers from RabbitMQ 3.13; 3.10 makes the first subscriber active for all of them.) Inside
the process, deliveries of one key wait in a lane behind the one in work: two messages of a key
are never worked on at once, and their outputs are published in the order they arrived, while
different keys use every worker; the next message of a key starts once the one before it is
settled. A failure is retried in place rather than requeued (a requeued message would come back
behind the rest of its key), up to DELIVERY_LIMIT attempts. PREFETCH is shared among the
partitions' consumers.

A dead letter is the original body with the original's properties, plus why, where and when it
failed in `x-error-*` headers. The original headers come along only while they are small
(MAX_CARRIED_HEADERS): a copy must always fit in the broker's frame, or the dead-lettering itself
would fail on every redelivery.

On SIGTERM the consumer is cancelled and every message in hand is finished, as is every delivery
the broker sent before its Cancel-Ok: handing any of them back would count as a delivery against
the limit. In keyed mode nothing is cancelled (the next replica would become active at once and
take later messages of keys still in work here): what is in work is finished, what waits behind
its key is held unstarted, and the process ends without closing its connection, so that the
broker returns what it held to the head of each partition before the next replica takes over.
The "stopped" line counts what was finished and what was handed back (held, or left at
DRAIN_TIMEOUT).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import socket
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pika
import pika.exceptions
from pika.channel import Channel
from pika.spec import Basic

from common.connection import ReconnectingConnection
from common.frames import undecodable_reason
from common.messages import InvalidMessage, Message
from common.publisher import ConfirmedPublisher
from common.retry import describe, retry_delay
from common.settings import BrokerSettings, Env, SettingsError
from common.topology import consumer_priority, input_queues, route, stages_before

log = logging.getLogger(__name__)

Result = Message | None
# A handler's answer: the output (None: the message ends here), or, for a handler that waits on
# something outside (a store), a Future of it, so that no worker thread waits along with it.
Handler = Callable[[Message], Result | Future[Result]]
# Bounds on a dead letter's properties: the reason, where and when it failed, and the original
# headers while they are small come to under 4 KiB, far inside the broker's frame (RabbitMQ's
# default frame_max is 128 KiB), so that the copy can always be published.
MAX_CARRIED_HEADERS = 2048  # bytes of the original's headers carried over; more are dropped
MAX_REASON = 1000  # bytes (UTF-8) of x-error-reason, cut at a character


@dataclass(frozen=True)
class ConsumerSettings:
    queue: str
    workers: int
    prefetch: int
    drain_timeout: float
    replica_id: str = ""  # this replica of the stage, among others: its connection name, and
    # (keyed mode) what its consumer priorities hash; the host name and process id by default

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
            replica_id=env.text("REPLICA_ID", f"{socket.gethostname()}/{os.getpid()}"),
        )


@dataclass(eq=False)
class Delivery:
    generation: int
    tag: int
    redelivered: bool
    properties: pika.BasicProperties
    body: bytes
    lane: str = ""  # keyed mode: the message's key (or id): one delivery of a lane at a time
    retries: int = 0  # keyed mode: failed attempts retried in place


@dataclass(frozen=True)
class Forward:
    """The output, already encoded and routed by the worker: the I/O thread only sends it."""

    routing_key: str
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
    consumer_tags: list[str] = field(default_factory=list)
    # Deliveries not yet acked or nacked, by delivery tag: ascending, as the broker numbers them.
    unsettled: dict[int, Delivery] = field(default_factory=dict)
    # Keyed mode: a lane per key with a delivery in work, holding the ones waiting behind it.
    lanes: dict[str, deque[Delivery]] = field(default_factory=dict)
    to_ack: set[int] = field(default_factory=set)
    ack_flush_scheduled: bool = False
    cancelled: bool = False  # the drain has cancelled the consumer
    cancel_ok_pending: bool = False  # deliveries may still come until the broker's Cancel-Ok
    after_cancel: int = 0  # deliveries the broker sent before it saw the cancel

    def held(self) -> int:
        """Keyed mode: deliveries waiting in lanes behind their key's delivery in work."""
        return sum(len(waiting) for waiting in self.lanes.values())


class Consumer:
    """Consumes `settings.queue` with `handler` on `settings.workers` threads; publishes what the
    handler returns to `next_queue` (None: the handler's result must be None, the sink).

    `connect` builds the connection (a seam for the unit tests, which pass a fake)."""

    def __init__(
        self,
        broker: BrokerSettings,
        settings: ConsumerSettings,
        handler: Handler,
        next_queue: str | None = None,
        *,
        connect: Callable[..., ReconnectingConnection] = ReconnectingConnection,
    ) -> None:
        self._broker = broker
        self._settings = settings
        self._handler = handler
        self._next_queue = next_queue
        self._stages_before = stages_before(settings.queue)
        self._keyed = broker.ordering == "keyed"
        self._inputs = input_queues(settings.queue, broker)
        self._identity = f"{settings.queue}@{settings.replica_id}"
        outputs = input_queues(next_queue, broker) if next_queue else ()
        queues = [*self._inputs, *outputs, broker.dead_letter_queue]
        # basic.qos counts per consumer, and keyed mode has one per partition: each gets its
        # share, so that the process holds at most PREFETCH (quorum queues have no global qos).
        self._per_consumer = -(-settings.prefetch // len(self._inputs))
        self.connection = connect(broker, self, queues, self._per_consumer, name=self._identity)
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
        self._finished_in_drain = 0

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
        publisher = ConfirmedPublisher(
            channel, self.connection.reconnect, self.connection.call_later
        )
        self._state = _ChannelState(channel, publisher, self._generation)
        channel.add_on_cancel_callback(
            lambda _frame: self.connection.reconnect("the broker cancelled our consumer")
        )
        for queue_name in self._inputs:
            priority = consumer_priority(self._identity, queue_name)
            arguments = {"x-priority": priority} if self._keyed else None
            tag = channel.basic_consume(queue_name, self._on_message, arguments=arguments)
            self._state.consumer_tags.append(tag)
        log.info(
            "consuming",
            extra={
                "queue": self._settings.queue,
                "workers": self._settings.workers,
                **({"partitions": len(self._inputs)} if self._keyed else {}),
            },
        )

    def on_channel_lost(self) -> None:
        self._state = None
        self._generation = next(self._generations)  # voids queued work from the lost channel
        if self._draining:  # nothing left to finish: the broker redelivers what was in hand
            self.connection.stop()

    def waiting_for_work(self) -> bool:
        return self._state is not None and not self._state.unsettled

    # -- I/O thread ----------------------------------------------------------------------------

    def _on_message(
        self,
        channel: Channel,
        method: Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        state = self._state
        if state is None or state.channel is not channel:
            return  # a channel we have given up: its deliveries go back to the queue with it
        delivery = Delivery(
            state.generation, method.delivery_tag, method.redelivered, properties, body
        )
        state.unsettled[delivery.tag] = delivery
        if state.cancelled:
            state.after_cancel += 1
        if self._keyed:
            delivery.lane = _lane(properties, delivery.tag)
            waiting = state.lanes.get(delivery.lane)
            if waiting is not None or self._draining:
                # Its key is in work (it goes after, in order), or the process is stopping (it
                # goes back to the broker, ahead of its key's later messages).
                state.lanes.setdefault(delivery.lane, deque()).append(delivery)
                return
            state.lanes[delivery.lane] = deque()
        self._work.put(delivery)

    def _next_in_lane(self, state: _ChannelState, delivery: Delivery) -> None:
        """Keyed mode: `delivery` is settled, so the next delivery of its key may start (unless
        the process is stopping: those still waiting go back to the broker)."""
        waiting = state.lanes.get(delivery.lane)
        if waiting is None or self._draining:
            return
        if waiting:
            self._work.put(waiting.popleft())
        else:
            del state.lanes[delivery.lane]

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
            case Forward(routing_key, body, properties):
                state.publisher.publish(
                    routing_key, body, properties, lambda: self._settle(delivery, ack=True)
                )
            case Done():
                self._settle(delivery, ack=True)
            case DeadLetter(reason):
                self._dead_letter(state, delivery, reason)
            case Failed(reason) if self._keyed:
                self._retry_in_place_or_dead_letter(state, delivery, reason)
            case Failed(reason):
                self._retry_or_dead_letter(state, delivery, reason)

    def _retry_in_place_or_dead_letter(
        self, state: _ChannelState, delivery: Delivery, reason: str
    ) -> None:
        """Keyed mode: try again here, after a pause, holding the key's lane; a requeued message
        would come back behind the rest of its key."""
        attempt = self._attempt(delivery) + delivery.retries
        if attempt >= self._attempt_limit():
            self._dead_letter(state, delivery, f"failed on attempt {attempt}: {reason}")
            return
        delivery.retries += 1
        log.warning(
            "processing failed, retried in order",
            extra={"queue": self._settings.queue, "reason": reason, "attempt": attempt},
        )
        self.connection.call_later(retry_delay(delivery.retries), lambda: self._work.put(delivery))

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
            lambda: self._settle(delivery, ack=True),
        )

    def _dead_letter_properties(self, delivery: Delivery, reason: str) -> pika.BasicProperties:
        """The original's properties, plus why and where it failed, in `x-error-*` headers."""
        error: dict[str, object] = {
            "x-error-reason": reason.encode()[:MAX_REASON].decode(errors="ignore"),
            "x-error-queue": self._settings.queue,
            "x-error-at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        properties = pika.BasicProperties(
            content_type=_printable(delivery.properties.content_type),
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=_printable(delivery.properties.message_id),
            headers=error,
        )
        original = delivery.properties.headers
        if isinstance(original, dict) and original and undecodable_reason(original) is None:
            size = _encoded_size(original)
            if size is None:
                # pika decodes some header types it cannot encode again (floats): drop them
                # rather than fail to dead-letter.
                error["x-error-headers-dropped"] = "the original headers cannot be re-encoded"
            elif size > MAX_CARRIED_HEADERS:
                error["x-error-headers-dropped"] = f"the original headers ({size} bytes)"
            else:
                properties.headers = {**original, **error}
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
        if self._keyed:
            self._next_in_lane(state, delivery)
        if ack:
            state.to_ack.add(delivery.tag)
            if not state.ack_flush_scheduled:
                state.ack_flush_scheduled = True
                self.connection.call_later(0, lambda: self._flush_acks(state))
            return
        state.channel.basic_nack(delivery.tag, requeue=True)
        del state.unsettled[delivery.tag]
        self.connection.note_progress()
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
        if self._draining:
            self._finished_in_drain += len(state.to_ack)
        state.to_ack.clear()
        self.connection.note_progress()
        self._finish_drain_if_done()

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        state = self._state
        if state is None:
            self.connection.stop()
            return
        if not self._keyed:
            # Keyed mode does not cancel: the next replica would become active at once and take
            # later messages of the keys still in work here. It stops starting anything new,
            # and what waits goes back to the broker when the channel closes.
            for tag in state.consumer_tags:
                _cancel_keeping_deliveries_in_flight(
                    state.channel, tag, lambda: self._on_cancel_ok(state)
                )
            state.cancelled = state.cancel_ok_pending = True
        log.info("stopping: finishing messages in hand", extra={"in_hand": len(state.unsettled)})
        self.connection.call_later(self._settings.drain_timeout, self._drain_timed_out)
        self._finish_drain_if_done()

    def _on_cancel_ok(self, state: _ChannelState) -> None:
        state.cancel_ok_pending = False
        self._finish_drain_if_done()

    def _finish_drain_if_done(self) -> None:
        if not self._draining or self.connection.stopping:
            return
        state = self._state
        if state is None:
            self.connection.stop()
            return
        held = state.held()
        if state.cancel_ok_pending or len(state.unsettled) > held:
            return  # deliveries may still come, or are in work
        log.info(
            "stopped: every message in work finished",
            extra={
                "finished": self._finished_in_drain,
                "arrived_after_cancel": state.after_cancel,
                "handed_back": held,
            },
        )
        if not self._keyed:
            self.connection.stop()
            return
        # Keyed mode: a Close would cancel our consumers first, making the next replica active
        # while what we hold is still ours, and it would start on later messages of those keys.
        # Ended without a Close, our consumers go down instead, and the broker puts what they
        # held back at the head of each partition before the next replica takes over. A
        # Basic.Qos round trip first: the broker answers it only after the acks sent before it.
        state.channel.basic_qos(
            prefetch_count=self._per_consumer,
            callback=lambda _frame: self.connection.stop(close=False),
        )

    def _drain_timed_out(self) -> None:
        state = self._state
        if state is not None and not self.connection.stopping:
            log.warning(
                "drain timed out; the broker redelivers what was not finished",
                extra={
                    "finished": self._finished_in_drain,
                    "arrived_after_cancel": state.after_cancel,
                    "handed_back": len(state.unsettled),
                },
            )
            self.connection.stop()

    # -- worker threads ------------------------------------------------------------------------

    def _worker(self) -> None:
        while (delivery := self._work.get()) is not None:
            self._work_on(delivery)

    def _work_on(self, delivery: Delivery) -> None:
        if delivery.generation != self._generation:
            return  # from a lost channel: the broker redelivers it
        outcome = self._process(delivery)
        if isinstance(outcome, Future):
            outcome.add_done_callback(lambda done: self._hand_back(delivery, self._settled(done)))
        else:
            self._hand_back(delivery, outcome)

    def _hand_back(self, delivery: Delivery, outcome: Outcome) -> None:
        """Give the I/O thread an outcome (from any thread)."""
        self._results.append((delivery, outcome))
        with self._wake_lock:
            if self._wake_pending:
                return  # the I/O thread has yet to run: it will see this result too
            self._wake_pending = True
        self.connection.call_threadsafe(self._on_results)

    def _process(self, delivery: Delivery) -> Outcome | Future[Result]:
        unreadable = undecodable_reason(delivery.properties.headers)
        if unreadable is not None:
            return DeadLetter(unreadable)
        try:
            message = Message.decode(
                delivery.body, delivery.properties, self._broker.max_body_bytes
            )
            if self._stages_before is not None:
                message.require_stages(self._stages_before, self._settings.queue)
            output = self._handler(message)
            return output if isinstance(output, Future) else self._outcome(output)
        except Exception as error:
            return _failure(error)

    def _settled(self, done: Future[Result]) -> Outcome:
        if done.cancelled():
            return Failed("the handler's answer was cancelled")
        try:
            return self._outcome(done.result())
        except Exception as error:
            return _failure(error)

    def _outcome(self, output: Result) -> Outcome:
        if output is None:
            return Done()
        routing_key = route(self._next_queue or "", output.partition_key, self._broker)
        return Forward(routing_key, *output.encode())


def _failure(error: BaseException) -> Outcome:
    """A bad message is dead-lettered at once; anything else may work on another try."""
    if isinstance(error, InvalidMessage):
        return DeadLetter(str(error))
    return Failed(describe(error))


def _cancel_keeping_deliveries_in_flight(
    channel: Channel, consumer_tag: str, on_cancel_ok: Callable[[], None]
) -> None:
    """basic.cancel, without handing back the deliveries the broker sends before it sees it.

    The broker may send any number of deliveries between our Cancel and its Cancel-Ok. pika 1.4
    rejects each of them (requeue), which on a quorum queue costs the message a delivery
    attempt; it has no option to keep them. They are ours until acked, so take them like any
    other delivery and finish them: remove the tag from pika's set of cancelled consumers until
    the Cancel-Ok, whose handler removes the consumer for good. (tests/unit pins this against
    pika's real Channel, so a pika upgrade that changes it fails a test, not a drain.)"""
    channel.basic_cancel(consumer_tag, callback=lambda _frame: on_cancel_ok())
    cancelled = getattr(channel, "_cancelled", None)
    if isinstance(cancelled, set):
        cancelled.discard(consumer_tag)


def _lane(properties: pika.BasicProperties, tag: int) -> str:
    """The key a delivery is ordered by: its key header, else its id (no order to keep)."""
    headers = properties.headers
    key = headers.get("key") if isinstance(headers, dict) else None
    if isinstance(key, str):
        return key
    return properties.message_id if isinstance(properties.message_id, str) else f"#{tag}"


def _encoded_size(headers: dict) -> int | None:
    """Bytes the headers take on the wire, or None when pika cannot encode them."""
    try:
        return len(b"".join(pika.BasicProperties(headers=headers).encode()))
    except Exception:
        return None


def _printable(value: object) -> str | None:
    return value if isinstance(value, str) and value.isprintable() else None
