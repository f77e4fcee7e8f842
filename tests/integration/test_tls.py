"""TLS as compose runs it, on a broker node and a Redis of the test's own: the pipeline over
amqps and rediss, and every client that cannot verify its server refused in one line, at once.

The node keeps its plain listener beside the TLS one (the harness needs it to see that the
node is up); the compose broker's is off, which `make test-docker` checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.tls import handshake_answer
from common.topology import STAGES, following_queue
from harness.private_broker import BrokerUnavailable, PrivateBroker, free_ports
from harness.processes import Launcher
from harness.store import NoRedisServer, PrivateRedis, StoreKeys
from harness.tls import HOST, TlsFiles, TlsNode
from tests.integration.test_pipeline import assert_all_completed_once

COUNT = 300
REFUSED_WITHIN = 15  # s: a refusal ends the process at once, well inside CONNECT_TIMEOUT
CONNECT_TIMEOUT = 60  # s: what a retry loop would take to give up instead


@dataclass
class Servers:
    node: TlsNode
    redis: PrivateRedis

    @property
    def files(self) -> TlsFiles:
        return self.node.files

    @property
    def broker(self) -> PrivateBroker:
        return self.node.node

    @property
    def tls_port(self) -> int:
        return self.node.tls_port

    def amqps(self, host: str = HOST, port: int | None = None) -> str:
        return f"amqps://guest:guest@{host}:{port or self.tls_port}/%2F"

    def plain(self, port: int | None = None) -> str:
        return f"amqp://guest:guest@{HOST}:{port or self.broker.port}/%2F"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("tls")
    try:
        node = TlsNode(base)
        redis = PrivateRedis(base / "redis", tls=node.files)
    except (BrokerUnavailable, NoRedisServer) as error:
        pytest.skip(str(error))
    try:
        node.start()
        redis.start()
        yield Servers(node, redis)
    finally:
        redis.stop()
        node.destroy()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path, LOG_FORMAT="json", STORE_URL="", CONNECT_TIMEOUT=CONNECT_TIMEOUT)
    yield launcher
    launcher.kill_all()


def test_the_pipeline_runs_over_amqps_and_rediss(servers: Servers, launch: Launcher) -> None:
    tls = {"AMQP_URL": servers.amqps(), "AMQP_CA_FILE": servers.files.ca}
    keys = StoreKeys(servers.redis.url, ca_file=servers.redis.ca_file)
    last = launch("last", EXPECTED_MESSAGES=COUNT, **tls, **keys.env)
    services = [
        launch("service", q, RABBITMQ_QUEUE=q, RABBITMQ_NEXT_QUEUE=following_queue(q), **tls)
        for q in STAGES
    ]
    first = launch("first", NUMBER_OF_MESSAGES=COUNT, PUBLISH_RATE=1000, **tls)
    assert first.wait(60) == 0, first.tail()
    assert last.wait(120) == 0, last.tail()

    assert_all_completed_once(last.messages("completed"), COUNT)
    assert len(keys.records()) == COUNT  # read back over rediss, verified
    for proc in (first, last, *services):
        [connected, *_] = proc.messages("connected")
        assert connected["url"].startswith(f"amqps://guest:***@{HOST}:{servers.tls_port}/")
    # The broker's side: every connection still open (the services') is a TLS one.
    rows = servers.broker.rabbitmqctl("list_connections", "ssl", "-q", "--no-table-headers")
    assert rows.split() == ["true"] * len(services), rows


@pytest.mark.parametrize(
    ("url", "ca", "words"),
    [
        (
            lambda s: s.amqps(),
            lambda f: f.other_ca,
            "its certificate is not signed by a CA this process trusts (self-signed certificate "
            "in certificate chain): set AMQP_CA_FILE to the CA that signed it",
        ),
        (
            lambda s: s.amqps(host="127.0.0.1"),
            lambda f: f.ca,
            "its certificate does not name the host dialled (IP address mismatch, certificate "
            "is not valid for '127.0.0.1'.): connect by a name the certificate holds",
        ),
        (
            lambda s: s.plain(port=s.tls_port),
            lambda f: None,
            "it speaks TLS on this port: use amqps:// (and AMQP_CA_FILE for its CA)",
        ),
        (
            lambda s: s.amqps(port=s.broker.port),
            lambda f: f.ca,
            "it does not speak TLS on this port: use amqp://, or its TLS port",
        ),
    ],
    ids=["wrong CA", "wrong name", "plain to the TLS port", "TLS to the plain port"],
)
def test_a_broker_that_cannot_be_verified_ends_the_process_in_one_line(
    servers: Servers, launch: Launcher, url, ca, words
) -> None:
    service = launch("service", AMQP_URL=url(servers), AMQP_CA_FILE=ca(servers.files) or "")
    assert service.wait(REFUSED_WITHIN) == 1, service.tail()
    [error] = service.errors()
    shown = url(servers).replace(":guest@", ":***@")
    assert error["message"] == f"cannot connect to the broker at {shown}: {words}"
    assert not service.messages("broker not reachable, retrying")
    assert service.stderr() == ""


@pytest.mark.parametrize(
    ("url", "ca", "words"),
    [
        (
            lambda s: s.redis.url,
            lambda f: f.other_ca,
            "its certificate is not signed by a CA this process trusts (self-signed certificate "
            "in certificate chain): set STORE_CA_FILE to the CA that signed it",
        ),
        (
            lambda s: s.redis.url.replace(HOST, "127.0.0.1"),
            lambda f: f.ca,
            "its certificate does not name the host dialled (IP address mismatch, certificate "
            "is not valid for '127.0.0.1'.): connect by a name the certificate holds",
        ),
        (
            lambda s: s.redis.url.replace("rediss://", "redis://"),
            lambda f: None,
            "it speaks TLS on this port: use rediss:// (and STORE_CA_FILE for its CA)",
        ),
    ],
    ids=["wrong CA", "wrong name", "plain to the TLS port"],
)
def test_a_store_that_cannot_be_verified_ends_last_in_one_line(
    servers: Servers, launch: Launcher, url, ca, words
) -> None:
    store = {"STORE_URL": url(servers), "STORE_CA_FILE": ca(servers.files) or ""}
    last = launch("last", AMQP_URL=servers.plain(), **store)
    assert last.wait(REFUSED_WITHIN) == 1, last.tail()
    [error] = last.errors()
    assert error["message"] == f"cannot connect to the store at {url(servers)}: {words}"
    assert not last.messages("the store does not answer yet; messages wait for it")
    assert last.stderr() == ""


def test_the_topology_step_says_in_one_line_why_it_cannot_verify_the_broker(
    servers: Servers, launch: Launcher
) -> None:
    """Compose's one-shot `topology` step, with a CA that did not sign the broker's certificate:
    the operator sees what to fix, not a traceback."""
    topology = launch(
        "provision.topology", AMQP_URL=servers.amqps(), AMQP_CA_FILE=servers.files.other_ca
    )
    assert topology.wait(REFUSED_WITHIN) == 1, topology.tail()
    shown = servers.amqps().replace(":guest@", ":***@")
    assert topology.stderr().splitlines() == [
        f"topology: cannot connect to the broker at {shown}: its certificate is not signed by a "
        "CA this process trusts (self-signed certificate in certificate chain): set AMQP_CA_FILE "
        "to the CA that signed it"
    ]


def test_a_port_is_asked_which_protocol_it_speaks(servers: Servers) -> None:
    """What decides the two cases a handshake alone cannot tell from an outage."""
    [closed] = free_ports(1)
    assert handshake_answer(HOST, servers.tls_port) is True  # the broker's TLS listener
    assert handshake_answer(HOST, servers.redis.port) is True  # the store's
    assert handshake_answer(HOST, servers.broker.port) is False  # AMQP in clear answers
    assert handshake_answer(HOST, closed) is None  # nothing learnt: retried as an outage
