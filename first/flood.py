"""Publishing the pipeline's input: `["seq-1"]` … `["seq-N"]`, every one confirmed by the broker.

Confirms stream back asynchronously; at most `MAX_IN_FLIGHT` messages wait for one at a time,
which bounds memory and makes the publisher pause by itself while the broker blocks publishers
(memory or disk alarm). After a connection loss the unconfirmed messages are published again
with their original id: the broker may then hold two copies, and `last` counts the id once.
A message the broker nacks is published again after a pause (`common.publisher`); one it
returns (its queue was deleted) makes the publisher reconnect, declare the queue again and
publish it again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pika.channel import Channel

from common.connection import ReconnectingConnection
from common.messages import MAX_TEXT, Message
from common.metrics import PublishMetrics
from common.nodes import node_of
from common.progress import Progress, progress_interval
from common.publisher import ConfirmedPublisher
from common.settings import BrokerSettings, Env
from common.topology import STAGES, Queues, input_queues, route

if TYPE_CHECKING:
    from common.tracing.messaging import FloodSpans

log = logging.getLogger("first")

MAX_IN_FLIGHT = 1000


@dataclass(frozen=True)
class FloodSettings:
    number_of_messages: int
    next_queue: str
    publish_rate: float
    progress_interval: float
    run_id: str
    keys: int = 0  # messages get the key `key-<seq mod keys>`; 0: no keys

    @classmethod
    def from_env(cls, env: Env) -> FloodSettings:
        return cls(
            number_of_messages=env.integer("NUMBER_OF_MESSAGES", 100, minimum=0, maximum=10**9),
            next_queue=env.queue_name("RABBITMQ_NEXT_QUEUE", STAGES[0]),
            publish_rate=env.number("PUBLISH_RATE", 0.0, minimum=0.0, maximum=1e6),
            progress_interval=progress_interval(env),
            run_id=env.text("RUN_ID", new_run_id(), max_length=MAX_TEXT),
            keys=env.integer("KEYS", 0, minimum=0, maximum=10**6),
        )

    def key_for(self, seq: int) -> str | None:
        """The key of message `seq-N`: `key-<N mod KEYS>`, or none without KEYS."""
        return f"key-{seq % self.keys}" if self.keys else None


def new_run_id() -> str:
    """When the run started, and a few random characters in case two start in one second."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


class Flood:
    """Publishes `settings.number_of_messages` messages to `settings.next_queue`, each confirmed.

    `connect` builds the connection and `clock` paces the publishes (seams for the unit tests,
    which pass fakes); `metrics`, if given, counts what is published, confirmed and refused;
    `spans`, if given, opens each message's trace with its send span (`common.tracing`)."""

    def __init__(
        self,
        broker: BrokerSettings,
        settings: FloodSettings,
        *,
        connect: Callable[..., ReconnectingConnection] = ReconnectingConnection,
        clock: Callable[[], float] = time.monotonic,
        metrics: PublishMetrics | None = None,
        spans: FloodSpans | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._spans = spans
        self._broker = broker
        self._clock = clock
        queues = Queues((), (*input_queues(settings.next_queue, broker), broker.dead_letter_queue))
        name = f"first@{socket.gethostname()}/{os.getpid()}"
        self.connection = connect(broker, self, queues, name=name)
        self._publisher: ConfirmedPublisher | None = None
        self._next_seq = 1
        self._retry: deque[Message] = deque()
        self._in_flight: dict[str, Message] = {}
        self.confirmed = 0
        self._started = 0.0  # when the first channel was ready: the rate counts from there
        self.stopped_early = False
        self._pump_scheduled = False
        self._progress = Progress(log, settings.progress_interval, settings.number_of_messages)

    @property
    def unconfirmed(self) -> int:
        return self._settings.number_of_messages - self.confirmed

    def run(self) -> None:
        if self._settings.number_of_messages == 0:
            return
        self.connection.run()

    def request_stop(self) -> None:
        self.connection.call_threadsafe(self._stop_publishing)

    def on_channel_ready(self, channel: Channel) -> None:
        metrics = self._metrics
        observe = metrics.publisher_event if metrics else lambda _event: None
        self._publisher = ConfirmedPublisher(
            channel, self.connection.reconnect, self.connection.call_later, observe
        )
        if metrics:
            metrics.connected(node_of(channel), again=bool(self._started))
        if not self._started:
            self._started = self._clock()
            log.info(
                "publishing",
                extra={
                    "run_id": self._settings.run_id,
                    "messages": self._settings.number_of_messages,
                    "queue": self._settings.next_queue,
                    "ordering": self._broker.ordering,
                    "keys": self._settings.keys,
                },
            )
        if not self._pump_scheduled:  # a paced pump already waits: one timer chain, not two
            self._pump()

    def on_channel_lost(self) -> None:
        self._publisher = None
        self._retry.extend(self._in_flight.values())
        self._in_flight.clear()
        if self.stopped_early:  # asked to stop: no reconnecting to publish them again
            self.connection.stop()

    def waiting_for_work(self) -> bool:
        return False  # it has messages to publish until it is done, and then it stops

    def _stop_publishing(self) -> None:
        self.stopped_early = True
        log.info("stopping: waiting for outstanding confirms", extra=self._counts())
        self._finish_if_done()

    def _has_more(self) -> bool:
        return not self.stopped_early and (
            bool(self._retry) or self._next_seq <= self._settings.number_of_messages
        )

    def _pump(self) -> None:
        """Publish while the window has room and the rate allows; when the rate says wait,
        schedule the one pump that will go on (never more than one is waiting)."""
        self._pump_scheduled = False
        rate = self._settings.publish_rate
        while (publisher := self._publisher) and self._has_more():
            if len(self._in_flight) >= MAX_IN_FLIGHT:
                return  # a confirm calls the pump again
            if rate:
                sent = self._next_seq - 1
                wait = self._started + sent / rate - self._clock()
                if wait > 0 and not self._retry:
                    self._pump_scheduled = True
                    self.connection.call_later(wait, self._pump)
                    return
            self._publish(publisher, self._retry.popleft() if self._retry else self._new_message())

    def _new_message(self) -> Message:
        seq = self._next_seq
        message = Message.first(
            seq, time.time(), self._settings.run_id, self._settings.key_for(seq)
        )
        self._next_seq += 1
        return message

    def _publish(self, publisher: ConfirmedPublisher, message: Message) -> None:
        body, properties = message.encode()
        self._in_flight[message.message_id] = message
        if self._metrics:
            self._metrics.published.inc()
        routing_key = route(self._settings.next_queue, message.partition_key, self._broker)
        if self._spans:
            self._spans.publishing(message.message_id, routing_key, properties)
        publisher.publish(routing_key, body, properties, lambda: self._on_confirmed(message))

    def _on_confirmed(self, message: Message) -> None:
        if self._in_flight.pop(message.message_id, None) is None:
            return
        self.connection.note_progress()
        self.confirmed += 1
        if self._metrics:
            self._metrics.confirmed.inc()
        if self._spans:
            self._spans.confirmed(message.message_id)
        self._progress.update(self.confirmed)
        self._finish_if_done()
        if not self._pump_scheduled:
            self._pump()

    def _finish_if_done(self) -> None:
        if not self._in_flight and not self._has_more():
            log.info("published", extra=self._counts())
            self.connection.stop()

    def _counts(self) -> dict[str, object]:
        return {
            "run_id": self._settings.run_id,
            "confirmed": self.confirmed,
            "total": self._settings.number_of_messages,
        }
