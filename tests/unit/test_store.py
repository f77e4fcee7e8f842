"""`last`'s store without a network: the writer's batches, waiting through failures on a fake
clock, what it does on a bug, the in-memory store, the settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from common.metrics import Metrics
from common.retry import retry_delay
from common.settings import Env, SettingsError
from harness.processes import wait_for
from last.memory_store import MemoryStore
from last.metrics import SinkMetrics
from last.store import Answer, Later, Store, StoreUnavailable, Verdict
from last.store_settings import DEFAULT_KEY_PREFIX, StoreSettings, glob_escape
from last.writer import FIRST_RETRY, MAX_BATCH, Writer
from tests.unit.fakes import FakeClock

RETRYING = "the store does not answer: holding messages unacked until it does"
BACK = "the store answers again"
FAILED = "the store writer failed on a bug: last stops; its messages go back to the queue"


class FakeStore:
    """A batch store that records its batches, keeps each key once, and can be held, failed,
    or told to say "ask again later" of a key."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.marked: list[list[str]] = []
        self.kept: dict[str, str] = {}
        self.failures: list[Exception] = []  # raised by the next calls, one each
        self.later: dict[str, float] = {}  # key: seconds to ask again, said once
        self.unwritten: dict[str, str] = {}  # key: a stored record whose line was never written
        self.hold = threading.Event()
        self.hold.set()
        self.calls = threading.Semaphore(0)

    def insert(self, batch: list[tuple[str, str]]) -> list[Answer | Later]:
        self.calls.release()
        self.hold.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append([key for key, _ in batch])
        return [self._answer(key, record) for key, record in batch]

    def _answer(self, key: str, record: str) -> Answer | Later:
        if key in self.later:
            return Later(self.later.pop(key))
        if key in self.unwritten:
            return Answer(Verdict.RECOVERED, self.unwritten.pop(key))
        if self.kept.setdefault(key, record) == record:
            return Answer(Verdict.COMPLETED, record)
        return Answer(Verdict.DUPLICATE, record)

    def mark_written(self, keys: list[str]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.marked.append(list(keys))


class FakeSleep:
    """The writer's sleep on a fake clock: it records each delay and moves the clock on, at
    once, or only once the test lets it (`hold`)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []
        self.slept = threading.Semaphore(0)
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.clock.now += delay
        self.slept.release()
        self.hold.wait()


class Lines:
    """The `log_line` of each record: what the writer answered, in order, from which thread."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, Answer]] = []
        self.threads: set[str] = set()

    def of(self, key: str):
        def log_line(answer: Answer) -> None:
            self.answers.append((key, answer))
            self.threads.add(threading.current_thread().name)

        return log_line


@pytest.fixture
def fake() -> Iterator[FakeStore]:
    fake = FakeStore()
    yield fake
    fake.failures.clear()
    fake.hold.set()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> Iterator[FakeSleep]:
    sleep = FakeSleep(clock)
    yield sleep
    sleep.hold.set()


@pytest.fixture
def failures() -> list[BaseException]:
    return []


@pytest.fixture
def writer(
    fake: FakeStore, clock: FakeClock, sleep: FakeSleep, failures: list[BaseException]
) -> Iterator[Writer]:
    writer = Writer(fake, "fake://", failures.append, clock=clock, sleep=sleep)
    writer.start()
    yield writer
    fake.hold.set()
    sleep.hold.set()
    writer.stop()


@pytest.fixture
def lines() -> Lines:
    return Lines()


def verdict(store: Store, key: str, record: str = "r") -> Verdict:
    """`store.add`, and what it answered once settled."""
    answered: list[Answer] = []
    store.add(key, record, answered.append).result(timeout=10)
    [answer] = answered
    return answer.verdict


def test_one_add_is_one_write_then_its_mark(writer: Writer, fake: FakeStore) -> None:
    assert verdict(writer, "a", "record a") is Verdict.COMPLETED
    assert verdict(writer, "a", "record a, again") is Verdict.DUPLICATE
    assert fake.batches == [["a"], ["a"]]
    assert fake.marked == [["a"]]  # a duplicate's line needs no mark: it was written before


def test_add_returns_at_once_and_settles_after_the_line_and_the_mark(
    writer: Writer, fake: FakeStore, lines: Lines
) -> None:
    fake.hold.clear()
    settled = writer.add("a", "r", lines.of("a"))
    assert fake.calls.acquire(timeout=5)
    assert not settled.done()  # no thread waits on it meanwhile
    fake.hold.set()
    settled.result(timeout=5)
    assert lines.answers == [("a", Answer(Verdict.COMPLETED, "r"))]
    assert fake.marked == [["a"]]


def test_what_arrives_during_a_write_goes_in_the_next_one_together(
    writer: Writer, fake: FakeStore, lines: Lines
) -> None:
    fake.hold.clear()
    first = writer.add("first", "r", lines.of("first"))
    assert fake.calls.acquire(timeout=5)  # a lone record goes straight out
    later = [writer.add(f"id-{n}", f"record {n}", lines.of(f"id-{n}")) for n in range(20)]
    fake.hold.set()
    for settled in [first, *later]:
        settled.result(timeout=5)
    assert fake.batches == [["first"], [f"id-{n}" for n in range(20)]]  # 20 records, 1 trip
    assert fake.marked == fake.batches


def test_a_batch_is_bounded(writer: Writer, fake: FakeStore, lines: Lines) -> None:
    fake.hold.clear()
    writer.add("first", "r", lines.of("first"))
    assert fake.calls.acquire(timeout=5)
    settled = [writer.add(f"id-{n}", "r", lines.of("id")) for n in range(MAX_BATCH + 5)]
    fake.hold.set()
    for answer in settled:
        answer.result(timeout=5)
    assert [len(batch) for batch in fake.batches] == [1, MAX_BATCH, 5]


def test_the_lines_are_written_by_the_writer_as_soon_as_the_store_answers(
    writer: Writer, fake: FakeStore, lines: Lines
) -> None:
    writer.add("a", "r", lines.of("a")).result(timeout=5)
    assert lines.threads == {"store-writer"}


def test_each_record_gets_its_own_answer(writer: Writer, fake: FakeStore, lines: Lines) -> None:
    fake.kept = {"b": "someone else's", "d": "someone else's"}
    fake.unwritten = {"e": "stored by a last killed before its line"}
    fake.hold.clear()
    settled = [writer.add(key, "mine", lines.of(key)) for key in "abcde"]
    fake.hold.set()
    for answer in settled:
        answer.result(timeout=5)
    assert dict(lines.answers) == {
        "a": Answer(Verdict.COMPLETED, "mine"),
        "b": Answer(Verdict.DUPLICATE, "mine"),
        "c": Answer(Verdict.COMPLETED, "mine"),
        "d": Answer(Verdict.DUPLICATE, "mine"),
        "e": Answer(Verdict.RECOVERED, "stored by a last killed before its line"),
    }
    assert sorted(key for batch in fake.marked for key in batch) == ["a", "c", "e"]


def test_a_record_asked_about_later_waits_while_the_others_go_on(
    writer: Writer, fake: FakeStore, clock: FakeClock, lines: Lines
) -> None:
    """Another `last` may be writing its line: the store says when to ask again."""
    fake.later = {"a": 2.0}
    a = writer.add("a", "r", lines.of("a"))
    writer.add("b", "r", lines.of("b")).result(timeout=5)  # not due: b goes alone
    assert not a.done()
    clock.now += 2.0
    writer.add("c", "r", lines.of("c")).result(timeout=5)  # due now: a goes with c
    a.result(timeout=5)
    assert fake.batches[-1] == ["a", "c"]
    assert ["a"] not in fake.batches[1:-1]
    assert [key for key, _ in lines.answers] == ["b", "a", "c"]


def test_records_wait_through_failures_and_go_in_together(
    writer: Writer,
    fake: FakeStore,
    sleep: FakeSleep,
    lines: Lines,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.failures = [StoreUnavailable("ConnectionError: refused")] * 7
    fake.hold.clear()
    with caplog.at_level(logging.INFO, logger="last.writer"):
        first = writer.add("a", "r", lines.of("a"))
        assert fake.calls.acquire(timeout=5)
        later = [writer.add("b", "r", lines.of("b")), writer.add("c", "r", lines.of("c"))]
        fake.hold.set()
        for settled in [first, *later]:
            settled.result(timeout=5)
    # The failed tries took in what came meanwhile: one successful write for all three.
    assert [sorted(batch) for batch in fake.batches] == [["a", "b", "c"]]
    retries = [r for r in caplog.records if r.getMessage() == RETRYING]
    expected = [retry_delay(n, first=FIRST_RETRY) for n in range(1, 8)]
    assert expected == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]  # back-off, capped
    assert [r.retry_in_s for r in retries] == sleep.delays == expected
    assert [r.waiting for r in retries] == [1, 3, 3, 3, 3, 3, 3]
    assert retries[0].error == "ConnectionError: refused"
    [back] = [r for r in caplog.records if r.getMessage() == BACK]
    assert back.written == 3
    assert back.outage_s == round(sum(expected), 1)  # on the fake clock


def test_nothing_is_settled_while_the_store_fails(
    writer: Writer, fake: FakeStore, sleep: FakeSleep, lines: Lines
) -> None:
    """Settling lets the message be acked: none while nothing is kept."""
    fake.failures = [StoreUnavailable("down")] * 1000
    sleep.hold.clear()
    settled = writer.add("a", "r", lines.of("a"))
    assert sleep.slept.acquire(timeout=5)  # one failed try, waiting before the next
    assert not settled.done()
    assert fake.batches == [] and lines.answers == []
    fake.failures.clear()
    sleep.hold.set()
    settled.result(timeout=5)
    assert lines.answers == [("a", Answer(Verdict.COMPLETED, "r"))]


def test_a_failed_mark_is_tried_again_before_the_message_is_settled(
    writer: Writer, fake: FakeStore, sleep: FakeSleep, lines: Lines
) -> None:
    fake.hold.clear()
    settled = writer.add("a", "r", lines.of("a"))
    assert fake.calls.acquire(timeout=5)
    fake.failures = [StoreUnavailable("down")]  # the insert passes; the mark fails once
    fake.hold.set()
    wait_for(lambda: fake.failures == [] or settled.done(), 5, "the mark to be tried")
    settled.result(timeout=5)
    assert fake.marked == [["a"]]
    assert sleep.delays == [FIRST_RETRY]
    assert lines.answers == [("a", Answer(Verdict.COMPLETED, "r"))]  # its line once


@pytest.mark.parametrize("where", ["store", "line"])
def test_a_bug_ends_the_writer_once_with_its_traceback(
    where: str,
    fake: FakeStore,
    clock: FakeClock,
    sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not retried: its messages go back to the queue, and the process is asked to stop."""
    failures: list[BaseException] = []
    writer = Writer(fake, "fake://", failures.append, clock=clock, sleep=sleep)
    bug = TypeError("a bug")
    if where == "store":
        fake.failures = [bug]

    def log_line(_answer: Answer) -> None:
        if where == "line":
            raise bug

    fake.hold.clear()
    writer.start()
    with caplog.at_level(logging.WARNING, logger="last.writer"):
        first = writer.add("a", "r", log_line)
        assert fake.calls.acquire(timeout=5)
        queued = writer.add("b", "r", log_line)
        fake.hold.set()
        assert first.exception(timeout=5) is bug
        assert queued.exception(timeout=5) is bug
        writer.stop()  # the thread has ended
    assert failures == [bug]
    assert writer.failure is bug
    assert writer.add("c", "r", log_line).exception(timeout=0) is bug  # at once, ever after
    [failed] = [r for r in caplog.records if r.getMessage() == FAILED]
    assert failed.exc_info is not None and failed.exc_info[1] is bug
    assert not [r for r in caplog.records if r.getMessage() == RETRYING]
    assert sleep.delays == []


def test_stop_finishes_what_is_in_hand_then_ends(
    fake: FakeStore, clock: FakeClock, sleep: FakeSleep, lines: Lines
) -> None:
    writer = Writer(fake, "fake://", pytest.fail, clock=clock, sleep=sleep)
    writer.start()
    fake.hold.clear()
    first = writer.add("a", "r", lines.of("a"))
    assert fake.calls.acquire(timeout=5)
    second = writer.add("b", "r", lines.of("b"))
    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    fake.hold.set()
    stopper.join(timeout=10)
    assert not stopper.is_alive()
    assert first.done() and second.done()
    assert [key for key, _ in lines.answers] == ["a", "b"]
    with pytest.raises(RuntimeError, match="stopped"):
        writer.add("c", "r", lines.of("c"))


def test_stop_while_the_store_fails_ends_the_wait_and_leaves_the_records_unsettled(
    fake: FakeStore, clock: FakeClock, lines: Lines
) -> None:
    """Their messages were never acked: the broker redelivers them. The writer's own wait
    between tries (no fake sleep here) ends as soon as it is stopped."""
    writer = Writer(fake, "fake://", pytest.fail, clock=clock)
    writer.start()
    fake.failures = [StoreUnavailable("down")] * 1000
    settled = writer.add("a", "r", lines.of("a"))
    assert fake.calls.acquire(timeout=5)  # the first try failed: the writer waits to retry
    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    stopper.join(timeout=5)  # far less than the 5 s the longest back-off would take
    assert not stopper.is_alive()
    assert not settled.done()
    assert lines.answers == []


# -- the in-memory store -----------------------------------------------------------------------


def test_memory_store_keeps_each_id_once() -> None:
    store = MemoryStore()
    assert verdict(store, "a") is Verdict.COMPLETED
    assert verdict(store, "a") is Verdict.DUPLICATE
    assert verdict(store, "b") is Verdict.COMPLETED


def test_memory_store_forgets_the_oldest_past_its_bound() -> None:
    store = MemoryStore(remembered=2)
    for key in "abc":
        assert verdict(store, key) is Verdict.COMPLETED
    assert verdict(store, "c") is Verdict.DUPLICATE  # still remembered
    assert verdict(store, "a") is Verdict.COMPLETED  # forgotten, the oldest


# -- settings ----------------------------------------------------------------------------------


def test_without_store_url_the_store_is_in_memory() -> None:
    assert StoreSettings.from_env(Env({})) == StoreSettings("", DEFAULT_KEY_PREFIX)


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://user:secret@store.example:6380/2", "unix:///run/r.sock"],
)
def test_store_urls_accepted(url: str) -> None:
    assert StoreSettings.from_env(Env({"STORE_URL": url})).url == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://localhost:6379", "'http://localhost:6379'"),
        ("localhost:6379", "'localhost:6379'"),
        ("redis://", "'redis://'"),
        ("redis://:secret@/0", "'redis://:***@/0'"),
    ],
)
def test_bad_store_urls_are_one_clear_line(url: str, shown: str) -> None:
    with pytest.raises(SettingsError) as error:
        StoreSettings.from_env(Env({"STORE_URL": url}))
    message = str(error.value)
    assert message.startswith(f"STORE_URL={shown} is not valid: a Redis URL like redis://")
    assert "secret" not in message


def test_the_display_url_hides_the_password() -> None:
    settings = StoreSettings("redis://:secret@store:6379/0", DEFAULT_KEY_PREFIX)
    assert settings.display_url == "redis://:***@store:6379/0"


def test_glob_escape() -> None:
    assert glob_escape("run[1]*?\\:") == "run\\[1\\]\\*\\?\\\\:"


def test_the_writes_and_the_outages_are_counted(
    fake: FakeStore, clock: FakeClock, sleep: FakeSleep, lines: Lines
) -> None:
    metrics = Metrics("last")
    writer = Writer(
        fake, "fake://", pytest.fail, clock=clock, sleep=sleep, metrics=SinkMetrics(metrics)
    )
    fake.failures = [StoreUnavailable("ConnectionError: refused")] * 3
    writer.start()
    try:
        writer.add("a", "r", lines.of("a")).result(timeout=5)
    finally:
        writer.stop()

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"stage": "last"})

    assert sample("rabbithole_store_outages_total") == 1  # three failed tries, one outage
    assert sample("rabbithole_store_write_batch_messages_sum") == 1
    assert sample("rabbithole_store_write_duration_seconds_sum") == pytest.approx(
        sum(sleep.delays)  # on the fake clock: the retries' waits
    )
