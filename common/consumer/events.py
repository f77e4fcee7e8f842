"""What a consumer does with each message, told to whoever subscribes: one seam for counting,
logging progress, metrics and traces, outside the coordinator's body.

Every event is emitted on the I/O thread, in the order things happened, so an observer needs no
lock of its own; it must be quick (it runs between frames), must not raise, and changes nothing
but what `Publishing` offers. Events about one message carry its `Delivery` (its properties hold
the headers a tracer reads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pika

from common.consumer.outcomes import Delivery, Outcome
from common.publisher import PublisherEvent


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """Something that happened to one delivery."""

    delivery: Delivery


@dataclass(frozen=True, slots=True)
class HandlerFinished(MessageEvent):
    """The processing ended with `outcome` after `seconds` (a Future's wait included)."""

    outcome: Outcome
    seconds: float


class Received(MessageEvent):
    """The broker sent a delivery; it is ours until settled."""

    __slots__ = ()


class Confirmed(MessageEvent):
    """The broker has the delivery's output safely."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Publishing(MessageEvent):
    """The delivery's output is about to go to `routing_key` (its confirm is awaited after).
    The one event whose observers may change something: a tracer adds its headers to
    `properties` here."""

    routing_key: str
    properties: pika.BasicProperties


@dataclass(frozen=True, slots=True)
class DeadLettered(MessageEvent):
    """The delivery's dead-letter copy, saying `reason`, is confirmed."""

    reason: str


@dataclass(frozen=True, slots=True)
class Settled(MessageEvent):
    """The delivery is acked (`acked`) or handed back to its queue for another try."""

    acked: bool


@dataclass(frozen=True, slots=True)
class AcksSent:
    """Acks for `count` deliveries went out together (a `multiple` ack, and singles)."""

    count: int


@dataclass(frozen=True, slots=True)
class Connected:
    """A channel to `node` (host:port) is consuming; `again`: after the last one was lost."""

    node: str
    again: bool


Event = (
    Received
    | HandlerFinished
    | Publishing
    | Confirmed
    | DeadLettered
    | Settled
    | AcksSent
    | Connected
    | PublisherEvent
)
Observer = Callable[[Event], None]


class Events:
    """The observers of one consumer, each told every event in turn."""

    def __init__(self, observers: tuple[Observer, ...] = ()) -> None:
        self._observers = list(observers)

    def subscribe(self, observer: Observer) -> None:
        self._observers.append(observer)

    def unsubscribe(self, observer: Observer) -> None:
        self._observers.remove(observer)

    def emit(self, event: Event) -> None:
        for observer in self._observers:
            observer(event)
