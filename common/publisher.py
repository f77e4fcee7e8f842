"""Publishing with publisher confirms, streamed: no round trip per message.

Every message goes to the default exchange, persistent and `mandatory`, so one whose queue is
missing comes back (basic.return) instead of being confirmed and silently dropped. A return
means the topology is broken (someone deleted a queue), not that the message is bad: the
publisher reports it to `on_unroutable`, whose owner reconnects and declares the queues again,
and the message is published again (or, for a consumer, redelivered) on the new channel.

Every message carries `user_id`, the connection's user: RabbitMQ checks it against the login (a
forged one closes the channel with 406 PRECONDITION_FAILED), so the stage that receives it knows
for certain who sent it (`common.consumer.senders`).

A nack means the broker could not take the message for now: a quorum queue whose leader is
moving after a node's loss (RabbitMQ 3.10 refuses publishes for a moment then), a queue at its
length limit with `reject-publish`. It says nothing against the message, so the publisher sends
it again after a pause (0.5 s, doubling while the refusals go on), one log line per round; the
owner is told of a publish only once the broker has it safely. Treating a nack as final would
fail `first` or, for a service, requeue its input at once and spend the message's delivery
attempts in milliseconds. After REFUSAL_ROUNDS rounds in a row the channel itself is suspect
(RabbitMQ 3.10 refuses every publish on a channel opened just as a queue's leader died, for as
long as that node stays down; a new channel is served at once): the publisher asks its owner to
start over, on a new connection.

If the channel is lost first, a publish's callback is never called: the owner learns of the
loss from `ChannelUser.on_channel_lost` and voids everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pika
from pika.channel import Channel
from pika.spec import Basic

from common.retry import retry_delay

log = logging.getLogger(__name__)

Confirmed = Callable[[], None]
REFUSAL_ROUNDS = 3  # rounds of refusals (0.5 + 1 + 2 s) before the channel is given up


@dataclass(frozen=True, slots=True)
class Refused:
    """The broker nacked `count` publishes: they go out again after a pause."""

    count: int


@dataclass(frozen=True, slots=True)
class Returned:
    """The broker returned a publish to `routing_key`: no queue of that name."""

    routing_key: str


PublisherEvent = Refused | Returned


@dataclass(frozen=True)
class _Publish:
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    on_confirmed: Confirmed


class ConfirmedPublisher:
    """Publishes on one confirm-mode channel; calls each publish's `on_confirmed` once the broker
    has it, publishing again what it refuses. `start_over(reason)` is told when the channel
    cannot be used as it is (a queue is missing, or the broker keeps refusing on it): its owner
    reconnects. `call_later(delay, callback)` schedules on the channel's I/O loop; `observe` is
    told of each refusal and return (for metrics)."""

    def __init__(
        self,
        channel: Channel,
        start_over: Callable[[str], None],
        call_later: Callable[[float, Callable[[], None]], None],
        observe: Callable[[PublisherEvent], None] = lambda _event: None,
    ) -> None:
        self._channel = channel
        self._start_over = start_over
        self._call_later = call_later
        self._observe = observe
        self._user_id = getattr(channel.connection.params.credentials, "username", None)
        self._next_tag = 1
        self._pending: dict[int, _Publish] = {}
        self._refused: list[_Publish] = []  # nacked, to be published again after the pause
        self._rounds = 0  # rounds of refusals in a row: the pause grows with them
        channel.confirm_delivery(self._on_confirm)
        channel.add_on_return_callback(self._on_return)

    def publish(
        self,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        on_confirmed: Confirmed,
    ) -> None:
        """Send the message (its properties stamped with our `user_id`); `on_confirmed` once
        the broker has it."""
        properties.user_id = self._user_id
        self._send(_Publish(routing_key, body, properties, on_confirmed))

    def _send(self, publish: _Publish) -> None:
        self._channel.basic_publish(
            "", publish.routing_key, publish.body, publish.properties, mandatory=True
        )
        self._pending[self._next_tag] = publish
        self._next_tag += 1

    def _on_return(
        self,
        _channel: Channel,
        method: Basic.Return,
        _properties: pika.BasicProperties,
        _body: bytes,
    ) -> None:
        self._observe(Returned(method.routing_key))
        self._start_over(f"queue {method.routing_key!r} is missing ({method.reply_text})")

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        acked = isinstance(method, Basic.Ack)
        if method.multiple:  # tags are ascending in the dict: stop at the first one past it
            tags = []
            for tag in self._pending:
                if tag > method.delivery_tag:
                    break
                tags.append(tag)
        else:
            tags = [method.delivery_tag]
        settled = [publish for tag in tags if (publish := self._pending.pop(tag, None))]
        if acked:
            self._rounds = 0
            for publish in settled:
                publish.on_confirmed()
        elif settled:
            self._refuse(settled)

    def _refuse(self, refused: list[_Publish]) -> None:
        self._observe(Refused(len(refused)))
        first_of_round = not self._refused
        self._refused.extend(refused)
        if first_of_round and self._rounds >= REFUSAL_ROUNDS:
            # The owner reconnects: this channel's publishes are void with it, and publishing
            # them again is the owner's (first's) or the broker's (a service's input) to do.
            self._start_over(f"the broker refused publishes {self._rounds} rounds in a row")
        elif first_of_round:
            self._rounds += 1
            delay = retry_delay(self._rounds)
            log.warning(
                "the broker refused publishes for now (nack); publishing them again",
                extra={"refused": len(self._refused), "retry_in_s": delay},
            )
            self._call_later(delay, self._publish_refused)

    def _publish_refused(self) -> None:
        refused, self._refused = self._refused, []
        if not self._channel.is_open:
            return  # void with the channel: the owner publishes again, or the broker redelivers
        for publish in refused:
            self._send(publish)
