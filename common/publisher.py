"""Publishing with publisher confirms, streamed: no round trip per message.

Every message goes to the default exchange, persistent and `mandatory`, so one whose queue is
missing comes back (basic.return) instead of being confirmed and silently dropped. A return
means the topology is broken (someone deleted a queue), not that the message is bad: the
publisher reports it to `on_unroutable`, whose owner reconnects and declares the queues again,
and the message is published again (or, for a consumer, redelivered) on the new channel.

Each publish is given a callback that learns its fate once: `None` when the broker has it
safely, or the reason it does not (nacked). If the channel is lost first, the callback is never
called: the owner learns of the loss from `ChannelUser.on_channel_lost` and voids everything.
"""

from __future__ import annotations

from collections.abc import Callable

import pika
from pika.channel import Channel
from pika.spec import Basic

Settled = Callable[[str | None], None]


class ConfirmedPublisher:
    """Publishes on one confirm-mode channel and settles each message when the broker answers."""

    def __init__(self, channel: Channel, on_unroutable: Callable[[str], None]) -> None:
        self._channel = channel
        self._on_unroutable = on_unroutable
        self._next_tag = 1
        self._pending: dict[int, Settled] = {}
        channel.confirm_delivery(self._on_confirm)
        channel.add_on_return_callback(self._on_return)

    def publish(
        self,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        on_settled: Settled,
    ) -> None:
        self._channel.basic_publish("", routing_key, body, properties, mandatory=True)
        self._pending[self._next_tag] = on_settled
        self._next_tag += 1

    def _on_return(
        self,
        _channel: Channel,
        method: Basic.Return,
        _properties: pika.BasicProperties,
        _body: bytes,
    ) -> None:
        self._on_unroutable(f"queue {method.routing_key!r} is missing ({method.reply_text})")

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        failure = None if isinstance(method, Basic.Ack) else "nacked by the broker"
        if method.multiple:  # tags are ascending in the dict: stop at the first one past it
            tags = []
            for tag in self._pending:
                if tag > method.delivery_tag:
                    break
                tags.append(tag)
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            on_settled = self._pending.pop(tag, None)
            if on_settled is not None:
                on_settled(failure)
