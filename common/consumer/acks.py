"""Settling one channel's deliveries: acks gathered into as few frames as the broker allows.

Acks done in one turn of the I/O loop go out together at the end of it: one `multiple` ack for
the run of oldest deliveries that are all done (the usual case), single acks for the rest. A
requeue (nack) goes out at once. Delivery tags belong to their channel, so this lives and dies
with one.
"""

from __future__ import annotations

from collections.abc import Callable

from pika.channel import Channel

from common.consumer.outcomes import Delivery


class Acks:
    """The deliveries of `channel` not yet settled, by delivery tag (ascending, as the broker
    numbers them). `on_settled(acked)` is told after each batch of acks is sent (how many
    deliveries it acked), or a requeue (0)."""

    def __init__(
        self,
        channel: Channel,
        call_later: Callable[[float, Callable[[], None]], None],
        on_settled: Callable[[int], None],
    ) -> None:
        self._channel = channel
        self._call_later = call_later
        self._on_settled = on_settled
        self._unsettled: dict[int, Delivery] = {}
        self._to_ack: set[int] = set()
        self._flush_scheduled = False
        self._void = False

    def __len__(self) -> int:
        return len(self._unsettled)

    def hold(self, delivery: Delivery) -> None:
        """A delivery has arrived: it is ours until settled."""
        self._unsettled[delivery.tag] = delivery

    def ack(self, delivery: Delivery) -> None:
        self._to_ack.add(delivery.tag)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._call_later(0, self._flush)

    def requeue(self, delivery: Delivery) -> None:
        self._channel.basic_nack(delivery.tag, requeue=True)
        del self._unsettled[delivery.tag]
        self._on_settled(0)

    def void(self) -> None:
        """The channel is gone, and its delivery tags with it: send nothing more."""
        self._void = True

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._void:
            return
        run = []
        for tag in self._unsettled:
            if tag not in self._to_ack:
                break
            run.append(tag)
        if run:
            self._channel.basic_ack(run[-1], multiple=True)
        for tag in run:
            del self._unsettled[tag]
        for tag in self._to_ack.difference(run):
            self._channel.basic_ack(tag)
            del self._unsettled[tag]
        count = len(self._to_ack)
        self._to_ack.clear()
        self._on_settled(count)
