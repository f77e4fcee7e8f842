"""The ordering policy: when a delivery may start, what a failure leads to, what a stop does.

The coordinator asks its policy at the same few points whatever the mode: a delivery arrives
(`admit`), one is settled (`settled`), one failed (`failed`), the drain begins (`drain_begins`)
and ends (`drain_ends`). A policy lives as long as one channel, since what it holds (delivery
tags) means nothing on the next. Two policies (`common.consumer.policies` picks by ORDERING):
`common.consumer.unordered.Unordered`, every delivery starts at once, and
`common.consumer.lanes.KeyedLanes`, one delivery of a key at a time. Either way a delivery is
tried at most DELIVERY_LIMIT times, then dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from common.consumer.outcomes import DeadLetter, Delivery
from common.settings import BrokerSettings


@dataclass(frozen=True)
class Retry:
    """Try the delivery again after its `attempt` failed: here after `delay` seconds, keeping its
    place; or, with no delay, from its queue (handed back; another replica may take it)."""

    attempt: int
    delay: float | None = None


Decision = Retry | DeadLetter  # what follows a failure: another try, or none (the reason why)


class OrderingPolicy(Protocol):
    def consume_arguments(self, queue: str) -> dict[str, object] | None:
        """The arguments of basic.consume on `queue`."""

    def admit(self, delivery: Delivery) -> bool:
        """A delivery arrived: True if it may start now; False if it waits (held)."""

    def settled(self, delivery: Delivery) -> Delivery | None:
        """`delivery` is acked or requeued: the held delivery that may start now, if any."""

    def failed(self, delivery: Delivery, reason: str) -> Decision:
        """The work on `delivery` failed with `reason`: what happens to it next."""

    def drain_begins(self) -> bool:
        """The process is stopping: True if the consumers must be cancelled."""

    def held(self) -> int:
        """Deliveries admitted but held unstarted: they go back to the broker on stop."""

    def drain_ends(self) -> bool:
        """What is in work is done: True to close the connection, False to end it without a
        Close (the broker then returns what was held to the head of its queue)."""


def delivery_attempt(delivery: Delivery) -> int:
    """Which delivery of its message this is, counted from 1. Quorum queues count deliveries
    (on RabbitMQ 3.x every return counts, a crash's too); classic queues count nothing, so there
    any redelivery, whatever brought it back, is taken as the last."""
    count = (delivery.properties.headers or {}).get("x-delivery-count")
    if isinstance(count, int):
        return count + 1
    return 2 if delivery.redelivered else 1


def attempt_limit(broker: BrokerSettings) -> int:
    return broker.delivery_limit if broker.queue_type == "quorum" else 2
