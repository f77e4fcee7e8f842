"""Input built to hurt, through the real broker: headers pika cannot decode, headers as large as
a frame allows, histories out of stage order. Each is dead-lettered with its reason; the good
messages around it complete, and no connection is lost on the way."""

from __future__ import annotations

import json

import pika

from common.messages import CONTENT_TYPE, Message
from common.topology import STAGES
from harness.broker import Vhost
from harness.processes import Proc
from tests.integration.test_bad_input import until
from tests.unit.test_frames import HOSTILE, properties_with

# The hostile tables RabbitMQ stores and delivers (it refuses a field type it does not know
# itself, closing the publisher's connection with 541 INTERNAL_ERROR).
PASSED_ON = ("timestamp past 9999", "nested past the recursion limit")


class RawProperties(pika.BasicProperties):
    """Properties sent exactly as given: pika cannot encode what a hostile client can."""

    def __init__(self, encoded: bytes) -> None:
        super().__init__()
        self._encoded = encoded

    def encode(self) -> list[bytes]:
        return [self._encoded]


def start_service_a(start, **env: object) -> Proc:
    service = start("service", "service_a", RABBITMQ_QUEUE="service_a", **env)
    until(lambda: service.messages("consuming"), 30, "service_a consuming", service)
    return service


def dead_letters(
    vhost: Vhost, count: int, service: Proc
) -> list[tuple[pika.BasicProperties, bytes]]:
    until(lambda: vhost.depth("dead_letter") >= count, 30, f"{count} dead letters", service)
    return vhost.drain("dead_letter")


def test_headers_pika_cannot_decode_do_not_take_the_service_down(start, vhost: Vhost) -> None:
    vhost.declare("service_a", "service_b", "dead_letter")
    good = 20
    with vhost.channel() as channel:
        channel.confirm_delivery()
        for seq in range(1, good + 1):
            channel.basic_publish("", "service_a", *Message.first(seq, 1.0).encode())
            if seq % 5 == 0:  # hostile tables of each kind, among the good messages
                kind = PASSED_ON[(seq // 5) % len(PASSED_ON)]
                raw = RawProperties(properties_with(HOSTILE[kind]))
                channel.basic_publish("", "service_a", b'["seq-0"]', raw)
    service = start_service_a(start)
    until(lambda: vhost.depth("service_b") == good, 30, f"{good} messages in service_b", service)
    dead = dead_letters(vhost, 4, service)
    assert len(dead) == 4
    for properties, body in dead:
        assert body == b'["seq-0"]'
        assert properties.headers["x-error-reason"].startswith(
            "pika cannot decode the message's headers ("
        )
        assert properties.headers["x-error-queue"] == "service_a"
        assert properties.message_id == "id-1"
    assert len(service.messages("connected")) == 1  # never reconnected
    assert service.running


def test_a_dead_letter_copy_always_fits_the_frame(start, vhost: Vhost) -> None:
    """Headers just under the broker's frame limit (128 KiB): the copy must still be sent."""
    vhost.declare("service_a", "service_b", "dead_letter")
    big = {"data": json.dumps({"created_at": 1.0}), "padding": "x" * 120_000}
    with vhost.channel() as channel:
        channel.confirm_delivery()
        for n in range(3):
            properties = pika.BasicProperties(
                content_type=CONTENT_TYPE, message_id=f"big-{n}", headers=big
            )
            channel.basic_publish("", "service_a", b"not json", properties)
        channel.basic_publish("", "service_a", *Message.first(1, 1.0).encode())
    service = start_service_a(start)
    dead = dead_letters(vhost, 3, service)
    for properties, body in dead:
        assert body == b"not json"
        assert properties.headers["x-error-reason"].startswith("body is not JSON")
        assert properties.headers["x-error-headers-dropped"].startswith("the original headers (")
        assert "padding" not in properties.headers
    until(lambda: vhost.depth("service_b") == 1, 30, "the good message in service_b", service)
    assert len(service.messages("connected")) == 1


def test_histories_out_of_stage_order_are_dead_lettered(start, start_services, vhost) -> None:
    """The issue's four cases, and the pipeline logs only what went through every stage."""
    last = start("last", EXPECTED_MESSAGES=1)
    services = start_services()
    procs = [last, *services.values()]
    until(lambda: all(p.messages("consuming") for p in procs), 30, "all consuming", *procs)
    finished = Message.first(9, 1.0)
    for stage in STAGES:
        finished = finished.stamped(stage, 2.0)
    wrong = [
        ("service_c", Message.first(7, 1.0)),
        ("service_a", Message.first(8, 1.0).stamped("service_b", 2.0)),
        ("service_a", finished),
        ("service_log", Message.first(10, 1.0)),
    ]
    for queue, message in wrong:
        vhost.publish(queue, *message.encode())
    vhost.publish("service_a", *Message.first(1, 1.0).encode())
    until(lambda: not last.running, 60, "last to complete the good message", *procs[1:])
    assert [r["history"][0] for r in last.messages("completed")] == ["seq-1"]
    dead = dead_letters(vhost, len(wrong), services["service_a"])
    reasons = sorted(properties.headers["x-error-reason"] for properties, _ in dead)
    assert len(reasons) == 4
    assert all(" is out of order for " in reason for reason in reasons), reasons
    assert sorted(p.headers["x-error-queue"] for p, _ in dead) == sorted(q for q, _ in wrong)
