"""Every record handed to it, written by one thread, everything waiting in one round trip.

A lone record goes straight out; records that come in while a write is under way go in the next
one together, so a burst costs one round trip. Once the store has answered, the writer calls
each record's `log_line` (so that `last`'s line follows the write at once), marks the lines
written, and resolves the Futures: the messages are then acked.

While the store does not answer (`StoreUnavailable`), the writer tries again with back-off, one
log line per try, taking in what came meanwhile, and the Futures wait for as long as that
takes: none is told to give up, since giving up would mean handing its message back to the
broker. A record whose line another `last` may be writing right now (`Later`) is asked about
again when the store says, the other records going on meanwhile.

A store that refuses us (`StoreRefused`: say, a certificate no trusted CA signed) gets one line
saying what to fix; anything else raised (by the store, or a `log_line`) is a bug, logged once
with its traceback. No retry mends either: the writer fails every Future it holds and every one
after (their messages go back to the queue), calls `on_failure`, and ends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol, TypeVar

from common.retry import retry_delay
from last.metrics import SinkMetrics
from last.store import Answer, Later, StoreRefused, StoreUnavailable, Verdict

log = logging.getLogger(__name__)

# Seconds before the first try again: a blip of the store (a failover, a restart) is often over
# in a fraction of a second, and every message waits meanwhile; quicker than the broker's 0.5 s.
FIRST_RETRY = 0.2
# Records written in one round trip at most: a burst is bounded by PREFETCH anyway; this keeps
# a long outage's backlog from becoming one huge command.
MAX_BATCH = 1000


class BatchStore(Protocol):
    def insert(self, batch: list[tuple[str, str]]) -> list[Answer | Later]: ...

    def mark_written(self, keys: list[str]) -> None: ...


@dataclass
class Pending:
    key: str
    record: str
    log_line: Callable[[Answer], None]
    settled: Future[None]
    due: float = 0.0  # when to ask again, for a record the store said to ask about later


class Stopped(Exception):
    """`stop()` came while the store did not answer: what is in hand is left unacked."""


_STOP = object()
T = TypeVar("T")


class Writer:
    def __init__(
        self,
        store: BatchStore,
        where: str,
        on_failure: Callable[[BaseException], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        metrics: SinkMetrics | None = None,
    ) -> None:
        """`clock` and `sleep` are seams for the tests (a fake clock, no real waits); `metrics`,
        if given, counts the writes and the outages."""
        self._store = store
        self._metrics = metrics
        self._where = where
        self._on_failure = on_failure
        self._clock = clock
        self._stop_asked = threading.Event()
        self._sleep = sleep or self._stop_asked.wait
        self._queue: queue.SimpleQueue[Pending | object] = queue.SimpleQueue()
        self._later: list[Pending] = []  # records to ask about again, each when due
        self._in_hand: list[Pending] = []  # the batch being written
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the records in hand (unless the store does not answer: they stay unacked),
        then end the thread. Call it once nothing more is added (the consumer has drained)."""
        self._stop_asked.set()
        self._queue.put(_STOP)
        self._thread.join()

    @property
    def failure(self) -> BaseException | None:
        """The bug that ended the writer, if one did."""
        return self._failure

    def add(self, key: str, record: str, log_line: Callable[[Answer], None]) -> Future[None]:
        settled: Future[None] = Future()
        with self._lock:
            if self._failure is not None:
                settled.set_exception(self._failure)
                return settled
            if self._stop_asked.is_set():
                raise RuntimeError("the store writer has stopped")
            self._queue.put(Pending(key, record, log_line, settled))
        return settled

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._in_hand = batch
                if batch:
                    self._write(batch)
        except Stopped:
            return
        except Exception as error:  # a bug: no retry mends it
            self._fail(error)

    def _next_batch(self) -> list[Pending] | None:
        """What is due: the records asked about later whose time has come, and what came in
        (waiting for it if nothing is due); None once stopped with nothing left in hand."""
        batch: list[Pending] = []
        if not any(pending.due <= self._clock() for pending in self._later):
            due = min((pending.due for pending in self._later), default=None)
            try:
                item = self._queue.get(
                    timeout=None if due is None else max(0.0, due - self._clock())
                )
            except queue.Empty:
                item = None  # something asked about later is due
            if item is _STOP:
                return None
            if item is not None:
                batch.append(item)  # type: ignore[arg-type]
        now = self._clock()
        ready = [pending for pending in self._later if pending.due <= now]
        self._later = [pending for pending in self._later if pending.due > now]
        return self._take(ready + batch)

    def _take(self, batch: list[Pending]) -> list[Pending]:
        """`batch` and whatever else has come in, up to MAX_BATCH."""
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)  # for the next round, once this batch is done
                break
            batch.append(item)  # type: ignore[arg-type]
        return batch

    def _write(self, batch: list[Pending]) -> None:
        started = self._clock()
        answers = self._until_it_answers(
            lambda: self._store.insert([(p.key, p.record) for p in batch]), batch
        )
        if self._metrics is not None:
            self._metrics.wrote(len(batch), self._clock() - started)
        written, done = [], []
        for pending, answer in zip(batch, answers, strict=True):
            if isinstance(answer, Later):
                pending.due = self._clock() + answer.seconds
                self._later.append(pending)
                continue
            pending.log_line(answer)
            done.append(pending)
            if answer.verdict is not Verdict.DUPLICATE:
                written.append(pending.key)
        if written:
            self._until_it_answers(lambda: self._store.mark_written(written), None)
        for pending in done:
            pending.settled.set_result(None)

    def _until_it_answers(self, call: Callable[[], T], batch: list[Pending] | None) -> T:
        """`call()`, tried again while the store does not answer; with a `batch`, each try
        takes in what came meanwhile."""
        attempt, failed_at = 0, None
        while True:
            try:
                answer = call()
                break
            except StoreUnavailable as error:
                attempt += 1
                if failed_at is None and self._metrics is not None:
                    self._metrics.outages.inc()
                failed_at = failed_at or self._clock()
                delay = retry_delay(attempt, first=FIRST_RETRY)
                log.warning(
                    "the store does not answer: holding messages unacked until it does",
                    extra={
                        "store": self._where,
                        "error": str(error),
                        "waiting": len(batch) if batch is not None else None,
                        "retry_in_s": delay,
                    },
                )
                self._sleep(delay)
                if self._stop_asked.is_set():
                    raise Stopped from None
                if batch is not None:
                    self._take(batch)
        if failed_at is not None:
            log.info(
                "the store answers again",
                extra={
                    "store": self._where,
                    "outage_s": round(self._clock() - failed_at, 1),
                    "written": len(batch) if batch is not None else None,
                },
            )
        return answer

    def _fail(self, error: Exception) -> None:
        what = error if isinstance(error, StoreRefused) else "the store writer failed on a bug"
        log.error(
            f"{what}: last stops; its messages go back to the queue",
            exc_info=None if what is error else error,
            extra={"store": self._where, "error": f"{type(error).__name__}: {error}"},
        )
        with self._lock:
            self._failure = error
        held = [*self._in_hand, *self._later, *self._drain_queue()]
        for pending in held:
            if not pending.settled.done():
                pending.settled.set_exception(error)
        self._on_failure(error)

    def _drain_queue(self) -> list[Pending]:
        found = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return found
            if item is not _STOP:
                found.append(item)  # type: ignore[arg-type]
