"""One broker connection that declares its queues and comes back by itself after a loss.

The pattern is pika's asynchronous_consumer_example.py: a SelectConnection driven by an IOLoop
on one thread, with every reconnect decision made here and nowhere else. The IOLoop outlives
each connection, so other threads can always hand work to it with `call_threadsafe`.

While the broker cannot be reached, each attempt logs one line and the next waits a little
longer (capped); after `CONNECT_TIMEOUT` seconds of outage `run()` raises `BrokerError`.
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
        self._channel: Channel | None = None
        self._attempt = 0
        self._outage_started = time.monotonic()
        self._ready_at = 0.0
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

    def call_later(self, delay: float, callback: Callable[[], None]) -> object:
        return self.ioloop.call_later(delay, callback)

    def stop(self) -> None:
        """Close the connection (if any) and end `run()`. I/O thread only."""
        self._stopping = True
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.close()  # its close callback stops the loop
        elif connection is None or not connection.is_closing:
            # Closed, or still opening: pika 1.4 cannot abort a handshake cleanly, so leave the
            # half-open socket to the process's exit.
            self.ioloop.stop()

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
            self._retry(describe(error))

    def _retry(self, reason: str) -> None:
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
                "broker not reachable, retrying",
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
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_blocked(self, _connection: object, _frame: object) -> None:
        log.warning("broker blocked publishing (memory or disk alarm); waiting for it to clear")

    def _on_unblocked(self, _connection: object, _frame: object) -> None:
        log.info("broker unblocked publishing")

    def _on_connection_closed(self, _connection: object, reason: BaseException) -> None:
        was_ready = self._channel is not None
        self._channel = None
        if was_ready:
            self._user.on_channel_lost()
        if self._stopping:
            self.ioloop.stop()
            return
        if was_ready:
            log.warning("connection lost, reconnecting", extra={"reason": describe(reason)})
            if time.monotonic() - self._ready_at >= MAX_RETRY_DELAY:
                # A connection that worked for a while broke: a new outage, try again at once.
                self._attempt = 0
                self._outage_started = time.monotonic()
                self._connect()
                return
        # It broke while being set up, or soon after (a bug in one of our callbacks, a broker
        # that keeps closing on us): back off, and give up after CONNECT_TIMEOUT.
        self._retry(describe(reason))

    # -- the channel ---------------------------------------------------------------------------

    def _on_channel_open(self, channel: Channel) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        self._declare(channel, list(self._queues))

    def _declare(self, channel: Channel, queues: list[str]) -> None:
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
        self._ready_at = time.monotonic()
        self._channel = channel
        self._user.on_channel_ready(channel)

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        connection = self._connection
        if self._stopping or connection is None or connection.is_closing or connection.is_closed:
            return  # the connection's own close callback handles it
        if (
            isinstance(reason, pika.exceptions.ChannelClosedByBroker)
            and reason.reply_code == PRECONDITION_FAILED
            and self._channel is None
        ):
            self._fail(
                f"a queue exists with other arguments than configured ({reason.reply_text}); "
                "delete it (rabbitmqctl delete_queue NAME) or set QUEUE_TYPE / DELIVERY_LIMIT "
                "to match"
            )
            return
        log.warning("channel closed, reconnecting", extra={"reason": describe(reason)})
        connection.close()
