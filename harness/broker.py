"""The broker the tests and the benchmark use, and a virtual host of their own on it.

Every test and every benchmark run works in a vhost made for it (`rabbitmqctl add_vhost`), so
its queues never meet the demo's or another run's, and deleting the vhost leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import pika.exceptions

from common.settings import BrokerSettings, Env
from common.topology import queue_arguments

DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"
CTL_TIMEOUT_S = 120  # deleting a vhost with many quorum queues takes a while on 2 cores


def broker_url() -> str:
    return os.environ.get("AMQP_URL") or DEFAULT_URL


def test_worker() -> str:
    """The pytest-xdist worker running this process ("gw0", "gw1", ...), or "" outside one.

    It goes into the names of what a test makes (vhosts, private nodes), so that a leftover says
    which worker of a parallel run made it; uniqueness comes from the random part of each name.
    """
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def unique_name(label: str) -> str:
    """`label`, the test worker if any, and a random part: `test-gw1-3f9c0a...`."""
    return "-".join(part for part in (label, test_worker(), uuid.uuid4().hex[:12]) if part)


def with_vhost(url: str, vhost: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(vhost, safe="")))


def rabbitmqctl_command() -> list[str]:
    """rabbitmqctl, or $RABBITMQCTL (e.g. `docker compose exec -T rabbitmq rabbitmqctl`, or
    the throwaway broker's `docker exec`), as an argument list."""
    return shlex.split(os.environ.get("RABBITMQCTL", "rabbitmqctl"))


def rabbitmqctl(*args: str, timeout: float = CTL_TIMEOUT_S) -> str:
    """Run `rabbitmqctl_command()` with these arguments; its output."""
    command = [*rabbitmqctl_command(), *args]
    return subprocess.run(
        command, check=True, capture_output=True, text=True, timeout=timeout
    ).stdout


def connect(url: str, timeout: float = 10) -> pika.BlockingConnection:
    """A blocking connection that gives up after `timeout` rather than hanging."""
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = timeout
    parameters.blocked_connection_timeout = timeout
    return pika.BlockingConnection(parameters)


class Vhost:
    """A virtual host of its own at `base_url`; `delete()` removes it and everything in it."""

    def __init__(self, base_url: str | None = None, label: str = "test") -> None:
        base_url = base_url or broker_url()
        self.name = unique_name(label)
        self.url = with_vhost(base_url, self.name)
        user = urlsplit(base_url).username or "guest"
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, user, ".*", ".*", ".*")

    def delete(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            rabbitmqctl("delete_vhost", self.name)

    @property
    def node_urls(self) -> list[str]:
        """The URL of each node that serves this vhost: one, but for a cluster's."""
        return [self.url]

    @property
    def client_env(self) -> dict[str, str]:
        """What a process needs besides AMQP_URL to dial `node_urls` (a CA, for TLS)."""
        return {}

    @contextmanager
    def channel(self) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
        connection = connect(self.url)
        try:
            yield connection.channel()
        finally:
            if connection.is_open:
                connection.close()

    def declare(self, *queues: str, **settings: str) -> None:
        """Declare queues as the processes do (their default settings, or `settings`)."""
        broker = BrokerSettings.from_env(Env(settings))
        with self.channel() as channel:
            for queue in queues:
                channel.queue_declare(queue, durable=True, arguments=queue_arguments(queue, broker))

    def depth(self, queue: str) -> int:
        """Messages ready in `queue` (0 if it does not exist)."""
        return self.counts([queue])[queue][0]

    def consumers(self, queues: Sequence[str]) -> dict[str, int]:
        """Consumers on each queue (0 for a queue that does not exist yet)."""
        return {queue: consumers for queue, (_, consumers) in self.counts(queues).items()}

    def counts(self, queues: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(messages ready, consumers) of each queue; (0, 0) for one that does not exist."""
        counts = {}
        connection = connect(self.url)
        try:
            for queue in queues:
                channel = connection.channel()
                try:
                    method = channel.queue_declare(queue, passive=True).method
                    counts[queue] = (method.message_count, method.consumer_count)
                    channel.close()
                except pika.exceptions.ChannelClosedByBroker:
                    counts[queue] = (0, 0)
        finally:
            if connection.is_open:
                connection.close()
        return counts

    def drain(self, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
        """Take every message out of `queue` (acked), in order."""
        taken = []
        with self.channel() as channel:
            while True:
                method, properties, body = channel.basic_get(queue)
                if method is None:
                    return taken
                channel.basic_ack(method.delivery_tag)
                taken.append((properties, body))

    def publish(
        self, queue: str, body: bytes, properties: pika.BasicProperties | None = None
    ) -> None:
        with self.channel() as channel:
            channel.confirm_delivery()
            channel.basic_publish("", queue, body, properties, mandatory=True)


def refusal(url: str) -> str | None:
    """None if the broker at `url` lets us in, or why not, in a few words."""
    try:
        connect(url, timeout=5).close()
    except (pika.exceptions.AMQPError, OSError) as error:
        return str(root_cause(error)) or type(error).__name__
    return None


def root_cause(error: BaseException) -> BaseException:
    """The socket's or the broker's error inside pika's wrappers (in `args`, or `exception`)."""
    while True:
        inner = error.args[0] if error.args else getattr(error, "exception", None)
        if not isinstance(inner, BaseException):
            return error
        error = inner
