"""One broker connection that declares its queues and comes back by itself after a loss.

The pattern is pika's asynchronous_consumer_example.py: a SelectConnection driven by an IOLoop
on one thread, with every reconnect decision made here and nowhere else. The IOLoop outlives
each connection, so other threads can always hand work to it with `call_threadsafe`.

While the broker cannot be reached, each attempt logs one line and the next waits a little
longer (capped); after `CONNECT_TIMEOUT` seconds of outage `run()` raises `BrokerError`. A
connection that breaks soon after it was set up counts as the same outage, so a broker that
keeps closing on us (or a bug in a callback) cannot make it spin.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from common.settings import BrokerSettings
from common.topology import queue_arguments

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 5.0
PRECONDITION_FAILED = 406
REFUSED = (403, 405)  # ACCESS_REFUSED, RESOURCE_LOCKED: trying again will not help


class BrokerError(RuntimeError):
    """The broker cannot be used: unreachable for too long, refused us, or its queues clash."""


class ChannelUser(Protocol):
    """What a connection serves: something that uses a ready channel until it is lost."""

    def on_channel_ready(self, channel: Channel) -> None:
        """The channel is open, its queues are declared and prefetch is set."""

    def on_channel_lost(self) -> None:
        """The channel is gone; anything tied to it (delivery tags, confirms) is void."""


def retry_delay(attempt: int) -> float:
    """0.5 s, 1 s, 2 s, 4 s, then 5 s for every further attempt."""
    return min(0.5 * 2 ** (attempt - 1), MAX_RETRY_DELAY)


def describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error) or repr(error)
    return f"{type(error).__name__}: {text}"


class ReconnectingConnection:
    def __init__(
        self,
        settings: BrokerSettings,
        user: ChannelUser,
        queues: Sequence[str],
        prefetch: int = 0,
    ) -> None:
        self._settings = settings
        self._user = user
        self._queues = tuple(dict.fromkeys(queues))
        self._prefetch = prefetch
        self._parameters = pika.URLParameters(settings.amqp_url)
        self._parameters.heartbeat = settings.heartbeat
        self.ioloop = IOLoop()
        self._connection: pika.SelectConnection | None = None
        self._channel: Channel | None = None  # set while the user may use it
        self._ready_at = 0.0  # when the current channel became ready; 0 while setting up
        self._attempt = 0
        self._outage_started = time.monotonic()
        self._blocked = False
        self._stopping = False
        self._fatal: str | None = None

    # -- public: run() on the I/O thread; call_threadsafe() from anywhere ------------------------

    def run(self) -> None:
        """Connect and serve until `stop()`; raises `BrokerError` if the broker cannot be used."""
        self._connect()
        self.ioloop.start()
        if self._fatal:
            raise BrokerError(self._fatal)

    def call_threadsafe(self, callback: Callable[[], None]) -> None:
        self.ioloop.add_callback_threadsafe(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.ioloop.call_later(delay, callback)

    def stop(self) -> None:
        """Close the connection (if any) and end `run()`. I/O thread only; idempotent."""
        if self._stopping:
            return
        self._stopping = True
        self._lose_channel()
        connection = self._connection
        if connection is not None and connection.is_open and not self._blocked:
            connection.close()  # its close callback stops the loop
        elif connection is None or not connection.is_closing:
            # Closed; or still opening, which pika 1.4 cannot abort cleanly; or blocked by a
            # broker alarm, which would not read our Close: leave the socket to process exit.
            self.ioloop.stop()

    def reconnect(self, reason: str) -> None:
        """Start over with a new connection, declaring the queues again (say, one was deleted)."""
        log.warning("reconnecting to declare the queues again", extra={"reason": reason})
        self._lose_channel()
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- connecting ----------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._stopping:
            self.ioloop.stop()
            return
        self._attempt += 1
        self._connection = pika.SelectConnection(
            self._parameters,
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_connection_open_error,
            on_close_callback=self._on_connection_closed,
            custom_ioloop=self.ioloop,
        )

    def _on_connection_open_error(self, _connection: object, error: BaseException | str) -> None:
        if isinstance(error, pika.exceptions.ProbableAuthenticationError):
            self._fail(
                f"the broker at {self._settings.display_url} refused the login: "
                "check the user and password in AMQP_URL"
            )
        elif isinstance(error, pika.exceptions.ProbableAccessDeniedError):
            self._fail(
                f"the broker at {self._settings.display_url} refused access to the virtual "
                "host: check that it exists and that the user may use it"
            )
        else:
            self._retry("broker not reachable, retrying", describe(error))

    def _retry(self, message: str, reason: str) -> None:
        """Connect again after a back-off, or give up once the outage outlasts CONNECT_TIMEOUT."""
        waited = time.monotonic() - self._outage_started
        delay = retry_delay(self._attempt)
        if self._stopping:
            self.ioloop.stop()
        elif waited + delay > self._settings.connect_timeout:
            self._fail(
                f"cannot reach the broker at {self._settings.display_url} after {waited:.0f}s "
                f"({reason}); start it (e.g. `docker compose up -d rabbitmq`) or fix AMQP_URL, "
                "or raise CONNECT_TIMEOUT"
            )
        else:
            log.warning(
                message,
                extra={
                    "url": self._settings.display_url,
                    "reason": reason,
                    "attempts": self._attempt,
                    "retry_in_s": delay,
                    "gives_up_in_s": round(self._settings.connect_timeout - waited, 1),
                },
            )
            self.ioloop.call_later(delay, self._connect)

    def _fail(self, message: str) -> None:
        self._fatal = message
        self.stop()

    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        log.info("connected", extra={"url": self._settings.display_url})
        self._blocked = False
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_blocked(self, _connection: object, _frame: object) -> None:
        self._blocked = True
        log.warning("broker blocked publishing (memory or disk alarm); waiting for it to clear")

    def _on_unblocked(self, _connection: object, _frame: object) -> None:
        self._blocked = False
        log.info("broker unblocked publishing")

    def _on_connection_closed(self, _connection: object, reason: BaseException) -> None:
        self._lose_channel()
        if self._stopping:
            self.ioloop.stop()
            return
        worked_for = time.monotonic() - self._ready_at if self._ready_at else 0.0
        self._ready_at = 0.0
        if worked_for >= MAX_RETRY_DELAY:
            # A connection that worked for a while broke: a new outage, try again at once.
            if not isinstance(reason, pika.exceptions.ConnectionClosedByClient):
                log.warning("connection lost, reconnecting", extra={"reason": describe(reason)})
            self._attempt = 0
            self._outage_started = time.monotonic()
            self._connect()
        else:
            # It broke while being set up, or soon after (a bug in one of our callbacks, a
            # broker that keeps closing on us): back off, and give up after CONNECT_TIMEOUT.
            self._retry("connection lost, reconnecting", describe(reason))

    # -- the channel ---------------------------------------------------------------------------

    def _on_channel_open(self, channel: Channel) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        self._declare(channel, list(self._queues))

    def _declare(self, channel: Channel, queues: list[str]) -> None:
        if not channel.is_open:
            return  # closed while declaring: the close callbacks take over
        if not queues:
            if self._prefetch:
                channel.basic_qos(
                    prefetch_count=self._prefetch, callback=lambda _: self._ready(channel)
                )
            else:
                self._ready(channel)
            return
        name = queues.pop(0)
        channel.queue_declare(
            name,
            durable=True,
            arguments=queue_arguments(name, self._settings),
            callback=lambda _frame: self._declare(channel, queues),
        )

    def _ready(self, channel: Channel) -> None:
        if not channel.is_open or self._stopping:
            return
        self._ready_at = time.monotonic()
        self._channel = channel
        self._user.on_channel_ready(channel)

    def _lose_channel(self) -> None:
        """Tell the user at once that the channel is void, before pika finishes closing it."""
        if self._channel is not None:
            self._channel = None
            self._user.on_channel_lost()

    def _on_channel_closed(self, _channel: Channel, reason: BaseException) -> None:
        connection = self._connection
        if self._stopping or connection is None or connection.is_closing or connection.is_closed:
            return  # the connection's own close callback handles it
        setting_up = not self._ready_at
        self._lose_channel()
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            if setting_up and reason.reply_code == PRECONDITION_FAILED:
                self._fail(
                    f"a queue exists with other arguments than configured ({reason.reply_text});"
                    " delete it (rabbitmqctl delete_queue NAME) or set QUEUE_TYPE / "
                    "DELIVERY_LIMIT to match"
                )
                return
            if setting_up and reason.reply_code in REFUSED:
                self._fail(f"the broker refused to set up the queues: {reason.reply_text}")
                return
        log.warning("channel closed, reconnecting", extra={"reason": describe(reason)})
        connection.close()
