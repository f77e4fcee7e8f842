"""One message, one trace from `first` to `last`, over the wire: first → service_a/b/c → last as
processes on the real broker, exporting over OTLP/HTTP to a receiver in the test."""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Iterator

import pytest

from common.topology import STAGES
from harness.broker import Vhost
from harness.otlp_receiver import Receiver, Span
from harness.pipeline import PipelineRun
from harness.private_broker import free_ports
from harness.processes import wait_for

COUNT = 6
POISON = 4  # service_b fails on seq-4 every time: requeued, redelivered, then dead-lettered
DELIVERY_LIMIT = 3
# Each process's batch processor posts every 100 ms here, so that the spans arrive while the
# test waits rather than at each process's exit.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": 100}
CANNOT_EXPORT = (
    "traces cannot be exported: spans are dropped until the collector answers "
    "(check OTEL_EXPORTER_OTLP_ENDPOINT)"
)
# A good message's path, each span the parent of the next: (service, span name).
CHAIN = [
    ("first", "send service_a"),
    ("service_a", "process service_a"),
    ("service_a", "send service_b"),
    ("service_b", "process service_b"),
    ("service_b", "send service_c"),
    ("service_c", "process service_c"),
    ("service_c", "send service_log"),
    ("last", "process service_log"),
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver().running() as running:
        yield running


def traces(spans: list[Span]) -> dict[str, list[Span]]:
    found: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        found[span.trace_id].append(span)
    return found


def path_to_root(span: Span, by_id: dict[str, Span]) -> list[tuple[str, str]]:
    """The span and its ancestors, as (service, name), root first."""
    path = []
    while span is not None:
        path.append((span.service, span.name))
        span = by_id.get(span.parent_id)
    return path[::-1]


def test_every_message_is_one_trace_from_first_to_last_with_its_failures_said(
    start, vhost: Vhost, receiver: Receiver
) -> None:
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "DELIVERY_LIMIT": DELIVERY_LIMIT,
        **FAST_EXPORT,
    }
    run = PipelineRun(start, vhost, COUNT, env=otel)
    last = run.start_last(EXPECTED_MESSAGES=COUNT - 1)
    for stage in STAGES:
        run.start_service(stage, **({"FAIL_ON_SEQ": POISON} if stage == "service_b" else {}))
    first = run.start_first()
    assert first.wait(60) == 0, first.tail()
    assert last.wait(60) == 0, last.tail()  # it exits once every good message is in

    def complete() -> dict[str, list[Span]]:
        found = traces(receiver.spans())
        ended = [t for t in found.values() if any(s.name == "store write" for s in t)]
        poisoned = [t for t in found.values() if any(s.error and "dead" in s.error for s in t)]
        return found if len(ended) == COUNT - 1 and len(poisoned) == 1 else {}

    found = wait_for(complete, 30, "every message's spans at the receiver")
    assert len(found) == COUNT
    for spans in found.values():
        by_id = {span.span_id: span for span in spans}
        assert len([s for s in spans if not s.parent_id]) == 1  # one root: first's send
        [root] = [s for s in spans if not s.parent_id]
        assert (root.service, root.name, root.kind) == ("first", "send service_a", "producer")
        attempts = [s for s in spans if s.name == "process service_b"]
        if len(attempts) > 1:  # the poison message: every attempt a sibling under one send
            assert len(attempts) == DELIVERY_LIMIT
            assert len({a.parent_id for a in attempts}) == 1
            assert by_id[attempts[0].parent_id].name == "send service_b"
            assert sum(a.attributes.get("rabbithole.redelivered", False) for a in attempts) == (
                DELIVERY_LIMIT - 1
            )
            errors = sorted(a.error or "" for a in attempts)
            dead, *requeued = errors  # in order: d before r
            assert dead.startswith("dead-lettered: ") and "simulated failure on seq-4" in dead
            assert all(e.startswith("requeued after: RuntimeError: simulated") for e in requeued)
            assert not [s for s in spans if s.name == "send service_c"]
            continue
        [store_write] = [s for s in spans if s.name == "store write"]
        assert store_write.kind == "client" and store_write.service == "last"
        path = path_to_root(store_write, by_id)
        assert path == [*CHAIN, ("last", "store write")]
        for span in spans:
            assert span.error is None, span
            if span.kind in ("producer", "consumer"):
                assert span.attributes["messaging.system"] == "rabbitmq"
                assert span.attributes["messaging.destination.name"] == span.name.split()[1]
                assert span.attributes["messaging.message.id"]
            if span.kind == "consumer":
                assert span.attributes["messaging.rabbitmq.message.delivery_tag"] >= 1


def test_a_message_redelivered_after_a_kill_keeps_its_trace(
    start, vhost, receiver: Receiver
) -> None:
    """service_b is SIGKILLed with every message in work: the replica that takes over gets them
    redelivered, and each trace goes on under the same send span, its attempt marked
    redelivered (the killed attempt's span died with its process)."""
    count = 5
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **FAST_EXPORT}
    run = PipelineRun(start, vhost, count, env=otel)
    last = run.start_last(EXPECTED_MESSAGES=count)
    run.start_service("service_a")
    run.start_service("service_c")
    # Work that outlasts the test: whatever this replica takes, it still holds when killed.
    stuck = run.start_service("service_b", RANDOM_WAIT_MIN=600)
    first = run.start_first()
    assert first.wait(60) == 0, first.tail()

    def in_hand() -> bool:
        sent = [s for s in receiver.spans() if s.name == "send service_b"]
        return len(sent) == count and vhost.depth("service_b") == 0

    wait_for(in_hand, 30, "every message sent to service_b and in the hands of its replica")
    stuck.kill()
    run.start_service("service_b")
    assert last.wait(60) == 0, last.tail()

    def complete() -> dict[str, list[Span]]:
        found = traces(receiver.spans())
        ended = [t for t in found.values() if any(s.name == "store write" for s in t)]
        return found if len(ended) == count else {}

    found = wait_for(complete, 30, "every message's spans at the receiver")
    for spans in found.values():
        by_id = {span.span_id: span for span in spans}
        [store_write] = [s for s in spans if s.name == "store write"]
        assert path_to_root(store_write, by_id) == [*CHAIN, ("last", "store write")]
        [attempt] = [s for s in spans if s.name == "process service_b"]
        assert attempt.attributes["rabbithole.redelivered"] is True


def test_the_spans_still_queued_are_flushed_at_exit_and_on_sigterm(
    start, vhost, receiver: Receiver
) -> None:
    """With the SDK's default schedule (a batch every 5 s), what a process ends with is flushed
    as it ends: `first` when it is done, a service when SIGTERM stops it."""
    count = 3
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    service_a = start("service", "service_a", RABBITMQ_QUEUE="service_a", **otel)
    first = start("first", NUMBER_OF_MESSAGES=count, **otel)
    assert first.wait(60) == 0, first.tail()
    assert len([s for s in receiver.spans() if s.service == "first"]) == count
    wait_for(lambda: vhost.depth("service_b") == count, 30, "service_a's outputs in service_b")
    service_a.signal(signal.SIGTERM)
    assert service_a.wait(30) == 0, service_a.tail()
    names = sorted(s.name for s in receiver.spans() if s.service == "service_a")
    assert names == ["process service_a"] * count + ["send service_b"] * count


def test_a_bad_endpoint_is_one_line_and_exit_code_2(start) -> None:
    service = start(
        "service",
        "service_a",
        RABBITMQ_QUEUE="service_a",
        OTEL_EXPORTER_OTLP_ENDPOINT="localhost:4318",
    )
    assert service.wait(30) == 2
    lines = service.stderr().strip().splitlines()
    assert lines == [
        "configuration error: OTEL_EXPORTER_OTLP_ENDPOINT='localhost:4318' is not valid: "
        "an http:// or https:// URL of an OTLP/HTTP receiver, e.g. http://localhost:4318"
    ]


def test_a_collector_that_does_not_answer_neither_stops_nor_floods_the_pipeline(
    start, vhost: Vhost
) -> None:
    [nobody] = free_ports(1)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{nobody}", **FAST_EXPORT}
    count = 50
    run = PipelineRun(start, vhost, count, env=otel)
    last = run.start_last(EXPECTED_MESSAGES=count)
    for stage in STAGES:
        run.start_service(stage)
    first = run.start_first()
    assert first.wait(60) == 0, first.tail()
    assert last.wait(60) == 0, last.tail()
    for proc in (first, last):  # at most: the export failing, and the flush given up at exit
        said = [r["message"] for r in proc.records() if r.get("logger") == "common.tracing"]
        assert said.count(CANNOT_EXPORT) <= 1, proc.tail()
        assert len([line for line in said if line != "exporting traces"]) <= 2, said
        assert "Traceback" not in proc.stderr()
