"""The whole pipeline against the real broker: every message completes once, in stage order."""

from __future__ import annotations

from common.topology import PIPELINE_QUEUES, STAGES
from harness.broker import Vhost


def assert_all_completed_once(completed: list[dict], count: int) -> None:
    seqs = sorted(int(r["history"][0].removeprefix("seq-")) for r in completed)
    assert seqs == list(range(1, count + 1))
    assert len({r["broker_message_id"] for r in completed}) == count
    for record in completed:
        assert record["history"][1:] == list(STAGES)
        data = record["data"]
        stamps = [data["created_at"], *(data[s] for s in STAGES), data["completed_at"]]
        assert stamps == sorted(stamps), record
        assert data["updated_at"] == data["service_c"]


def test_thousand_messages_complete_exactly_once(start, start_services, vhost: Vhost) -> None:
    count = 1000
    last = start("last", EXPECTED_MESSAGES=count, PROGRESS_INTERVAL=0.1)
    services = start_services(WORKERS=10, PROGRESS_INTERVAL=0.1)
    first = start("first", NUMBER_OF_MESSAGES=count, PUBLISH_RATE=2000, PROGRESS_INTERVAL=0.1)

    assert first.wait(60) == 0, first.tail()
    assert last.wait(120) == 0, last.tail()

    assert_all_completed_once(last.messages("completed"), count)
    [summary] = last.messages("summary")
    assert summary["completed"] == count
    assert summary["duplicates"] == 0
    assert summary["latency_ms"]["p50"] > 0
    for queue in [*PIPELINE_QUEUES, "dead_letter"]:
        assert vhost.depth(queue) == 0, queue

    # progress: a line every interval while messages flow, not one per message
    for proc in (first, last):
        progress = proc.messages("progress")
        assert 1 <= len(progress) < count / 10, proc.name
        assert all(r["expected"] == count and r["rate_per_s"] > 0 for r in progress)
        done = [r["done"] for r in progress]
        assert done == sorted(done) and done[-1] <= count
    for proc in services.values():  # a stage counts what it settled, and expects no number
        progress = proc.messages("progress")
        assert 1 <= len(progress) < count / 10, proc.name
        assert all(r["expected"] is None and r["done"] <= count for r in progress)


def test_first_fails_clearly_when_the_broker_is_unreachable(start) -> None:
    first = start("first", AMQP_URL="amqp://guest:secret@127.0.0.1:1/%2F", CONNECT_TIMEOUT=2)
    assert first.wait(30) == 1
    [error] = [r for r in first.records() if r["level"] == "ERROR"]
    assert "cannot reach the broker at amqp://guest:***@127.0.0.1:1/%2F" in error["message"]
    assert "secret" not in first.stdout_path.read_text() + first.stderr()
    retries = first.messages("broker not reachable, retrying")
    assert 1 <= len(retries) <= 5
    assert first.stderr() == ""
