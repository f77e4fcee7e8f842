"""`last`'s store without a network: group commit, waiting through failures, the in-memory
store, the settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from common.settings import Env, SettingsError
from harness.processes import wait_for
from last.store import (
    DEFAULT_KEY_PREFIX,
    Batch,
    GroupCommit,
    MemoryStore,
    Store,
    StoreSettings,
    StoreUnavailable,
    Then,
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
def fake() -> FakeStore:
    return FakeStore()


@pytest.fixture
def commit(fake: FakeStore) -> Iterator[GroupCommit]:
    yield GroupCommit(fake.insert, "fake://", first_retry=0.01, longest_retry=0.04)
    fake.failures.clear()
    fake.hold.set()


def add(store: Store, key: str, record: str) -> bool:
    """`store.add`, and what it answered."""
    answers: list[bool] = []
    store.add(key, record, answers.append)
    [answer] = answers
    return answer


def add_in_threads(commit: GroupCommit, items: list[tuple[str, str]]) -> dict[str, bool]:
    """Call `add` for each item at once, one thread each; the answers once all are in."""
    answers: dict[str, bool] = {}
    threads = [
        threading.Thread(target=lambda k=key, r=record: answers.__setitem__(k, add(commit, k, r)))
        for key, record in items
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    return answers


def waiting(commit: GroupCommit) -> int:
    with commit._lock:
        return len(commit._waiting)


def test_one_add_is_one_write(commit: GroupCommit, fake: FakeStore) -> None:
    assert add(commit, "a", "record a") is True
    assert add(commit, "a", "record a, again") is False
    assert fake.batches == [["a"], ["a"]]


def test_what_arrives_during_a_write_goes_in_the_next_one_together(
    commit: GroupCommit, fake: FakeStore
) -> None:
    fake.hold.clear()
    first = threading.Thread(target=add, args=(commit, "first", "r"))
    first.start()
    assert fake.calls.acquire(timeout=5)  # the first caller writes at once, for itself
    items = [(f"id-{n}", f"record {n}") for n in range(20)]
    later = threading.Thread(target=add_in_threads, args=(commit, items))
    later.start()
    wait_for(lambda: waiting(commit) == 20, 5, "20 records waiting")
    fake.hold.set()
    later.join(10)
    first.join(10)
    first_batch, second_batch = fake.batches
    assert first_batch == ["first"]
    assert sorted(second_batch) == sorted(key for key, _ in items)  # 20 records, 1 round trip


def test_the_writer_runs_each_records_then_before_waking_its_thread(
    commit: GroupCommit, fake: FakeStore
) -> None:
    """What follows a write (`last`'s log line) comes right after it, in the writing thread."""
    fake.hold.clear()
    first = threading.Thread(target=add, args=(commit, "first", "r"), name="first")
    first.start()
    assert fake.calls.acquire(timeout=5)
    ran_in: dict[str, str] = {}

    def note_thread(key: str) -> Then:
        return lambda _stored: ran_in.__setitem__(key, threading.current_thread().name)

    started = []
    for key in ("b", "c"):
        started.append(
            threading.Thread(target=commit.add, args=(key, "r", note_thread(key)), name=key)
        )
        started[-1].start()
    wait_for(lambda: waiting(commit) == 2, 5, "2 records waiting")
    fake.hold.set()
    for thread in (first, *started):
        thread.join(5)
    assert ran_in["b"] == ran_in["c"]  # one thread wrote both, and ran both `then`s
    assert ran_in["b"] in ("b", "c")


def test_an_error_in_then_is_raised_in_its_own_thread_only(
    commit: GroupCommit, fake: FakeStore
) -> None:
    def fail(_stored: bool) -> None:
        raise OSError("disk full")

    answers = add_in_threads(commit, [("a", "r")])
    with pytest.raises(OSError, match="disk full"):
        commit.add("b", "r", fail)
    assert answers == {"a": True}
    assert add(commit, "c", "r") is True  # the next write goes on


def test_a_lone_record_is_written_by_its_own_thread(fake: FakeStore) -> None:
    """No hand-over to another thread when nothing else is waiting."""
    writers = []

    def insert(batch: Batch) -> list[bool]:
        writers.append(threading.current_thread())
        return fake.insert(batch)

    assert add(GroupCommit(insert, "fake://"), "a", "r") is True
    assert writers == [threading.current_thread()]


def test_each_caller_gets_its_own_answer(commit: GroupCommit, fake: FakeStore) -> None:
    fake.kept = {"b": "someone else's", "d": "someone else's"}
    answers = add_in_threads(commit, [(key, "mine") for key in "abcde"])
    assert answers == {"a": True, "b": False, "c": True, "d": False, "e": True}


def test_callers_wait_through_failures_and_get_in_together(
    commit: GroupCommit, fake: FakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    fake.failures = [StoreUnavailable("ConnectionError: refused")] * 4
    fake.hold.clear()
    caller = threading.Thread(target=add_in_threads, args=(commit, [("a", "r")]))
    caller.start()
    assert fake.calls.acquire(timeout=5)
    later = threading.Thread(target=add_in_threads, args=(commit, [("b", "r"), ("c", "r")]))
    later.start()
    wait_for(lambda: waiting(commit) == 2, 5, "2 more records waiting")
    with caplog.at_level(logging.INFO, logger="last.store"):
        fake.hold.set()
        caller.join(10)
        later.join(10)
    assert not caller.is_alive()
    assert not later.is_alive()
    # The failed tries took in what came meanwhile: one successful write for all three.
    assert [sorted(batch) for batch in fake.batches] == [["a", "b", "c"]]
    retries = [r for r in caplog.records if r.getMessage() == RETRYING]
    assert [r.retry_in_s for r in retries] == [0.01, 0.02, 0.04, 0.04]  # back-off, capped
    assert [r.waiting for r in retries] == [1, 3, 3, 3]
    assert retries[0].error == "ConnectionError: refused"
    [back] = [r for r in caplog.records if r.getMessage() == BACK]
    assert back.written == 3


def test_a_bug_in_the_store_is_logged_with_its_traceback_and_retried(
    commit: GroupCommit, fake: FakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    fake.failures = [TypeError("a bug")]
    with caplog.at_level(logging.WARNING, logger="last.store"):
        assert add(commit, "a", "r") is True
    [retry] = [r for r in caplog.records if r.getMessage() == RETRYING]
    assert retry.exc_info is not None
    assert retry.exc_info[0] is TypeError


def test_no_caller_is_answered_while_the_store_fails(
    commit: GroupCommit, fake: FakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    """An answer lets the message be acked (or logged a duplicate): none while nothing is kept."""
    fake.failures = [StoreUnavailable("down")] * 1000
    answered = threading.Event()
    caller = threading.Thread(target=lambda: (add(commit, "a", "r"), answered.set()), daemon=True)
    with caplog.at_level(logging.WARNING, logger="last.store"):
        caller.start()
        wait_for(lambda: len(caplog.records) >= 5, 5, "five tries")
    assert not answered.is_set()
    assert fake.batches == []
    fake.failures.clear()
    assert answered.wait(5)


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
