"""Malformed messages in the real pipeline: each is dead-lettered once, with its reason, and
nothing else is disturbed: the good messages complete and every service keeps running."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import pika

from common.messages import CONTENT_TYPE, InvalidMessage, Message
from common.topology import PIPELINE_QUEUES, STAGES
from harness.broker import Vhost, rabbitmqctl
from harness.processes import Proc, wait_for

MAX_BODY_BYTES = 4096  # the default


def good_properties(message_id: str | None = None, data: bool = True) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message_id,
        headers={"data": json.dumps({"created_at": time.time()})} if data else None,
    )


@dataclass(frozen=True)
class Bad:
    kind: str
    body: bytes
    properties: Callable[[], pika.BasicProperties]
    reason_contains: str

    def expected_reason(self) -> str:
        """The reason the consumer gives: exactly what decoding says (checked to be the kind)."""
        try:
            Message.decode(self.body, self.properties(), MAX_BODY_BYTES)
        except InvalidMessage as error:
            reason = str(error)
        else:
            raise AssertionError(f"{self.kind} decodes fine")
        assert self.reason_contains in reason, reason
        return reason


def bad(kind: str, body: bytes, reason_contains: str, **properties: object) -> Bad:
    message_id = properties.get("message_id", f"bad-{kind}")
    data = bool(properties.get("data", True))
    return Bad(kind, body, lambda: good_properties(message_id, data), reason_contains)


BAD = [
    bad("invalid-utf8", b'["seq-9001\xff"]', "body is not UTF-8"),
    bad("not-json", b"this is not json", "body is not JSON"),
    bad("json-object", b'{"history": ["seq-9002"]}', "body must be a JSON array, got dict"),
    bad("empty-array", b"[]", "body must hold 1 to 16 items, got 0"),
    bad("wrong-first-item", b'["first-9003","service_a"]', "body must start with 'seq-<n>'"),
    bad("non-string-item", b'["seq-9004",7]', "body items must be strings"),
    bad("over-max-body", b'["seq-9005","' + b"x" * 5000 + b'"]', "over the limit of 4096"),
    bad("deeply-nested", b"[" * 4000, "body is not JSON: depth limit exceeded"),
    bad("no-message-id", b'["seq-9006"]', "message_id", message_id=None),
    bad("no-data-header", b'["seq-9007"]', "header 'data' is missing", data=False),
]


def until(condition: Callable[[], object], timeout: float, what: str, *alive: Proc) -> None:
    """wait_for, failing at once (with its output) if one of `alive` exits meanwhile."""

    def check() -> object:
        for proc in alive:
            if not proc.running:
                raise AssertionError(
                    f"{proc.name} exited with {proc.exit_code} while waiting for "
                    f"{what}:\n{proc.tail()}"
                )
        return condition()

    wait_for(check, timeout, what)


def start_pipeline(start, start_services, vhost: Vhost, good: int, **env: object):
    last = start("last", EXPECTED_MESSAGES=good, **env)
    services = start_services(**env)
    procs = [last, *services.values()]
    until(
        lambda: all(p.messages("consuming") for p in procs), 30, "every process consuming", *procs
    )
    return last, services


def publish_interleaved(vhost: Vhost, good: int, bad: list[Bad]) -> None:
    """Good messages seq-1 … seq-N with one bad message after each of the first ones."""
    for seq in range(1, good + 1):
        body, properties = Message.first(seq, time.time()).encode()
        vhost.publish("service_a", body, properties)
        if seq <= len(bad):
            vhost.publish("service_a", bad[seq - 1].body, bad[seq - 1].properties())
    for extra in bad[good:]:
        vhost.publish("service_a", extra.body, extra.properties())


def check_outcome(
    vhost: Vhost, last: Proc, services: dict[str, Proc], good: int, bad: list[Bad]
) -> None:
    service_a = services["service_a"]
    procs = list(services.values())
    until(lambda: not last.running, 60, "last to finish", *procs)
    assert last.wait(5) == 0, last.tail()
    until(
        lambda: (
            vhost.depth("dead_letter") >= len(bad)
            and len(service_a.messages("dead-lettered")) >= len(bad)
        ),
        30,
        f"{len(bad)} messages dead-lettered",
        *procs,
    )

    # Every good message completed once, through every stage.
    completed = last.messages("completed")
    assert sorted(int(r["history"][0].removeprefix("seq-")) for r in completed) == list(
        range(1, good + 1)
    )
    assert all(r["history"][1:] == list(STAGES) for r in completed)
    assert last.messages("duplicate") == []

    # Each bad message is in the dead-letter queue once: its original body, with the reason.
    dead = vhost.drain("dead_letter")
    assert len(dead) == len(bad), [body[:40] for _, body in dead]
    by_body = {body: properties for properties, body in dead}
    assert len(by_body) == len(bad)
    for case in bad:
        assert case.body in by_body, f"{case.kind} not dead-lettered with its original body"
        properties = by_body[case.body]
        headers = properties.headers or {}
        assert headers.get("x-error-reason") == case.expected_reason(), case.kind
        assert headers.get("x-error-queue") == "service_a", case.kind
        assert headers.get("x-error-at"), case.kind
        assert properties.message_id == case.properties().message_id, case.kind

    # Each service is still running; service_a logged one warning per bad message, the others
    # none; nothing is left in the pipeline's queues.
    for proc in procs:
        assert proc.running, f"{proc.name} exited:\n{proc.tail()}"
    warnings = service_a.messages("dead-lettered")
    assert len(warnings) == len(bad)
    assert {w["level"] for w in warnings} == {"WARNING"}
    assert {w["queue"] for w in warnings} == {"service_a"}
    assert sorted(w["reason"] for w in warnings) == sorted(c.expected_reason() for c in bad)
    for stage in STAGES[1:]:
        assert services[stage].messages("dead-lettered") == []
    for proc in procs:
        assert [r for r in proc.records() if r["level"] == "ERROR"] == [], proc.tail()
        assert "Traceback" not in proc.stderr(), proc.stderr()
    for queue in PIPELINE_QUEUES:
        assert vhost.depth(queue) == 0, queue


def test_every_kind_of_malformed_message_is_dead_lettered_once(
    start, start_services, vhost: Vhost
) -> None:
    good = 20
    last, services = start_pipeline(start, start_services, vhost, good)
    publish_interleaved(vhost, good, BAD)
    check_outcome(vhost, last, services, good, BAD)


def test_classic_queues_dead_letter_too(start, start_services, vhost: Vhost) -> None:
    good = 5
    bad = [BAD[1]]  # not JSON
    last, services = start_pipeline(start, start_services, vhost, good, QUEUE_TYPE="classic")
    types = {
        q["name"]: q["type"]
        for q in json.loads(
            rabbitmqctl("list_queues", "-p", vhost.name, "name", "type", "--formatter", "json")
        )
    }
    assert types == dict.fromkeys([*PIPELINE_QUEUES, "dead_letter"], "classic")
    publish_interleaved(vhost, good, bad)
    check_outcome(vhost, last, services, good, bad)


def test_a_huge_integer_timestamp_is_dead_lettered_at_once(
    start, start_services, vhost: Vhost
) -> None:
    good = 3
    last, services = start_pipeline(start, start_services, vhost, good)
    huge = pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id="bad-huge-integer",
        headers={"data": '{"created_at": ' + "1" * 400 + "}"},
    )
    vhost.publish("service_a", b'["seq-9008"]', huge)
    publish_interleaved(vhost, good, [])
    procs = list(services.values())
    until(lambda: not last.running, 60, "last to finish", *procs)
    until(lambda: vhost.depth("dead_letter") >= 1, 30, "the message dead-lettered", *procs)
    [(properties, body)] = vhost.drain("dead_letter")
    assert body == b'["seq-9008"]'
    # Past a double's range: not JSON to orjson, dead-lettered at once all the same.
    assert "header 'data' is not JSON: number is infinity" in properties.headers["x-error-reason"]
    assert services["service_a"].messages("processing failed, requeued") == []
