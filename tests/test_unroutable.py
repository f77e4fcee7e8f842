"""A publish the broker cannot route comes back (mandatory) and is never silently dropped."""

from __future__ import annotations

import json

import pytest

from common.messages import Message
from tests.support import wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("queue_type", "attempts"), [("quorum", 5), ("classic", 2)])
def test_output_to_a_deleted_queue_is_retried_then_dead_lettered(
    start, vhost, queue_type: str, attempts: int
) -> None:
    service = start("service", QUEUE_TYPE=queue_type, RABBITMQ_QUEUE="service_a")
    wait_for(lambda: service.messages("consuming"), 30, "service_a to consume")
    with vhost.channel() as channel:
        channel.queue_delete("service_b")  # someone deletes the next queue at run time
    vhost.publish("service_a", *Message.first(1, 1.0).encode())

    wait_for(lambda: vhost.depth("dead_letter") == 1, 30, "the message to be dead-lettered")
    [(properties, body)] = vhost.drain("dead_letter")
    assert json.loads(body) == ["seq-1"]
    reason = properties.headers["x-error-reason"]
    assert reason.startswith(f"failed {attempts} times: output not accepted: unroutable")
    assert "service_b" in reason
    assert len(service.messages("processing failed, requeued")) == attempts - 1
    assert service.popen.poll() is None


def test_first_reports_messages_it_could_not_route(start, vhost) -> None:
    """`first` declares its queue; if it is deleted mid-run the returned messages count as
    not confirmed and first exits 1 saying how many. (Classic queue: deleting a quorum queue
    that is being published to makes RabbitMQ 3.10 close the publisher's connection instead;
    `first` then reconnects, declares the queue again and publishes what was unconfirmed.)"""
    first = start("first", NUMBER_OF_MESSAGES=6000, PUBLISH_RATE=2000, QUEUE_TYPE="classic")
    wait_for(lambda: first.messages("connected"), 30, "first to connect")
    wait_for(lambda: vhost.depth("service_a") > 100, 30, "messages to arrive")
    with vhost.channel() as channel:
        channel.queue_delete("service_a")
    assert first.wait(60) == 1
    [summary] = [r for r in first.records() if "were not confirmed" in r["message"]]
    assert summary["unconfirmed"] > 0
    failures = first.messages("message not confirmed")
    assert failures and "unroutable" in failures[0]["reason"]
