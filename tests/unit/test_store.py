"""`last`'s store without a network: the writer's batches, waiting through failures, the
in-memory store, the settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from common.settings import Env, SettingsError
from harness.processes import wait_for
from last.store import (
    DEFAULT_KEY_PREFIX,
    MAX_BATCH,
    Batch,
    MemoryStore,
    Store,
    StoreSettings,
    StoreUnavailable,
    Writer,
    glob_escape,
)

RETRYING = "the store does not answer: holding messages unacked until it does"
BACK = "the store answers again"


class FakeStore:
    """An `insert` that records its batches, keeps each key once, and can be held or failed."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.kept: dict[str, str] = {}
        self.failures: list[Exception] = []  # raised by the next calls, one each
        self.hold = threading.Event()
        self.hold.set()
        self.calls = threading.Semaphore(0)

    def insert(self, batch: Batch) -> list[bool]:
        self.calls.release()
        self.hold.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append([key for key, _ in batch])
        return [self.kept.setdefault(key, record) == record for key, record in batch]


@pytest.fixture
def fake() -> Iterator[FakeStore]:
    fake = FakeStore()
    yield fake
    fake.failures.clear()
    fake.hold.set()


@pytest.fixture
def writer(fake: FakeStore) -> Writer:
    return Writer(fake.insert, "fake://", first_retry=0.01, longest_retry=0.04)


def add(store: Store, key: str, record: str) -> bool:
    """`store.add`, and what it answered."""
    return store.add(key, record).result(timeout=10)


def test_one_add_is_one_write(writer: Writer, fake: FakeStore) -> None:
    assert add(writer, "a", "record a") is True
    assert add(writer, "a", "record a, again") is False
    assert fake.batches == [["a"], ["a"]]


def test_add_returns_at_once_and_the_answer_comes_after_the_write(
    writer: Writer, fake: FakeStore
) -> None:
    fake.hold.clear()
    answer = writer.add("a", "r")
    assert fake.calls.acquire(timeout=5)
    assert not answer.done()  # no thread waits on it meanwhile
    fake.hold.set()
    assert answer.result(timeout=5) is True


def test_what_arrives_during_a_write_goes_in_the_next_one_together(
    writer: Writer, fake: FakeStore
) -> None:
    fake.hold.clear()
    first = writer.add("first", "r")
    assert fake.calls.acquire(timeout=5)  # a lone record goes straight out
    later = [writer.add(f"id-{n}", f"record {n}") for n in range(20)]
    fake.hold.set()
    assert first.result(timeout=5) is True
    assert all(answer.result(timeout=5) for answer in later)
    first_batch, second_batch = fake.batches
    assert first_batch == ["first"]
    assert second_batch == [f"id-{n}" for n in range(20)]  # 20 records, 1 round trip


def test_a_batch_is_bounded(writer: Writer, fake: FakeStore) -> None:
    fake.hold.clear()
    writer.add("first", "r")
    assert fake.calls.acquire(timeout=5)
    answers = [writer.add(f"id-{n}", "r") for n in range(MAX_BATCH + 5)]
    fake.hold.set()
    assert all(answer.result(timeout=5) for answer in answers)
    assert [len(batch) for batch in fake.batches] == [1, MAX_BATCH, 5]


def test_the_writer_runs_what_follows_each_write_at_once(writer: Writer, fake: FakeStore) -> None:
    """What follows a write (`last`'s log line) runs right after it, in the writer's thread."""
    ran_in: list[str] = []
    fake.hold.clear()
    answer = writer.add("a", "r")
    answer.add_done_callback(lambda _done: ran_in.append(threading.current_thread().name))
    assert fake.calls.acquire(timeout=5)  # the write is under way, the callback waits on it
    fake.hold.set()
    answer.result(timeout=5)
    wait_for(lambda: ran_in, 5, "the callback")
    assert ran_in == ["store-writer"]


def test_each_record_gets_its_own_answer(writer: Writer, fake: FakeStore) -> None:
    fake.kept = {"b": "someone else's", "d": "someone else's"}
    fake.hold.clear()
    answers = {key: writer.add(key, "mine") for key in "abcde"}
    fake.hold.set()
    assert {key: answer.result(timeout=5) for key, answer in answers.items()} == {
        "a": True,
        "b": False,
        "c": True,
        "d": False,
        "e": True,
    }


def test_records_wait_through_failures_and_go_in_together(
    writer: Writer, fake: FakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    fake.failures = [StoreUnavailable("ConnectionError: refused")] * 4
    fake.hold.clear()
    with caplog.at_level(logging.INFO, logger="last.store"):
        first = writer.add("a", "r")
        assert fake.calls.acquire(timeout=5)
        later = [writer.add("b", "r"), writer.add("c", "r")]
        fake.hold.set()
        assert all(answer.result(timeout=5) for answer in [first, *later])
    # The failed tries took in what came meanwhile: one successful write for all three.
    assert [sorted(batch) for batch in fake.batches] == [["a", "b", "c"]]
    retries = [r for r in caplog.records if r.getMessage() == RETRYING]
    assert [r.retry_in_s for r in retries] == [0.01, 0.02, 0.04, 0.04]  # back-off, capped
    assert [r.waiting for r in retries] == [1, 3, 3, 3]
    assert retries[0].error == "ConnectionError: refused"
    [back] = [r for r in caplog.records if r.getMessage() == BACK]
    assert back.written == 3


def test_a_bug_in_the_store_is_logged_with_its_traceback_and_retried(
    writer: Writer, fake: FakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    fake.failures = [TypeError("a bug")]
    with caplog.at_level(logging.WARNING, logger="last.store"):
        assert add(writer, "a", "r") is True
    [retry] = [r for r in caplog.records if r.getMessage() == RETRYING]
    assert retry.exc_info is not None
    assert retry.exc_info[0] is TypeError


def test_nothing_is_answered_while_the_store_fails(
    writer: Writer, fake: FakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    """An answer lets the message be acked (or logged a duplicate): none while nothing is kept."""
    fake.failures = [StoreUnavailable("down")] * 1000
    with caplog.at_level(logging.WARNING, logger="last.store"):
        answer = writer.add("a", "r")
        wait_for(lambda: len(caplog.records) >= 5, 5, "five tries")
    assert not answer.done()
    assert fake.batches == []
    fake.failures.clear()
    assert answer.result(timeout=5) is True


# -- the in-memory store -----------------------------------------------------------------------


def test_memory_store_keeps_each_id_once() -> None:
    store = MemoryStore()
    assert add(store, "a", "r") is True
    assert add(store, "a", "r") is False
    assert add(store, "b", "r") is True


def test_memory_store_forgets_the_oldest_past_its_bound() -> None:
    store = MemoryStore(remembered=2)
    for key in "abc":
        assert add(store, key, "r") is True
    assert add(store, "c", "r") is False  # still remembered
    assert add(store, "a", "r") is True  # forgotten, the oldest


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
