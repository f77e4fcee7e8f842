"""`last` and its store, for real: Redis at STORE_URL (127.0.0.1:6379 by default, keys of the
test's own) and, where a test stops the store, a redis-server of the test's own."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.messages import Message
from common.topology import SINK_QUEUE, STAGES
from harness.broker import Vhost
from harness.processes import Proc, wait_for
from harness.store import NoRedisServer, PrivateRedis, StoreKeys
from last.redis_store import RECOVER_AFTER, RedisStore
from last.store import Answer, Later, StoreRefused, StoreUnavailable, Verdict
from last.store_settings import StoreSettings
from tests.unit.test_report import results_records, run_report, write_lines
from tools.store_reader import stored_records, unwritten_lines

RETRYING = "the store does not answer: holding messages unacked until it does"
BACK = "the store answers again"


def finished(seq: int) -> Message:
    """A message as service_c hands it to `last`."""
    message = Message.first(seq, time.time())
    for stage in STAGES:
        message = message.stamped(stage, time.time())
    return message


def publish(vhost: Vhost, messages: list[Message]) -> None:
    """Into `last`'s queue, confirmed, on one channel."""
    with vhost.channel() as channel:
        channel.confirm_delivery()
        for message in messages:
            channel.basic_publish("", SINK_QUEUE, *message.encode(), mandatory=True)


def ids(proc: Proc, kind: str) -> list[str]:
    return [r["broker_message_id"] for r in proc.messages(kind)]


# -- RedisStore against the real server ------------------------------------------------------


def test_a_record_goes_in_once(store: StoreKeys) -> None:
    redis_store = RedisStore(store.settings)
    assert redis_store.insert([("a", "1"), ("b", "2")]) == [
        Answer(Verdict.COMPLETED, "1"),
        Answer(Verdict.COMPLETED, "2"),
    ]
    redis_store.mark_written(["a", "b"])
    assert redis_store.insert([("b", "other")]) == [Answer(Verdict.DUPLICATE, "other")]
    # The same record again is our own earlier write whose reply was lost: it counts as ours.
    redis_store.insert([("c", "3")])
    assert redis_store.insert([("c", "3")]) == [Answer(Verdict.COMPLETED, "3")]
    assert sorted(stored_records(store.settings)) == [("a", "1"), ("b", "2"), ("c", "3")]
    assert unwritten_lines(store.settings) == 1  # c's line is not marked written yet


def test_a_record_whose_line_was_never_written_is_written_by_one_last(store: StoreKeys) -> None:
    """`killed` stores a record and dies before its line; `recovering` meets it (with no wait
    for the test's sake) and claims it; `other` is then told to ask again later, and once the
    line is marked written, that the id is a duplicate."""
    killed, other = RedisStore(store.settings), RedisStore(store.settings)
    recovering = RedisStore(store.settings, recover_after=0.0)
    killed.insert([("x", "as first completed")])
    assert other.insert([("x", "redelivered")]) == [Later(pytest.approx(RECOVER_AFTER, abs=1))]
    assert recovering.insert([("x", "redelivered")]) == [
        Answer(Verdict.RECOVERED, "as first completed")
    ]
    [later] = other.insert([("x", "redelivered again")])
    assert isinstance(later, Later) and 0 < later.seconds <= RECOVER_AFTER
    recovering.mark_written(["x"])
    assert other.insert([("x", "redelivered again")]) == [
        Answer(Verdict.DUPLICATE, "redelivered again")
    ]
    assert list(stored_records(store.settings)) == [("x", "as first completed")]
    assert unwritten_lines(store.settings) == 0


def test_records_are_read_by_their_prefix_taken_literally(store: StoreKeys) -> None:
    literal = StoreSettings(store.url, store.prefix + "[x]*")
    RedisStore(literal).insert([("mine", "1")])
    RedisStore(StoreSettings(store.url, store.prefix + "x")).insert([("not mine", "2")])
    assert list(stored_records(literal)) == [("mine", "1")]


def test_check_tells_a_refusal_from_an_absence(store: StoreKeys) -> None:
    RedisStore(store.settings).check()  # the local Redis: 7.0 or later, lets us in
    wrong_user = StoreSettings(store.url.replace("redis://", "redis://nobody:wrong@"), "p:")
    with pytest.raises(StoreRefused, match="check the user and password in STORE_URL"):
        RedisStore(wrong_user).check()
    with pytest.raises(StoreUnavailable, match="ConnectionError"):
        RedisStore(StoreSettings("redis://127.0.0.1:1/0", "p:")).check()


# -- last with the store ---------------------------------------------------------------------


def test_two_lasts_never_both_complete_an_id(start, vhost: Vhost, store: StoreKeys) -> None:
    """Each message is published twice in a row, so that the two `last` processes, which the
    broker serves in turn, race for the same id again and again."""
    count = 300
    lasts = [start("last", f"last-{n}", PROGRESS_INTERVAL=0, **store.env) for n in (1, 2)]
    wait_for(lambda: all(p.messages("consuming") for p in lasts), 30, "both lasts consuming")
    messages = [finished(seq) for seq in range(1, count + 1)]
    publish(vhost, [m for m in messages for _ in (1, 2)])

    def logged() -> int:
        return sum(len(p.messages("completed")) + len(p.messages("duplicate")) for p in lasts)

    wait_for(lambda: logged() == 2 * count, 60, f"{2 * count} records logged")
    completed = Counter(i for p in lasts for i in ids(p, "completed"))
    assert set(completed) == {m.message_id for m in messages}
    assert max(completed.values()) == 1  # no id completed twice
    assert sum(len(p.messages("duplicate")) for p in lasts) == count
    one, other = lasts
    raced = set(ids(one, "completed")) & set(ids(other, "duplicate"))
    raced |= set(ids(other, "completed")) & set(ids(one, "duplicate"))
    assert raced, "the two lasts never met on an id: the test proved nothing"
    stored = store.records()
    assert set(stored) == set(completed)
    for proc in lasts:  # the stored record is the one the winner logged
        for record in proc.messages("completed"):
            assert stored[record["broker_message_id"]]["data"] == record["data"]
    assert vhost.depth("dead_letter") == 0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    try:
        server = PrivateRedis(tmp_path / "redis")
    except NoRedisServer as error:
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.stop()


def test_with_the_store_down_last_holds_messages_unacked_then_completes_them(
    start, vhost: Vhost, private_redis: PrivateRedis
) -> None:
    prefetch, count = 20, 60
    env = {
        "STORE_URL": private_redis.url,
        "PREFETCH": prefetch,
        "WORKERS": 4,
        "DRAIN_TIMEOUT": 1,
        "PROGRESS_INTERVAL": 0,
    }
    private_redis.start()
    first = start("last", "last-store-lost", **env)
    wait_for(lambda: first.messages("consuming"), 30, "last consuming")
    before = [finished(seq) for seq in range(1, 11)]
    publish(vhost, before)
    wait_for(lambda: len(first.messages("completed")) == 10, 20, "10 messages completed")
    private_redis.stop()  # SIGKILL: the connection last holds breaks
    messages = [finished(seq) for seq in range(11, count + 11)]
    publish(vhost, messages)

    # It takes PREFETCH messages and no more, acks none of them, and says so once per try.
    wait_for(lambda: vhost.depth(SINK_QUEUE) == count - prefetch, 20, "PREFETCH messages held")
    wait_for(lambda: len(first.messages(RETRYING)) >= 3, 20, "three tries")
    assert len(first.messages("completed")) == 10

    # SIGTERM while waiting: it gives up on what it holds after DRAIN_TIMEOUT, acks nothing.
    stop_asked = time.monotonic()
    first.signal(signal.SIGTERM)
    assert first.wait(10) == 0, first.tail()
    assert time.monotonic() - stop_asked < 1 + 8  # DRAIN_TIMEOUT, and the exit on a busy machine
    assert first.messages("drain timed out; the broker redelivers what was not finished")
    assert "Traceback" not in first.stderr()
    wait_for(lambda: vhost.depth(SINK_QUEUE) == count, 10, "every message back in the queue")

    second = start("last", "last-store-back", **env)  # the store is not there yet
    wait_for(lambda: second.messages("consuming"), 30, "last consuming")
    [warning] = second.messages("the store does not answer yet; messages wait for it")
    assert "Connection refused" in warning["error"]
    wait_for(lambda: vhost.depth(SINK_QUEUE) == count - prefetch, 20, "PREFETCH messages held")
    private_redis.start()
    wait_for(lambda: len(second.messages("completed")) == count, 30, "every message completed")
    assert sorted(ids(second, "completed")) == sorted(m.message_id for m in messages)
    assert not second.messages("duplicate")
    assert len(second.messages(BACK)) == 1
    outage = second.messages(BACK)[0]["outage_s"]
    tries = len(second.messages(RETRYING))
    assert 1 <= tries <= 4 + outage / 5 + 1, (tries, outage)  # back-off to one try per 5 s
    for proc in (first, second):
        assert not proc.messages("processing failed, requeued")
    wait_for(lambda: vhost.depth(SINK_QUEUE) == 0, 10, "the queue empty")
    assert vhost.depth("dead_letter") == 0
    second.signal(signal.SIGTERM)
    assert second.wait(20) == 0, second.tail()


def test_last_writes_the_line_a_killed_last_never_wrote(
    start, vhost: Vhost, store: StoreKeys
) -> None:
    """The store holds the record, its line never written (its `last` died in between); the
    message comes back: it is logged `completed`, recovered, with the record as stored."""
    message = finished(1)
    stored = {
        "history": list(message.history),
        "broker_message_id": message.message_id,
        "run_id": None,
        "key": None,
        "data": {**message.data, "completed_at": message.data["created_at"] + 1},
    }
    RedisStore(store.settings).insert([(message.message_id, json.dumps(stored))])
    last = start("last", PROGRESS_INTERVAL=0, **store.env)
    wait_for(lambda: last.messages("consuming"), 30, "last consuming")
    publish(vhost, [message])
    wait_for(lambda: last.messages("completed"), 30, "the line")
    [line] = last.messages("completed")
    assert line["recovered"] is True
    assert line["data"] == stored["data"]
    assert not last.messages("duplicate")
    wait_for(lambda: vhost.depth(SINK_QUEUE) == 0, 10, "the message acked")
    assert unwritten_lines(store.settings) == 0
    publish(vhost, [message])  # once more: now it is a duplicate
    wait_for(lambda: last.messages("duplicate"), 30, "the duplicate")
    assert len(last.messages("completed")) == 1


def test_last_refused_by_its_store_says_so_in_one_line(start, store: StoreKeys) -> None:
    url = store.url.replace("redis://", "redis://nobody:wrong@")
    proc = start("last", STORE_URL=url)
    assert proc.wait(30) == 1
    [error] = proc.errors()
    assert error["message"].startswith("the store at redis://nobody:***@")
    assert "check the user and password in STORE_URL" in error["message"]
    assert "wrong" not in proc.tail()
    assert "Traceback" not in proc.stderr()


# -- the report, from the store ----------------------------------------------------------------


def test_the_report_reads_the_store_as_it_reads_the_file(tmp_path: Path, store: StoreKeys) -> None:
    """The file holds a duplicate and an id completed twice; the store kept each id once."""
    records = results_records()
    redis_store = RedisStore(store.settings)
    for record in records:
        if record["message"] == "completed":
            fields = {k: v for k, v in record.items() if k != "message"}
            redis_store.insert([(record["broker_message_id"], json.dumps(fields))])
    from_file = run_report(write_lines(tmp_path / "r.jsonl", [json.dumps(r) for r in records]))
    from_store = run_report("--store", store.url, env={"STORE_KEY_PREFIX": store.prefix})
    assert from_store.returncode == 0, from_store.stderr
    head = f"{store.url} (keys {store.prefix}*): 5 completed and duplicate records\nrun (no "
    assert from_store.stdout.startswith(head + "run_id) (5 records, started ")

    def figures(text: str) -> list[str]:
        return [line for line in text.splitlines()[2:] if "duplicates" not in line]

    assert figures(from_store.stdout) == figures(from_file.stdout)
    assert "  duplicates             0" in from_store.stdout


def test_the_report_on_an_empty_or_absent_store_is_one_line(store: StoreKeys) -> None:
    empty = run_report("--store", store.url, env={"STORE_KEY_PREFIX": store.prefix})
    assert empty.returncode == 2
    assert f"holds no records under {store.prefix}*" in empty.stderr
    absent = run_report("--store", "redis://127.0.0.1:1/0")
    assert absent.returncode == 1
    assert absent.stderr.startswith(
        "python -m tools.report: cannot read the store at redis://127.0.0.1:1/0: ConnectionError"
    )
    for result in (empty, absent):
        assert result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr
