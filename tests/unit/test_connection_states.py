"""ReconnectingConnection's state machine, driven with fake pika objects on a fake clock."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pika.exceptions
import pytest

from common.connection import MAX_RETRY_DELAY, ReconnectingConnection
from common.retry import retry_delay
from common.settings import BrokerSettings, Env
from common.topology import Queues
from tests.unit.fakes import FakeChannel, FakeClock, FakeConnection, FakeIOLoop

NODES = ("node-1", "node-2", "node-3")


class User:
    """A ChannelUser that records what it is told, and can be made busy, idle or buggy."""

    def __init__(self) -> None:
        self.channels: list[FakeChannel] = []
        self.lost = 0
        self.busy = True
        self.fail_on_ready = False
        self.on_lost: list = []

    def on_channel_ready(self, channel: FakeChannel) -> None:
        if self.fail_on_ready:
            raise RuntimeError("a bug in on_channel_ready")
        self.channels.append(channel)

    def on_channel_lost(self) -> None:
        self.lost += 1
        for action in self.on_lost:
            action()

    def waiting_for_work(self) -> bool:
        return not self.busy


@pytest.fixture(autouse=True)
def connections() -> Iterator[list[FakeConnection]]:
    FakeConnection.made.clear()
    yield FakeConnection.made
    FakeConnection.made.clear()


def make(
    *nodes: str, timeout: float = 30, user: User | None = None, seed: int = 0
) -> tuple[ReconnectingConnection, User, FakeIOLoop]:
    urls = ",".join(f"amqp://u:secret@{node}:5672/%2F" for node in nodes or NODES[:1])
    settings = BrokerSettings.from_env(Env({"AMQP_URL": urls, "CONNECT_TIMEOUT": str(timeout)}))
    clock = FakeClock()
    loop = FakeIOLoop(clock)
    user = user or User()
    random.seed(seed)
    connection = ReconnectingConnection(
        settings,
        user,
        Queues(("in",), ("out", "dead_letter")),
        prefetch=10,
        ioloop=loop,
        connection_class=FakeConnection,
        clock=clock,
    )
    connection.run()  # connects, then returns: the fake loop has nothing more to run
    return connection, user, loop


def latest() -> FakeConnection:
    return FakeConnection.made[-1]


def warnings(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    """The log records with this message (warnings, mostly)."""
    return [r for r in caplog.records if r.getMessage() == message]


# -- set-up ----------------------------------------------------------------------------------


def test_ready_after_declaring_every_queue_and_setting_prefetch() -> None:
    _, user, _ = make()
    latest().open()
    [channel] = user.channels
    assert channel.declared == ["in", "out", "dead_letter"]
    assert channel.prefetch == 10


def test_with_declare_queues_own_the_queues_written_to_are_only_checked() -> None:
    """Their owners or the broker's definitions made them: no right to configure is needed."""
    settings = BrokerSettings.from_env(Env({"DECLARE_QUEUES": "own"}))
    user = User()
    ReconnectingConnection(
        settings,
        user,
        Queues(("in",), ("out", "in", "dead_letter")),
        ioloop=FakeIOLoop(FakeClock()),
        connection_class=FakeConnection,
    ).run()
    latest().open()
    [channel] = user.channels
    assert channel.declared == ["in", "out", "dead_letter"]
    assert channel.checked == ["out", "dead_letter"]


# -- the defects the review found --------------------------------------------------------------


def test_a_channel_closed_while_the_user_stops_closes_the_connection_once(caplog) -> None:
    """A draining consumer stops when its channel is lost: no second close (pika raises
    ConnectionWrongStateError on it), no "reconnecting" line."""
    connection, user, loop = make()
    user.on_lost.append(connection.stop)
    latest().open()
    latest().channel_.close_by_broker(406, "PRECONDITION_FAILED - unknown delivery tag 7")
    assert latest().closes_sent == 1
    loop.run()
    assert loop.stopped
    assert not warnings(caplog, "channel closed, reconnecting")
    assert len(FakeConnection.made) == 1  # and no new connection


def test_reconnect_while_the_user_stops_closes_the_connection_once(caplog) -> None:
    connection, user, loop = make()
    user.on_lost.append(connection.stop)
    latest().open()
    connection.reconnect("queue 'out' is missing")
    assert latest().closes_sent == 1
    loop.run()
    assert loop.stopped and len(FakeConnection.made) == 1


def test_many_returns_make_one_reconnect(caplog) -> None:
    """A queue deleted under a thousand publishes: one line, one new connection."""
    connection, _, loop = make()
    latest().open()
    for _ in range(1000):
        connection.reconnect("queue 'out' is missing (NO_ROUTE)")
    assert len(warnings(caplog, "starting over on a new connection")) == 1
    assert latest().closes_sent == 1
    loop.run()
    assert len(FakeConnection.made) == 2


def test_no_close_is_sent_to_a_blocked_connection() -> None:
    """A blocked connection does not read what we send: close it once the broker unblocks."""
    connection, _, loop = make()
    first = latest()
    first.open()
    first.block()
    first.channel_.close_by_broker(404, "NOT_FOUND - no queue 'in'")
    connection.reconnect("queue 'out' is missing")
    assert first.closes_sent == 0
    first.unblock()
    assert (first.closes_sent, first.closes_sent_while_blocked) == (1, 0)
    loop.run()
    assert len(FakeConnection.made) == 2


def test_stop_while_blocked_sends_no_close() -> None:
    connection, _, loop = make()
    latest().open()
    latest().block()
    connection.stop()
    assert latest().closes_sent == 0
    assert loop.stopped


# -- refusals and handshake cuts ---------------------------------------------------------------


def refused(code: int, text: str, kind: type = pika.exceptions.ProbableAuthenticationError):
    return kind(f"ConnectionClosedByBroker: ({code}) '{text}'")


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            refused(403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN"),
            "refused the login: check the user and password in AMQP_URL (ACCESS_REFUSED",
        ),
        (
            refused(
                530,
                "NOT_ALLOWED - vhost nope not found",
                pika.exceptions.ProbableAccessDeniedError,
            ),
            "refused access to the virtual host: check that it exists and that the user may "
            "use it (NOT_ALLOWED - vhost nope not found)",
        ),
    ],
)
def test_a_refusal_from_the_broker_is_final(error: BaseException, words: str) -> None:
    connection, _, loop = make()
    latest().fail_open(error)
    assert loop.stopped
    assert words in connection.failure
    assert "secret" not in connection.failure
    assert len(FakeConnection.made) == 1


@pytest.mark.parametrize(
    "error",
    [
        pika.exceptions.ProbableAuthenticationError(
            "StreamLostError: ('Transport indicated EOF',)"
        ),
        pika.exceptions.ProbableAccessDeniedError(
            "StreamLostError: (\"Stream connection lost: ConnectionResetError(104, 'reset')\",)"
        ),
        pika.exceptions.ProbableAuthenticationError(
            "ConnectionClosedByBroker: (320) 'CONNECTION_FORCED - broker forced connection "
            "closure with reason 'shutdown''"
        ),
    ],
    ids=["cut while authenticating", "cut while tuning", "node shutting down"],
)
def test_a_cut_during_the_handshake_is_retried(error: BaseException, caplog) -> None:
    connection, _, loop = make()
    latest().fail_open(error)
    assert not loop.stopped and connection.failure is None
    [line] = warnings(caplog, "broker not reachable, retrying")
    assert line.retry_in_s == retry_delay(1)
    loop.run()
    assert len(FakeConnection.made) == 2


# -- several nodes -----------------------------------------------------------------------------


def test_each_process_has_its_own_order_of_the_nodes() -> None:
    firsts = set()
    for seed in range(20):
        make(*NODES, seed=seed)
        firsts.add(latest().host)
    assert firsts == set(NODES)


def test_a_node_down_moves_on_to_the_next_at_once_and_a_pass_backs_off(caplog) -> None:
    _, _, loop = make(*NODES)
    tried = []
    for _ in range(len(NODES)):
        tried.append(latest().host)
        latest().fail_open(pika.exceptions.AMQPConnectionError("Connection refused"))
        loop.run(until=loop.clock.now)  # only what is due now: the next node, not the back-off
    assert sorted(tried) == sorted(NODES)  # each node once in the pass
    retries = warnings(caplog, "broker not reachable, retrying")
    assert [r.retry_in_s for r in retries] == [0.0, 0.0, retry_delay(1)]
    assert [r.url for r in retries] == [f"amqp://u:***@{host}:5672/%2F" for host in tried]
    assert loop.delays() == [retry_delay(1)]


def test_after_a_loss_the_next_node_is_tried_first(caplog) -> None:
    _, _, loop = make(*NODES)
    latest().open()
    lost_node = latest().host
    loop.clock.now += 60  # a long-lived connection
    latest().lose()
    assert latest().host != lost_node
    assert warnings(caplog, "connection lost, reconnecting")[0].url.endswith(
        f"@{lost_node}:5672/%2F"
    )


def test_connected_says_which_node(caplog) -> None:
    caplog.set_level(logging.INFO, "common.connection")
    make(*NODES)
    latest().open()
    [connected] = warnings(caplog, "connected")
    assert connected.url == f"amqp://u:***@{latest().host}:5672/%2F"


# -- outages: progress, flapping, bugs -------------------------------------------------------


def flap(loop: FakeIOLoop, connection: ReconnectingConnection, *, progress: bool) -> None:
    """A connection that is set up, works for a second, and is cut."""
    loop.run(until=loop.clock.now + MAX_RETRY_DELAY)  # whatever back-off is due
    latest().open()
    loop.run_for(1.0)
    if progress:
        connection.note_progress()
    latest().lose()


def test_a_flapping_network_with_progress_never_gives_up() -> None:
    connection, _, loop = make(timeout=10)
    for _ in range(100):  # 100 s of flapping, ten times CONNECT_TIMEOUT
        flap(loop, connection, progress=True)
    assert connection.failure is None and not loop.stopped


def test_an_idle_consumer_on_a_flapping_network_never_gives_up() -> None:
    user = User()
    user.busy = False  # nothing in hand: no progress was ever possible to make
    connection, _, loop = make(timeout=10, user=user)
    for _ in range(100):
        flap(loop, connection, progress=False)
    assert connection.failure is None and not loop.stopped


def test_no_progress_for_connect_timeout_gives_up() -> None:
    """Work in hand, every connection cut before anything is done: an outage, however often
    the broker answers."""
    connection, _, loop = make(timeout=10)
    for _ in range(100):
        flap(loop, connection, progress=False)
        loop.run(until=loop.clock.now)
        if loop.stopped:
            break
    assert loop.stopped
    assert connection.failure.startswith("cannot reach the broker at amqp://u:***@node-1")
    assert "raise CONNECT_TIMEOUT" in connection.failure
    assert "docker compose" not in connection.failure  # the entry point's to say (common.main)
    assert loop.clock.now - 1000.0 <= 10 + MAX_RETRY_DELAY


def test_a_bug_in_a_callback_backs_off_and_ends(caplog) -> None:
    """A user that fails on every new channel cannot make the connection spin."""
    user = User()
    user.fail_on_ready = True
    user.busy = False  # it would look idle: but it never got ready, so that does not count
    _, _, loop = make(timeout=10, user=user)
    opened = 0
    while not loop.stopped and opened < 100:
        opened += 1
        with pytest.raises(RuntimeError, match="a bug in on_channel_ready"):
            latest().open()
        latest().lose()  # pika aborts the connection after a callback raised
        loop.run(until=loop.clock.now + MAX_RETRY_DELAY)
    assert loop.stopped and opened < 10
    delays = [r.retry_in_s for r in warnings(caplog, "connection lost, reconnecting")]
    assert delays == [retry_delay(n) for n in range(1, len(delays) + 1)]


def test_a_long_lived_connection_lost_reconnects_at_once(caplog) -> None:
    _, _, loop = make()
    latest().open()
    loop.clock.now += MAX_RETRY_DELAY
    latest().lose()
    assert len(FakeConnection.made) == 2  # no back-off
    assert warnings(caplog, "connection lost, reconnecting")
