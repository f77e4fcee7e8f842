"""Publishing with publisher confirms, streamed: no round trip per message.

Every message goes to the default exchange, persistent and `mandatory`, so one whose queue is
missing comes back (basic.return) instead of being confirmed and silently dropped. Each publish
is given a callback that learns its fate exactly once: `None` when the broker has it safely, or
the reason it does not (nacked, returned). If the channel is lost first, the callback is never
called: the owner learns of the loss from `ChannelUser.on_channel_lost` and voids everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pika
from pika.channel import Channel
from pika.spec import Basic

Settled = Callable[[str | None], None]


@dataclass
class _Pending:
    routing_key: str
    message_id: str | None
    on_settled: Settled
    returned: str | None = None


class ConfirmedPublisher:
    """Publishes on one confirm-mode channel and settles each message when the broker answers."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._next_tag = 1
        self._pending: dict[int, _Pending] = {}
        channel.confirm_delivery(self._on_confirm)
        channel.add_on_return_callback(self._on_return)

    @property
    def unconfirmed(self) -> int:
        return len(self._pending)

    def publish(
        self,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        on_settled: Settled,
    ) -> None:
        self._channel.basic_publish("", routing_key, body, properties, mandatory=True)
        self._pending[self._next_tag] = _Pending(routing_key, properties.message_id, on_settled)
        self._next_tag += 1

    def _on_return(
        self,
        _channel: Channel,
        method: Basic.Return,
        properties: pika.BasicProperties,
        _body: bytes,
    ) -> None:
        # The broker sends basic.return before the confirm of the same message, and in publish
        # order, so the returned message is the oldest unconfirmed one that matches.
        for pending in self._pending.values():
            if (
                pending.returned is None
                and pending.routing_key == method.routing_key
                and pending.message_id == properties.message_id
            ):
                pending.returned = (
                    f"unroutable: no queue {method.routing_key!r} ({method.reply_text})"
                )
                return

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
        for tag in tags:
            pending = self._pending.pop(tag, None)
            if pending is None:
                continue
            if not acked:
                pending.on_settled("nacked by the broker")
            else:
                pending.on_settled(pending.returned)
