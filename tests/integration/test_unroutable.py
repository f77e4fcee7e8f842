"""A deleted queue is a broken topology, not a bad message: nothing is dropped or dead-lettered.

Publishes are `mandatory`, so a message for a missing queue comes back instead of vanishing;
the process then reconnects and declares its queues again, and the message goes through.
"""

from __future__ import annotations

import json

import pytest

from common.messages import Message
from harness.processes import wait_for

REDECLARED = "starting over on a new connection"


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
def test_a_deleted_next_queue_is_declared_again(start, vhost, queue_type: str) -> None:
    service = start("service", QUEUE_TYPE=queue_type, RABBITMQ_QUEUE="service_a")
    wait_for(lambda: service.messages("consuming"), 30, "service_a to consume")
    with vhost.channel() as channel:
        channel.queue_delete("service_b")  # someone deletes the next queue at run time
    vhost.publish("service_a", *Message.first(1, 1.0).encode())

    wait_for(lambda: vhost.depth("service_b") == 1, 30, "the message in service_b")
    [(_, body)] = vhost.drain("service_b")
    assert json.loads(body) == ["seq-1", "service_a"]
    [reconnect] = service.messages(REDECLARED)
    assert "service_b" in reconnect["reason"]
    assert vhost.depth("dead_letter") == 0
    assert service.running


def test_a_deleted_dead_letter_queue_is_declared_again(start, vhost) -> None:
    service = start("service", RABBITMQ_QUEUE="service_a")
    wait_for(lambda: service.messages("consuming"), 30, "service_a to consume")
    with vhost.channel() as channel:
        channel.queue_delete("dead_letter")
    vhost.publish("service_a", b"not json", Message.first(1, 1.0).encode()[1])

    wait_for(lambda: vhost.depth("dead_letter") == 1, 30, "the bad message, dead-lettered")
    [(properties, body)] = vhost.drain("dead_letter")
    assert body == b"not json"
    assert properties.headers["x-error-reason"].startswith("body is not JSON")
    assert service.messages(REDECLARED)


def test_a_deleted_input_queue_is_declared_again_and_consumed(start, vhost) -> None:
    """The broker cancels the consumer of a deleted queue; a consumer that ignored that would sit
    idle for ever while the queue, declared again by its publisher, fills up."""
    service = start("service", RABBITMQ_QUEUE="service_a")
    wait_for(lambda: service.messages("consuming"), 30, "service_a to consume")
    with vhost.channel() as channel:
        channel.queue_delete("service_a")
    wait_for(lambda: len(service.messages("consuming")) == 2, 30, "service_a to consume again")
    vhost.publish("service_a", *Message.first(1, 1.0).encode())
    wait_for(lambda: vhost.depth("service_b") == 1, 30, "the message in service_b")


def test_first_declares_a_deleted_queue_again(start, vhost) -> None:
    """(Classic queue: deleting a quorum queue that is being published to makes RabbitMQ 3.10
    close the publisher's connection instead; `first` then reconnects all the same.)"""
    first = start("first", NUMBER_OF_MESSAGES=6000, PUBLISH_RATE=2000, QUEUE_TYPE="classic")
    wait_for(lambda: vhost.depth("service_a") > 100, 30, "messages to arrive")
    with vhost.channel() as channel:
        channel.queue_delete("service_a")
    assert first.wait(60) == 0, first.tail()
    assert first.messages(REDECLARED)
    assert vhost.depth("service_a") > 0
