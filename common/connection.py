"""One broker connection that declares its queues and comes back by itself after a loss.

The pattern is pika's asynchronous_consumer_example.py: a SelectConnection driven by an IOLoop
on one thread, with every reconnect decision made here and nowhere else. The IOLoop outlives
each connection, so other threads can always hand work to it with `call_threadsafe`.

Which node to try next, and how long to wait, is `common.nodes`; what the broker refuses for
good is `common.refusals`; a new channel is made ready by `common.channel_setup`. The log says
which node the connection reached.

Outages. While no node can be reached, each failed attempt logs one line; `run()` raises
`BrokerUnreachable` once the broker has not been usable for CONNECT_TIMEOUT seconds
(`common.outage` says what counts as usable), and any refusal (`common.refusals`) at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from common.blocking import Blocking
from common.channel_setup import ChannelUser, set_up
from common.nodes import Nodes, connection_parameters
from common.outage import USABLE_AFTER, Outage, unreachable
from common.refusals import BrokerError, BrokerUnreachable, open_refusal, setup_refusal
from common.retry import describe
from common.settings import BrokerSettings
from common.topology import Queues

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = USABLE_AFTER  # seconds: how soon after set-up a loss counts as no progress
__all__ = ["BrokerError", "BrokerUnreachable", "ChannelUser", "ReconnectingConnection"]


class ReconnectingConnection:
    """A connection to one of `settings.amqp_urls` that `user` uses while it lasts.

    `queues` are declared (idempotently, as `common.topology` says) on every new channel before
    the user sees it; `prefetch` (0: none) is set with basic.qos. `name` is the connection's name
    in the broker's management UI and `make watch` (which replica holds which partition).
    `run()` serves until `stop()`.
    The keyword-only parameters are seams for the unit tests, which drive this state machine
    with a fake IOLoop, fake connections and a fake clock.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        user: ChannelUser,
        queues: Queues,
        prefetch: int = 0,
        *,
        name: str = "",
        ioloop: IOLoop | None = None,
        connection_class: Callable[..., pika.SelectConnection] = pika.SelectConnection,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._user = user
        self._queues = queues
        self._prefetch = prefetch
        self._name = name
        self._nodes = Nodes(settings.amqp_urls)
        self.ioloop = ioloop or IOLoop()
        self._connection_class = connection_class
        self._connection: pika.SelectConnection | None = None
        self._channel: Channel | None = None  # set while the user may use it
        self._outage = Outage(clock)
        self._blocking = Blocking()
        self._stopping = False
        self._fatal: BrokerError | None = None

    # -- public: run() on the I/O thread; call_threadsafe() from anywhere ------------------------

    def run(self) -> None:
        """Connect and serve until `stop()`; raises `BrokerError` if the broker cannot be used."""
        self._connect()
        self.ioloop.start()
        if self._fatal:
            raise self._fatal

    def call_threadsafe(self, callback: Callable[[], None]) -> None:
        self.ioloop.add_callback_threadsafe(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.ioloop.call_later(delay, callback)

    def note_progress(self) -> None:
        """The user got something done on the current channel: whatever breaks next, the broker
        was usable, so the outage clock starts again."""
        self._outage.progress()

    def stop(self, *, close: bool = True) -> None:
        """Close the connection (if any) and end `run()`. I/O thread only; idempotent.

        With `close=False` the connection is left to end with the process, without an AMQP
        Close: the broker then sees its consumers go down rather than cancel, which for a
        single active consumer returns what it held before the next consumer starts."""
        if self._stopping:
            return
        self._stopping = True
        self._lose_channel()
        connection = self._connection
        if close and connection is not None and connection.is_open and not self._blocking.blocked:
            connection.close()  # its close callback stops the loop
        elif connection is None or not connection.is_closing:
            # Closed; or still opening, which pika 1.4 cannot abort cleanly; or blocked by a
            # broker alarm, which would not read our Close: leave the socket to process exit.
            self.ioloop.stop()

    def reconnect(self, reason: str) -> None:
        """Start over with a new connection and channel, declaring the queues again (say, one
        was deleted, or the broker keeps refusing publishes on this channel).

        Once per connection: the many returns of one deleted queue ask for it many times."""
        if self._stopping or self._channel is None:
            return  # stopping, or a reconnect is already under way
        log.warning("starting over on a new connection", extra={"reason": reason})
        self._lose_channel()
        self._close_to_reconnect()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def failure(self) -> str | None:
        """Why `run()` gave up, once it has: the one line the process exits with."""
        return str(self._fatal) if self._fatal else None

    # -- connecting ----------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._stopping:
            self.ioloop.stop()
            return
        self._connection = self._connection_class(
            connection_parameters(self._nodes.next(), self._settings, self._name),
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_connection_open_error,
            on_close_callback=self._on_connection_closed,
            custom_ioloop=self.ioloop,
        )

    def _on_connection_open_error(self, _connection: object, error: BaseException | str) -> None:
        refusal = open_refusal(error, self._nodes.current)
        if refusal:
            self._fail(refusal)
        else:
            self._retry("broker not reachable, retrying", describe(error))

    def _retry(self, message: str, reason: str) -> None:
        """Try the next node; after a pass over all of them, back off. Give up once no progress
        has been possible for CONNECT_TIMEOUT."""
        if self._stopping:
            self.ioloop.stop()
            return
        delay = self._nodes.delay()
        waited = self._outage.waited()
        if waited + delay > self._settings.connect_timeout:
            self._fail(unreachable(self._settings, waited, reason))
            return
        log.warning(
            message,
            extra={
                "url": self._nodes.current,
                "reason": reason,
                "attempts": self._nodes.attempt + (delay == 0.0),
                "retry_in_s": delay,
                "gives_up_in_s": round(self._settings.connect_timeout - waited, 1),
            },
        )
        self.ioloop.call_later(delay, self._connect)

    def _fail(self, error: BrokerError) -> None:
        self._fatal = error
        self.stop()

    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        log.info("connected", extra={"url": self._nodes.current})
        self._blocking.watch(connection)
        connection.channel(on_open_callback=self._on_channel_open)

    def _close_to_reconnect(self) -> None:
        """Close the connection so that its close callback connects again (`common.blocking`:
        once the broker unblocks it, if it blocked it)."""
        connection = self._connection
        if connection is not None and connection.is_open:  # else its close callback reconnects
            self._blocking.close(connection)

    def _on_connection_closed(self, _connection: object, reason: BaseException) -> None:
        self._lose_channel()
        if self._stopping:
            self.ioloop.stop()
            return
        if self._outage.connection_lost():
            # The broker was usable until now: a new outage. Try the next node at once.
            if not isinstance(reason, pika.exceptions.ConnectionClosedByClient):
                log.warning(
                    "connection lost, reconnecting",
                    extra={"url": self._nodes.current, "reason": describe(reason)},
                )
            self._nodes.outage_over()
            self._connect()
        else:
            # It broke while being set up, or soon after with nothing done (a bug in one of our
            # callbacks, a broker that keeps closing on us): back off, give up in the end.
            self._retry("connection lost, reconnecting", describe(reason))

    # -- the channel ---------------------------------------------------------------------------

    def _on_channel_open(self, channel: Channel) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        set_up(channel, self._queues, self._settings, self._prefetch, self._ready)

    def _ready(self, channel: Channel) -> None:
        if not channel.is_open or self._stopping:
            return
        self._channel = channel
        self._user.on_channel_ready(channel)
        self._outage.channel_ready()

    def _lose_channel(self) -> None:
        """Tell the user at once that the channel is void, before pika finishes closing it."""
        if self._channel is not None:
            self._channel = None
            self._outage.channel_lost(self._user.waiting_for_work())
            self._user.on_channel_lost()

    def _on_channel_closed(self, _channel: Channel, reason: BaseException) -> None:
        connection = self._connection
        if self._stopping or connection is None or connection.is_closing or connection.is_closed:
            return  # the connection's own close callback handles it
        setting_up = self._outage.setting_up
        self._lose_channel()
        if self._stopping:
            return  # the user stopped when told (say, a drain with nothing left to finish)
        refusal = setup_refusal(reason) if setting_up else None
        if refusal:
            self._fail(refusal)
            return
        log.warning("channel closed, reconnecting", extra={"reason": describe(reason)})
        self._close_to_reconnect()
