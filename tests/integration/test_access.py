"""A user per role, tried as an intruder would: each role may do its job and nothing more, and
the broker says so with its own codes (403 ACCESS_REFUSED, 406 PRECONDITION_FAILED).

The vhost and its users come from the same definitions compose seeds its broker with
(`harness.access`, `provision`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pika
import pika.exceptions
import pytest

from common.messages import Message
from common.settings import BrokerSettings, Env
from common.topology import queue_arguments
from harness.access import AccessVhost
from harness.broker import connect
from harness.processes import wait_for
from provision.topology import pipeline_queues

ALLOWED = None
REFUSED = 403  # ACCESS_REFUSED
FORGED = 406  # PRECONDITION_FAILED: user_id is not the login's

Channel = pika.adapters.blocking_connection.BlockingChannel


@dataclass(frozen=True)
class Operation:
    label: str
    run: Callable[[Channel, AccessVhost], object]

    def __str__(self) -> str:
        return self.label


def consume(queue: str) -> Operation:
    return Operation(f"consume {queue}", lambda ch, _: ch.basic_consume(queue, lambda *_: None))


def purge(queue: str) -> Operation:
    return Operation(f"purge {queue}", lambda channel, _: channel.queue_purge(queue))


def delete(queue: str) -> Operation:
    return Operation(f"delete {queue}", lambda channel, _: channel.queue_delete(queue))


def declare(queue: str) -> Operation:
    arguments = queue_arguments(queue, BrokerSettings.from_env(Env({})))
    return Operation(
        f"declare {queue}",
        lambda channel, _: channel.queue_declare(queue, durable=True, arguments=arguments),
    )


def check(queue: str) -> Operation:
    """A passive declare (does it exist?): no right is needed."""
    return Operation(f"check {queue}", lambda ch, _: ch.queue_declare(queue, passive=True))


def bind(queue: str) -> Operation:
    return Operation(
        f"bind {queue}", lambda ch, _: ch.queue_bind(queue, "amq.direct", routing_key="x")
    )


def publish(queue: str, as_role: str | None = None, exchange: str = "") -> Operation:
    """Publish to `queue` with `as_role`'s user in user_id (None: no user_id), confirmed."""

    def run(channel: Channel, vhost: AccessVhost) -> None:
        user_id = vhost.role(as_role).user if as_role else None
        channel.confirm_delivery()
        properties = pika.BasicProperties(user_id=user_id)
        channel.basic_publish(exchange, queue, b"[]", properties, mandatory=True)

    return Operation(f"publish to {exchange or 'default'}/{queue} as {as_role}", run)


DECLARE_EXCHANGE = Operation(
    "declare an exchange", lambda channel, _: channel.exchange_declare("intruders", "fanout")
)


# (role, what it tries, the broker's answer): the roles' jobs first, then what is not theirs.
MATRIX = [
    ("first", publish("service_a", "first"), ALLOWED),
    ("first", check("service_a"), ALLOWED),
    ("first", publish("service_a", "service_a"), FORGED),
    ("first", consume("service_a"), REFUSED),
    ("first", declare("service_a"), REFUSED),
    ("first", purge("service_a"), REFUSED),
    ("service_a", consume("service_a"), ALLOWED),
    ("service_a", declare("service_a"), ALLOWED),
    ("service_a", purge("service_a"), ALLOWED),  # its own input
    ("service_a", publish("service_b", "service_a"), ALLOWED),
    ("service_a", publish("dead_letter", "service_a"), ALLOWED),
    ("service_a", check("service_b"), ALLOWED),
    ("service_a", consume("service_c"), REFUSED),
    ("service_a", consume("dead_letter"), REFUSED),
    ("service_a", purge("service_c"), REFUSED),
    ("service_a", delete("service_c"), REFUSED),
    ("service_a", delete("dead_letter"), REFUSED),
    ("service_a", declare("service_b"), REFUSED),
    ("service_a", declare("service_a_copy"), REFUSED),  # the patterns are anchored
    ("service_a", bind("service_a"), REFUSED),
    ("service_a", DECLARE_EXCHANGE, REFUSED),
    ("service_a", publish("service_c", "first"), FORGED),
    ("service_a", publish("service_c", "service_b"), FORGED),
    ("service_a", publish("service_b", "service_a", exchange="amq.direct"), REFUSED),
    ("service_c", consume("service_c"), ALLOWED),
    ("service_c", publish("service_log", "service_c"), ALLOWED),
    ("service_c", consume("service_log"), REFUSED),
    ("last", consume("service_log"), ALLOWED),
    ("last", consume("service_a"), REFUSED),
    ("last", delete("service_c"), REFUSED),
    ("last", publish("service_log", "service_c"), FORGED),
    ("monitor", check("service_a"), ALLOWED),
    ("monitor", publish("service_a"), REFUSED),
    ("monitor", publish("service_a", "monitor"), REFUSED),
    ("monitor", consume("service_log"), REFUSED),
    ("monitor", purge("dead_letter"), REFUSED),
    ("monitor", declare("service_a"), REFUSED),
    ("admin", consume("dead_letter"), ALLOWED),
    ("admin", purge("service_c"), ALLOWED),
]


@pytest.fixture(scope="module")
def seeded(base_url: str) -> Iterator[AccessVhost]:
    vhost = AccessVhost(base_url)
    yield vhost
    vhost.delete()


def answer(vhost: AccessVhost, role: str, operation: Operation) -> int | None:
    """None if `role` may do it, else the code with which the broker closed the channel."""
    connection = connect(vhost.url_of(role))
    try:
        operation.run(connection.channel(), vhost)
    except pika.exceptions.ChannelClosedByBroker as closed:
        return closed.reply_code
    finally:
        if connection.is_open:
            connection.close()
    return None


@pytest.mark.parametrize(
    ("role", "operation", "expected"), MATRIX, ids=[f"{r}: {o}" for r, o, _ in MATRIX]
)
def test_each_role_may_do_its_job_and_nothing_more(
    seeded: AccessVhost, role: str, operation: Operation, expected: int | None
) -> None:
    assert answer(seeded, role, operation) == expected


# -- an intruder inside the network ----------------------------------------------------------


@pytest.fixture
def vhost(seeded: AccessVhost) -> AccessVhost:
    """This module's processes run in the seeded vhost (the `start` fixture's AMQP_URL is the
    test's own; each process is given its role's login), emptied of what the matrix put in its
    queues."""
    for queue in pipeline_queues(BrokerSettings.from_env(Env({}))):
        seeded.drain(queue)
    return seeded


def reaching_service_c(seq: int) -> tuple[bytes, pika.BasicProperties]:
    """A well-formed message as service_b would send it on: nothing in it betrays a forgery."""
    now = time.time()
    message = Message.first(seq, now).stamped("service_a", now).stamped("service_b", now)
    return message.encode()


def publish_as(vhost: AccessVhost, role: str, seqs: range, user_id: str | None) -> None:
    connection = connect(vhost.url_of(role))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for seq in seqs:
            body, properties = reaching_service_c(seq)
            properties.user_id = user_id
            channel.basic_publish("", "service_c", body, properties, mandatory=True)
    finally:
        connection.close()


def test_what_service_a_writes_straight_into_service_c_never_reaches_last(
    start, vhost: AccessVhost
) -> None:
    """The default exchange lets service_a's user write into any queue; service_c takes only
    what service_b's user sent (RabbitMQ vouches for user_id), and dead-letters the rest."""
    last = start("last", EXPECTED_MESSAGES=3, **vhost.env_of("last"))
    start(
        "service",
        "service_c",
        RABBITMQ_QUEUE="service_c",
        RABBITMQ_NEXT_QUEUE="service_log",
        **vhost.env_of("service_c"),
    )
    intruder, expected = vhost.role("service_a").user, vhost.role("service_b").user
    publish_as(vhost, "service_a", range(101, 102), user_id=None)
    publish_as(vhost, "service_a", range(102, 103), user_id=intruder)
    publish_as(vhost, "service_b", range(1, 4), user_id=expected)

    assert last.wait(60) == 0, last.tail()
    assert sorted(r["history"][0] for r in last.messages("completed")) == [
        "seq-1",
        "seq-2",
        "seq-3",
    ]
    wait_for(lambda: vhost.depth("dead_letter") == 2, 30, "both forgeries dead-lettered")
    dead = {
        json.loads(body)[0]: properties.headers for properties, body in vhost.drain("dead_letter")
    }
    accepts = f"service_c accepts messages only from user {expected!r}"
    assert dead["seq-101"]["x-error-reason"] == f"sent by no user: {accepts}"
    assert dead["seq-102"]["x-error-reason"] == f"sent by user {intruder!r}: {accepts}"
    assert dead["seq-102"]["x-original-user-id"] == intruder
