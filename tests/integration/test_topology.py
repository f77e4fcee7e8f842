"""The topology against the real broker: dead-lettering, delivery limits, clashes."""

from __future__ import annotations

import dataclasses

import pika
import pytest

from common.settings import BrokerSettings
from common.topology import queue_arguments
from harness.broker import Vhost
from harness.processes import wait_for
from tests.unit.test_topology import CLASSIC, QUORUM


def declare(channel, settings: BrokerSettings) -> None:
    channel.confirm_delivery()  # so a publish is in the queue before the next basic_get
    for name in (settings.dead_letter_queue, "service_a"):
        channel.queue_declare(name, durable=True, arguments=queue_arguments(name, settings))


def dead_lettered(vhost: Vhost) -> None:
    """Wait for the broker's dead-lettering, which follows the reject a moment later (a quorum
    queue's dead-letter publish goes through its Raft log): the reject's reply does not wait
    for it."""
    wait_for(lambda: vhost.depth("dead_letter") == 1, 10, "the message in dead_letter")


@pytest.mark.parametrize("settings", [QUORUM, CLASSIC], ids=["quorum", "classic"])
def test_rejected_messages_go_to_the_dead_letter_queue(
    vhost: Vhost, settings: BrokerSettings
) -> None:
    with vhost.channel() as channel:
        declare(channel, settings)
        channel.basic_publish("", "service_a", b"reject me")
        method, _, _ = channel.basic_get("service_a")
        channel.basic_reject(method.delivery_tag, requeue=False)
    dead_lettered(vhost)
    [(properties, body)] = vhost.drain("dead_letter")
    assert body == b"reject me"
    [death] = properties.headers["x-death"]
    assert death["queue"] == "service_a"
    assert death["reason"] == "rejected"
    assert vhost.depth("service_a") == 0


def test_quorum_delivery_limit_dead_letters_a_message_requeued_too_often(vhost: Vhost) -> None:
    settings = dataclasses.replace(QUORUM, delivery_limit=2)
    deliveries = 0
    with vhost.channel() as channel:
        declare(channel, settings)
        channel.basic_publish("", "service_a", b"poison")
        while deliveries < 10:
            method, _, _ = channel.basic_get("service_a")
            if method is None:
                break
            deliveries += 1
            channel.basic_nack(method.delivery_tag, requeue=True)
    assert deliveries == settings.delivery_limit + 1
    dead_lettered(vhost)
    [(properties, body)] = vhost.drain("dead_letter")
    assert body == b"poison"
    assert properties.headers["x-death"][0]["reason"] == "delivery_limit"


def test_declaring_with_other_arguments_is_refused(vhost: Vhost) -> None:
    """Why the connection reports a clash: a classic queue cannot be redeclared as quorum."""
    with vhost.channel() as channel:
        declare(channel, CLASSIC)
    with vhost.channel() as channel, pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        declare(channel, QUORUM)
    assert err.value.reply_code == 406
