"""What a consumer holds for the life of one channel, and drops with it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pika.channel import Channel

from common.connection import ReconnectingConnection
from common.consumer.acks import Acks
from common.consumer.ordering import OrderingPolicy
from common.publisher import ConfirmedPublisher, PublisherEvent


@dataclass
class ChannelState:
    """What is valid only for the life of one channel: delivery tags, confirms, what the
    ordering policy holds, the consumers."""

    channel: Channel
    generation: int
    publisher: ConfirmedPublisher
    acks: Acks
    policy: OrderingPolicy
    consumer_tags: list[str] = field(default_factory=list)
    cancel_ok_pending: bool = False  # deliveries may still come until the broker's Cancel-Ok

    @classmethod
    def open(
        cls,
        channel: Channel,
        generation: int,
        policy: OrderingPolicy,
        connection: ReconnectingConnection,
        *,
        on_settled: Callable[[int], None],
        observe: Callable[[PublisherEvent], None],
    ) -> ChannelState:
        """The state of a channel just ready: its publisher (refusals and returns told to
        `observe`) and its acks (`on_settled` told after each flush)."""
        publisher = ConfirmedPublisher(
            channel, connection.reconnect, connection.call_later, observe
        )
        return cls(
            channel, generation, publisher, Acks(channel, connection.call_later, on_settled), policy
        )
