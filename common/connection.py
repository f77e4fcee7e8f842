"""One broker connection that declares its queues and comes back by itself after a loss.

The pattern is pika's asynchronous_consumer_example.py: a SelectConnection driven by an IOLoop
on one thread, with every reconnect decision made here and nowhere else. The IOLoop outlives
each connection, so other threads can always hand work to it with `call_threadsafe`.

Nodes. AMQP_URL may name several nodes of one cluster. Each process tries them in an order of
its own, shuffled once at start so that clients spread over the cluster, and after a loss moves
on to the next node, so the one that just failed is tried last. The log says which node it
connected to.

Outages. While no node can be reached, each failed attempt logs one line; after a pass over
every node the next one waits a little longer (0.5 s, 1 s, 2 s, 4 s, then 5 s). `run()` raises
`BrokerError` once no progress has been possible for CONNECT_TIMEOUT seconds. Progress is what
the user reports with `note_progress()` (a delivery settled, a confirm received), or a lost
connection on which the user was only waiting for work: an idle consumer on a flapping network
is not in an outage. A connection that breaks soon after it was set up with neither counts as
the same outage, so a broker that keeps closing on us, or a bug in one of our callbacks, backs
off and ends instead of spinning.

Refusals. The broker's own refusals end the process at once with one line saying what to fix:
a login or virtual host refused (ACCESS_REFUSED, NOT_ALLOWED), a queue declared with other
arguments (PRECONDITION_FAILED). A connection cut during the handshake is not a refusal, whatever
pika guesses (`ProbableAuthenticationError`): it is retried like any outage.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from common import frames
from common.retry import LONGEST_DELAY, describe, retry_delay
from common.settings import BrokerSettings, redact_url
from common.topology import queue_arguments

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = LONGEST_DELAY  # seconds: "soon after set-up" is the longest wait
PRECONDITION_FAILED = 406
REFUSED = (403, 405)  # ACCESS_REFUSED, RESOURCE_LOCKED: trying again will not help
LOGIN_REFUSALS = (403, 530)  # ACCESS_REFUSED (user, password), NOT_ALLOWED (virtual host)
# pika turns the broker's Connection.Close during the handshake into a "Probable..." error that
# carries the broker's reply as text; a cut stream carries something else (StreamLostError).
_BROKER_REPLY = re.compile(r"ConnectionClosedByBroker: \((\d+)\) '(.*)'", re.S)

frames.install()  # before any frame is decoded: hostile headers must not abort a connection


class BrokerError(RuntimeError):
    """The broker cannot be used: unreachable for too long, refused us, or its queues clash."""


class ChannelUser(Protocol):
    """What a connection serves: something that uses a ready channel until it is lost."""

    def on_channel_ready(self, channel: Channel) -> None:
        """The channel is open, its queues are declared and prefetch is set."""

    def on_channel_lost(self) -> None:
        """The channel is gone; anything tied to it (delivery tags, confirms) is void."""

    def waiting_for_work(self) -> bool:
        """Nothing in hand: the user only waits for the broker to send it something."""


def broker_refusal(error: BaseException | str) -> tuple[int, str] | None:
    """The broker's reply code and text, if it refused us during the handshake (not a cut)."""
    if not isinstance(
        error,
        pika.exceptions.ProbableAuthenticationError | pika.exceptions.ProbableAccessDeniedError,
    ):
        return None
    match = _BROKER_REPLY.search(str(error.args[0]) if error.args else "")
    if match is None or int(match.group(1)) not in LOGIN_REFUSALS:
        return None
    return int(match.group(1)), match.group(2)


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
        queues: Sequence[str],
        prefetch: int = 0,
        *,
        name: str = "",
        ioloop: IOLoop | None = None,
        connection_class: Callable[..., pika.SelectConnection] = pika.SelectConnection,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._user = user
        self._queues = tuple(dict.fromkeys(queues))
        self._prefetch = prefetch
        self._name = name
        self._nodes = random.sample(settings.amqp_urls, len(settings.amqp_urls))
        self._node = len(self._nodes) - 1  # index of the node tried last; the first try is 0
        self.ioloop = ioloop or IOLoop()
        self._connection_class = connection_class
        self._clock = clock
        self._connection: pika.SelectConnection | None = None
        self._channel: Channel | None = None  # set while the user may use it
        self._ready_at = 0.0  # when the current channel became ready; 0 while setting up
        self._progressed = False  # the user made progress on the current channel
        self._lost_while_waiting = False  # the lost channel's user was only waiting for work
        self._attempt = 0  # passes over every node that failed, in this outage
        self._tried_in_pass = 0  # nodes tried in the current pass
        self._outage_started = clock()
        self._blocked = False
        self._close_when_unblocked = False
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

    def note_progress(self) -> None:
        """The user got something done on the current channel: whatever breaks next, the broker
        was usable, so the outage clock starts again."""
        self._progressed = True

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
        if close and connection is not None and connection.is_open and not self._blocked:
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
        return self._fatal

    # -- connecting ----------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._stopping:
            self.ioloop.stop()
            return
        self._node = (self._node + 1) % len(self._nodes)
        self._tried_in_pass += 1
        parameters = pika.URLParameters(self._nodes[self._node])
        parameters.heartbeat = self._settings.heartbeat
        if self._name:
            parameters.client_properties = {"connection_name": self._name}
        self._connection = self._connection_class(
            parameters,
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_connection_open_error,
            on_close_callback=self._on_connection_closed,
            custom_ioloop=self.ioloop,
        )

    @property
    def _node_url(self) -> str:
        return redact_url(self._nodes[self._node])

    def _on_connection_open_error(self, _connection: object, error: BaseException | str) -> None:
        refusal = broker_refusal(error)
        if isinstance(error, pika.exceptions.AuthenticationError) or (
            refusal and refusal[0] == LOGIN_REFUSALS[0]
        ):
            self._fail(
                f"the broker at {self._node_url} refused the login: check the user and password "
                f"in AMQP_URL ({refusal[1] if refusal else describe(error)})"
            )
        elif refusal:
            self._fail(
                f"the broker at {self._node_url} refused access to the virtual host: check that "
                f"it exists and that the user may use it ({refusal[1]})"
            )
        else:
            self._retry("broker not reachable, retrying", describe(error))

    def _retry(self, message: str, reason: str) -> None:
        """Try the next node; after a pass over all of them, back off. Give up once no progress
        has been possible for CONNECT_TIMEOUT."""
        if self._stopping:
            self.ioloop.stop()
            return
        if self._tried_in_pass < len(self._nodes):
            delay = 0.0  # the next node now: one down is no reason to wait
        else:
            self._attempt += 1
            self._tried_in_pass = 0
            delay = retry_delay(self._attempt)
        waited = self._clock() - self._outage_started
        if waited + delay > self._settings.connect_timeout:
            self._fail(
                f"cannot reach the broker at {self._settings.display_url} after {waited:.0f}s "
                f"({reason}); start it (e.g. `docker compose up -d rabbitmq`) or fix AMQP_URL, "
                "or raise CONNECT_TIMEOUT"
            )
            return
        log.warning(
            message,
            extra={
                "url": self._node_url,
                "reason": reason,
                "attempts": self._attempt + (delay == 0.0),
                "retry_in_s": delay,
                "gives_up_in_s": round(self._settings.connect_timeout - waited, 1),
            },
        )
        self.ioloop.call_later(delay, self._connect)

    def _fail(self, message: str) -> None:
        self._fatal = message
        self.stop()

    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        log.info("connected", extra={"url": self._node_url})
        self._blocked = False
        self._close_when_unblocked = False
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_blocked(self, _connection: object, _frame: object) -> None:
        self._blocked = True
        log.warning("broker blocked publishing (memory or disk alarm); waiting for it to clear")

    def _on_unblocked(self, _connection: object, _frame: object) -> None:
        self._blocked = False
        log.info("broker unblocked publishing")
        if self._close_when_unblocked:
            self._close_to_reconnect()

    def _close_to_reconnect(self) -> None:
        """Close the connection so that its close callback connects again. A blocked
        connection would not read our Close: it is closed once the broker unblocks it."""
        connection = self._connection
        if connection is None or not connection.is_open:
            return  # closing or closed already: its close callback reconnects
        if self._blocked:
            self._close_when_unblocked = True
            return
        self._close_when_unblocked = False
        connection.close()

    def _on_connection_closed(self, _connection: object, reason: BaseException) -> None:
        self._lose_channel()
        if self._stopping:
            self.ioloop.stop()
            return
        healthy = self._ready_at and (
            self._progressed
            or self._lost_while_waiting
            or self._clock() - self._ready_at >= MAX_RETRY_DELAY
        )
        self._ready_at = 0.0
        if healthy:
            # The broker was usable until now: a new outage. Try the next node at once.
            if not isinstance(reason, pika.exceptions.ConnectionClosedByClient):
                log.warning(
                    "connection lost, reconnecting",
                    extra={"url": self._node_url, "reason": describe(reason)},
                )
            self._attempt = 0
            self._tried_in_pass = 0
            self._outage_started = self._clock()
            self._connect()
        else:
            # It broke while being set up, or soon after with nothing done (a bug in one of our
            # callbacks, a broker that keeps closing on us): back off, give up in the end.
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
        self._channel = channel
        self._progressed = False
        self._lost_while_waiting = False
        self._user.on_channel_ready(channel)
        # Only now: a user that fails to start on this channel never counts as "ready".
        self._ready_at = self._clock()

    def _lose_channel(self) -> None:
        """Tell the user at once that the channel is void, before pika finishes closing it."""
        if self._channel is not None:
            self._channel = None
            self._lost_while_waiting = bool(self._ready_at) and self._user.waiting_for_work()
            self._user.on_channel_lost()

    def _on_channel_closed(self, _channel: Channel, reason: BaseException) -> None:
        connection = self._connection
        if self._stopping or connection is None or connection.is_closing or connection.is_closed:
            return  # the connection's own close callback handles it
        setting_up = not self._ready_at
        self._lose_channel()
        if self._stopping:
            return  # the user stopped when told (say, a drain with nothing left to finish)
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
        self._close_to_reconnect()
