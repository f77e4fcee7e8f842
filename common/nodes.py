"""Which node of AMQP_URL to try next, and how long to wait before trying it.

AMQP_URL may name several nodes of one cluster. Each process tries them in an order of its own,
shuffled once at start so that clients spread over the cluster, and after a loss moves on to the
next node, so the one that just failed is tried last. One node down is no reason to wait: the
next one is tried at once, and only after a pass over every node does the next try wait, a
little longer each pass (`common.retry`: 0.5 s, 1 s, 2 s, 4 s, then 5 s).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pika
from pika.channel import Channel

from common.retry import retry_delay
from common.settings import BrokerSettings, redact_url
from common.tls import client_context


class Nodes:
    def __init__(self, urls: Sequence[str]) -> None:
        self._urls = random.sample(list(urls), len(urls))
        self._index = len(self._urls) - 1  # the node tried last; the first try is the first
        self.attempt = 0  # passes over every node that failed, in this outage
        self._tried_in_pass = 0

    def next(self) -> str:
        """The URL of the node to try now."""
        self._index = (self._index + 1) % len(self._urls)
        self._tried_in_pass += 1
        return self._urls[self._index]

    @property
    def current(self) -> str:
        """The node tried last, its password hidden: for the log."""
        return redact_url(self._urls[self._index])

    def delay(self) -> float:
        """Seconds to wait before the next try, after the current node failed."""
        if self._tried_in_pass < len(self._urls):
            return 0.0
        self.attempt += 1
        self._tried_in_pass = 0
        return retry_delay(self.attempt)

    def outage_over(self) -> None:
        """The broker was usable: the next failure starts a new outage, from the first delay."""
        self.attempt = 0
        self._tried_in_pass = 0


def url_parameters(url: str, ca_file: str = "") -> pika.URLParameters:
    """pika's parameters for `url`; an amqps:// node's certificate must be signed by a CA of
    `ca_file` (or of the system's, when empty) and name the URL's host."""
    parameters = pika.URLParameters(url)
    if parameters.ssl_options is not None:
        parameters.ssl_options = pika.SSLOptions(client_context(ca_file))
    return parameters


def connection_parameters(url: str, broker: BrokerSettings, name: str = "") -> pika.URLParameters:
    """How a process connects to the node at `url`; `name` (if any) shows in the management
    UI."""
    parameters = url_parameters(url, broker.ca_file)
    parameters.heartbeat = broker.heartbeat
    if name:
        parameters.client_properties = {"connection_name": name}
    return parameters


def node_of(channel: Channel) -> str:
    """The broker node a channel's connection reached, as host:port."""
    params = channel.connection.params
    return f"{params.host}:{params.port}"
