"""The reconnect logic against the real broker: bounded, backed off, and stoppable at any time."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from common.connection import BrokerError, ReconnectingConnection
from common.logs import setup_logging
from common.main import UNREACHABLE_HINT
from common.messages import Message
from common.settings import BrokerSettings, Env, LogSettings
from common.topology import Queues
from harness.broker import rabbitmqctl
from harness.processes import wait_for


class BuggyUser:
    """A ChannelUser with a bug: its callback raises every time."""

    def __init__(self) -> None:
        self.ready = 0

    def on_channel_ready(self, _channel: object) -> None:
        self.ready += 1
        raise TypeError("a bug in a callback")

    def on_channel_lost(self) -> None:
        pass

    def waiting_for_work(self) -> bool:
        return True  # it would look idle: but it never gets ready, so that must not count


@pytest.fixture
def product_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The processes' logging set-up, captured by caplog, undone afterwards."""
    names = ["", "pika", "pika.adapters.utils.io_services_utils"]
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    saved_handlers = logging.getLogger().handlers[:]
    setup_logging(LogSettings("INFO", "json"))
    logging.getLogger().addHandler(caplog.handler)
    yield caplog
    for logger, level in saved:
        logger.setLevel(level)
        logger.filters.clear()
    logging.getLogger().handlers[:] = saved_handlers


def test_a_bug_in_a_callback_backs_off_then_gives_up(vhost, product_logging) -> None:
    settings = BrokerSettings.from_env(Env({"AMQP_URL": vhost.url, "CONNECT_TIMEOUT": "4"}))
    user = BuggyUser()
    connection = ReconnectingConnection(settings, user, Queues(("service_a",), ()))
    started = time.monotonic()
    with pytest.raises(BrokerError, match="a bug in a callback"):
        connection.run()
    assert time.monotonic() - started < 15
    assert 2 <= user.ready <= 5  # backed off: 0.5 s, 1 s, 2 s ... not hundreds of reconnects
    records = product_logging.records
    assert any(r.exc_info and "a bug in a callback" in r.getMessage() for r in records)


def test_an_unreachable_broker_ends_in_one_line_with_the_deployment_hint(start) -> None:
    """The connection says what it knows (AMQP_URL, CONNECT_TIMEOUT); the entry point adds the
    compose service to start."""
    last = start("last", AMQP_URL="amqp://guest:secret@127.0.0.1:1/%2F", CONNECT_TIMEOUT=1)
    assert last.wait(30) == 1, last.tail()
    [error] = last.errors()
    assert error["message"].startswith("cannot reach the broker at amqp://guest:***@127.0.0.1:1")
    assert error["message"].endswith(
        "start it or fix AMQP_URL, or raise CONNECT_TIMEOUT (with Docker Compose: "
        "`docker compose up -d rabbitmq`)"
    )
    assert UNREACHABLE_HINT in error["message"]
    assert last.stderr() == ""


def test_sigterm_during_the_handshake_exits_cleanly(start) -> None:
    """A broker that accepts the connection but never answers: stop must still be prompt."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    port = server.getsockname()[1]
    try:
        last = start("last", AMQP_URL=f"amqp://guest:guest@127.0.0.1:{port}/%2F")
        wait_for(lambda: accepted, 30, "the connection attempt")
        last.signal(signal.SIGTERM)
        assert last.wait(10) == 0, last.tail()
        assert "Traceback" not in last.stderr()
    finally:
        server.close()
        for conn in accepted:
            conn.close()


def test_a_drain_cut_short_by_connection_loss_exits_at_once(start, vhost) -> None:
    """SIGTERM, then the connection drops: nothing in hand can be acked any more, so there is
    nothing to wait for (the broker redelivers it); the process exits 0 without reconnecting."""
    service = start("service", RABBITMQ_QUEUE="service_a", RANDOM_WAIT_MIN=30, DRAIN_TIMEOUT=60)
    wait_for(lambda: service.messages("consuming"), 30, "service_a to consume")
    vhost.publish("service_a", *Message.first(1, 1.0).encode())
    wait_for(lambda: vhost.depth("service_a") == 0, 30, "the message to be taken")
    service.signal(signal.SIGTERM)
    wait_for(lambda: service.messages("stopping: finishing messages in hand"), 30, "the drain")
    rabbitmqctl("close_all_connections", "-p", vhost.name, "fault test")
    assert service.wait(15) == 0, service.tail()
    assert not service.messages("connected")[1:]
    wait_for(lambda: vhost.depth("service_a") == 1, 30, "the message back in its queue")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            lambda url: url.replace(f":{urlsplit(url).password}@", ":wrong@", 1),
            "refused the login: check the user and password in AMQP_URL (ACCESS_REFUSED",
        ),
        (
            lambda url: url.rsplit("/", 1)[0] + "/no-such-vhost",
            "refused access to the virtual host: check that it exists and that the user may use "
            "it (NOT_ALLOWED - vhost no-such-vhost not found)",
        ),
    ],
    ids=["wrong password", "no such vhost"],
)
def test_a_refusal_by_the_broker_ends_the_process_at_once(start, vhost, change, words) -> None:
    """The broker's own answer, not a guess: one line, exit 1, no retries."""
    last = start("last", AMQP_URL=change(vhost.url), CONNECT_TIMEOUT=60)
    assert last.wait(15) == 1, last.tail()
    [error] = last.errors()
    assert words in error["message"], error
    assert "wrong" not in error["message"]  # the password never shows
    assert not last.messages("broker not reachable, retrying")
    assert last.stderr() == ""
