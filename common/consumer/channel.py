"""What a consumer holds for the life of one channel, and drops with it."""

from __future__ import annotations

from dataclasses import dataclass, field

from pika.channel import Channel

from common.consumer.acks import Acks
from common.consumer.ordering import OrderingPolicy
from common.publisher import ConfirmedPublisher


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
