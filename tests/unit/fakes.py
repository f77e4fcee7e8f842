"""Fakes of pika's IOLoop, SelectConnection and Channel, for driving the state machines in
milliseconds, as pika's and Dramatiq's own unit tests do.

They behave like pika 1.4 where our code depends on it: `close()` on a connection that is not
open raises `ConnectionWrongStateError`; a delivery for a consumer that was cancelled is
rejected (requeue) instead of delivered, unless its tag left the channel's `_cancelled` set;
acking on a closed channel raises `ChannelWrongStateError`. The broker's side is driven by the
test: `open()`, `lose()`, `deliver()`, `confirm()`, `close_by_broker()`, `block()`.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pika
import pika.exceptions
from pika import frame
from pika.spec import Basic


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeIOLoop:
    """Timers on a fake clock. `start()` runs what is due, moving the clock on to the next timer
    until `stop()` or until nothing is scheduled (then it returns: the test drives the next
    event, then calls `run()` again)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self.stopped = False

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (self.clock.now + delay, next(self._order), callback))

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        self.call_later(0, callback)

    def delays(self) -> list[float]:
        return sorted(when - self.clock.now for when, _, _ in self._timers)

    def start(self) -> None:
        self.stopped = False
        self.run()

    def run(self, until: float | None = None) -> None:
        """Run timers in order (the clock jumps to each) until stopped, none are left, or the
        next is after `until`."""
        while self._timers and not self.stopped:
            when, _, callback = self._timers[0]
            if until is not None and when > until:
                break
            heapq.heappop(self._timers)
            self.clock.now = max(self.clock.now, when)
            callback()

    def run_for(self, seconds: float) -> None:
        end = self.clock.now + seconds
        self.run(until=end)
        self.clock.now = max(self.clock.now, end)

    def stop(self) -> None:
        self.stopped = True


def method_frame(method: Any) -> frame.Method:
    return frame.Method(1, method)


class FakeConnection:
    """pika.SelectConnection as ReconnectingConnection uses it; every one made is kept in
    `FakeConnection.made` (cleared by the `connections` fixture)."""

    made: list[FakeConnection] = []  # noqa: RUF012 (a registry the tests read)

    def __init__(
        self,
        parameters: pika.URLParameters,
        on_open_callback: Callable,
        on_open_error_callback: Callable,
        on_close_callback: Callable,
        custom_ioloop: FakeIOLoop,
    ) -> None:
        self.parameters = parameters
        self._on_open = on_open_callback
        self._on_open_error = on_open_error_callback
        self._on_close = on_close_callback
        self.ioloop = custom_ioloop
        self.state = "opening"
        self.blocked = False
        self.closes_sent = 0
        self.closes_sent_while_blocked = 0
        self.channels: list[FakeChannel] = []
        self._blocked_callbacks: list[Callable] = []
        self._unblocked_callbacks: list[Callable] = []
        FakeConnection.made.append(self)

    @property
    def host(self) -> str:
        return self.parameters.host

    @property
    def params(self) -> pika.URLParameters:
        """As pika's Connection.params: what it connected with."""
        return self.parameters

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def is_closing(self) -> bool:
        return self.state == "closing"

    @property
    def is_closed(self) -> bool:
        return self.state == "closed"

    # -- what the code calls -------------------------------------------------------------------

    def add_on_connection_blocked_callback(self, callback: Callable) -> None:
        self._blocked_callbacks.append(callback)

    def add_on_connection_unblocked_callback(self, callback: Callable) -> None:
        self._unblocked_callbacks.append(callback)

    def channel(self, on_open_callback: Callable[[FakeChannel], None]) -> FakeChannel:
        channel = FakeChannel(self, len(self.channels) + 1)
        self.channels.append(channel)
        on_open_callback(channel)
        return channel

    def close(self) -> None:
        if self.state in ("closing", "closed"):
            raise pika.exceptions.ConnectionWrongStateError(
                f"Illegal close(200, 'Normal shutdown') request on {self!r} because it was "
                f"called while connection state={self.state}."
            )
        self.closes_sent += 1
        self.closes_sent_while_blocked += self.blocked
        self.state = "closing"
        for channel in self.channels:
            channel.close_by_client()
        self.ioloop.call_later(0, self._close_ok)

    def _close_ok(self) -> None:
        if self.state == "closing":
            self.state = "closed"
            self._on_close(self, pika.exceptions.ConnectionClosedByClient(200, "Normal shutdown"))

    # -- the broker's side, driven by the test -------------------------------------------------

    def open(self) -> None:
        self.state = "open"
        self._on_open(self)

    def fail_open(self, error: BaseException) -> None:
        self.state = "closed"
        self._on_open_error(self, error)

    def lose(self, reason: BaseException | None = None) -> None:
        """The network or the broker ended the connection."""
        reason = reason or pika.exceptions.StreamLostError("Transport indicated EOF")
        self.state = "closed"
        for channel in self.channels:
            channel.lost(reason)
        self._on_close(self, reason)

    def block(self) -> None:
        self.blocked = True
        for callback in self._blocked_callbacks:
            callback(self, None)

    def unblock(self) -> None:
        self.blocked = False
        for callback in self._unblocked_callbacks:
            callback(self, None)

    @property
    def channel_(self) -> FakeChannel:
        """The connection's (last) channel."""
        return self.channels[-1]


@dataclass
class Published:
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    mandatory: bool


@dataclass
class FakeChannel:
    connection: FakeConnection
    number: int
    state: str = "open"
    declared: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # declared passively: only checked
    prefetch: int | None = None
    acks: list[tuple[int, bool]] = field(default_factory=list)  # (delivery tag, multiple)
    nacks: list[int] = field(default_factory=list)  # requeued by us
    rejects: list[int] = field(default_factory=list)  # requeued by "pika" (cancelled consumer)
    published: list[Published] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    _cancelled: set[str] = field(default_factory=set)  # as pika.channel.Channel._cancelled
    _consumers: dict[str, tuple[str, Callable]] = field(default_factory=dict)  # tag -> queue, cb
    priorities: dict[str, int | None] = field(default_factory=dict)  # queue -> x-priority
    _close_callbacks: list[Callable] = field(default_factory=list)
    _on_confirm: Callable | None = None
    _on_return: Callable | None = None
    _on_cancel: Callable | None = None
    _cancel_ok: Callable | None = None
    _next_delivery_tag: int = 1

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def is_closed(self) -> bool:
        return self.state == "closed"

    def _require_open(self) -> None:
        if not self.is_open:
            raise pika.exceptions.ChannelWrongStateError("Channel is closed.")

    # -- what the code calls -------------------------------------------------------------------

    def add_on_close_callback(self, callback: Callable) -> None:
        self._close_callbacks.append(callback)

    def queue_declare(
        self, queue: str, passive: bool, durable: bool, arguments: dict, callback: Callable
    ) -> None:
        self._require_open()
        self.declared.append(queue)
        if passive:
            self.checked.append(queue)
        callback(method_frame(SimpleNamespace(queue=queue, message_count=0)))

    def basic_qos(self, prefetch_count: int, callback: Callable) -> None:
        self.prefetch = prefetch_count
        callback(None)

    def confirm_delivery(self, callback: Callable) -> None:
        self._on_confirm = callback

    def add_on_return_callback(self, callback: Callable) -> None:
        self._on_return = callback

    def add_on_cancel_callback(self, callback: Callable) -> None:
        self._on_cancel = callback

    def basic_consume(self, queue: str, callback: Callable, arguments: dict | None = None) -> str:
        self._require_open()
        tag = f"ctag-{self.number}.{len(self._consumers) + 1}"
        self._consumers[tag] = (queue, callback)
        self.priorities[queue] = (arguments or {}).get("x-priority")
        return tag

    def basic_cancel(self, consumer_tag: str, callback: Callable | None = None) -> None:
        self._require_open()
        self.cancels.append(consumer_tag)
        self._cancelled.add(consumer_tag)  # as pika does
        self._cancel_ok = callback

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._require_open()
        self.acks.append((delivery_tag, multiple))

    def basic_nack(self, delivery_tag: int, requeue: bool = True) -> None:
        self._require_open()
        self.nacks.append(delivery_tag)

    def basic_reject(self, delivery_tag: int, requeue: bool = True) -> None:
        self._require_open()
        self.rejects.append(delivery_tag)

    def basic_publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        mandatory: bool = False,
    ) -> None:
        self._require_open()
        b"".join(properties.encode())  # what pika would put on the wire: it must encode
        self.published.append(Published(routing_key, body, properties, mandatory))

    # -- the broker's side, driven by the test -------------------------------------------------

    def deliver(
        self,
        body: bytes,
        properties: pika.BasicProperties | None = None,
        *,
        redelivered: bool = False,
        queue: str | None = None,
    ) -> int:
        """A delivery to the consumer of `queue` (or the only one), as pika dispatches it; its
        delivery tag."""
        tag = self._next_delivery_tag
        self._next_delivery_tag += 1
        [(consumer_tag, (queue, callback))] = [
            (ctag, consumer)
            for ctag, consumer in self._consumers.items()
            if queue is None or consumer[0] == queue
        ]
        method = Basic.Deliver(consumer_tag, tag, redelivered, "", queue)
        if consumer_tag in self._cancelled:  # pika 1.4: hand it back, unseen
            self.basic_reject(tag)
        else:
            callback(self, method, properties or pika.BasicProperties(), body)
        return tag

    def cancel_ok(self) -> None:
        for tag in self.cancels:
            self._consumers.pop(tag, None)
            self._cancelled.discard(tag)
        if self._cancel_ok is not None:
            self._cancel_ok(method_frame(Basic.CancelOk(self.cancels[-1])))

    def confirm(self, delivery_tag: int, *, multiple: bool = False, ack: bool = True) -> None:
        assert self._on_confirm is not None
        kind = Basic.Ack if ack else Basic.Nack
        self._on_confirm(method_frame(kind(delivery_tag=delivery_tag, multiple=multiple)))

    def return_(self, published: Published) -> None:
        assert self._on_return is not None
        method = Basic.Return(312, "NO_ROUTE", "", published.routing_key)
        self._on_return(self, method, published.properties, published.body)

    def close_by_broker(self, code: int, text: str) -> None:
        self.state = "closed"
        reason = pika.exceptions.ChannelClosedByBroker(code, text)
        for callback in self._close_callbacks:
            callback(self, reason)

    def close_by_client(self) -> None:
        if self.state == "open":
            self.lost(pika.exceptions.ChannelClosedByClient(200, "Normal shutdown"))

    def lost(self, reason: BaseException) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        for callback in self._close_callbacks:
            callback(self, reason)
