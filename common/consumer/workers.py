"""The worker threads, and the way their outcomes get back to the I/O thread.

pika is not thread-safe, so the workers never touch it: each takes a delivery, runs the
processing on it and hands the outcome back through the connection's `call_threadsafe`. Results
travel in a deque, and a worker wakes the I/O thread only when no wake-up is pending already, so
a burst of results costs one wake-up, not one each.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager

from common.consumer.outcomes import Delivery, Outcome

# What a worker runs on a delivery: its outcome, a Future of it, or None when there is nothing
# to hand back (the delivery's channel is gone).
Process = Callable[[Delivery], Outcome | Future[Outcome] | None]
# Told on the I/O thread: the delivery, its outcome, and the seconds its processing took.
OnResult = Callable[[Delivery, Outcome, float], None]
# What a worker's processing of a delivery runs inside (a tracer makes its span current there).
Around = Callable[[Delivery], AbstractContextManager[object]]


class HandBack:
    """Outcomes from any thread to `on_result`, called on the I/O thread, many per wake-up."""

    def __init__(
        self, call_threadsafe: Callable[[Callable[[], None]], None], on_result: OnResult
    ) -> None:
        self._call_threadsafe = call_threadsafe
        self._on_result = on_result
        self._results: deque[tuple[Delivery, Outcome, float]] = deque()
        self._lock = threading.Lock()
        self._wake_pending = False

    def give(self, delivery: Delivery, outcome: Outcome, seconds: float) -> None:
        self._results.append((delivery, outcome, seconds))
        with self._lock:
            if self._wake_pending:
                return  # the I/O thread has yet to run: it will see this result too
            self._wake_pending = True
        self._call_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            self._wake_pending = False
        while self._results:
            self._on_result(*self._results.popleft())


class WorkerPool:
    """`size` threads, each taking a submitted delivery, running `process` on it (inside
    `around(delivery)` if given) and giving its outcome (at once, or when its Future resolves)
    to `hand_back`."""

    def __init__(
        self, size: int, process: Process, hand_back: HandBack, around: Around | None = None
    ) -> None:
        self._size = size
        self._process = process
        self._hand_back = hand_back
        self._around = around
        self._queue: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()

    def start(self) -> None:
        for n in range(self._size):
            threading.Thread(target=self._run, name=f"worker-{n}", daemon=True).start()

    def stop(self) -> None:
        """Let each thread end once it has nothing in hand. Workers still busy hold only void work
        by then (its channel is closed): they are daemon threads and need not be waited for."""
        for _ in range(self._size):
            self._queue.put(None)

    def submit(self, delivery: Delivery) -> None:
        """Queue a delivery for the next free worker (from the I/O thread)."""
        self._queue.put(delivery)

    def work_on(self, delivery: Delivery) -> None:
        """One delivery's processing, on the calling thread."""
        started = time.perf_counter()
        if self._around is None:
            answer = self._process(delivery)
        else:
            with self._around(delivery):
                answer = self._process(delivery)
        if isinstance(answer, Future):
            answer.add_done_callback(
                lambda done: self._hand_back.give(
                    delivery, done.result(), time.perf_counter() - started
                )
            )
        elif answer is not None:
            self._hand_back.give(delivery, answer, time.perf_counter() - started)

    def _run(self) -> None:
        while (delivery := self._queue.get()) is not None:
            self.work_on(delivery)
