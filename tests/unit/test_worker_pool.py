"""The worker pool and its hand-back, with real threads and a stand-in for the I/O loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import pika

from common.consumer.outcomes import Delivery, Done, Failed, Outcome
from common.consumer.workers import HandBack, WorkerPool

DEADLINE = 10.0  # seconds: far beyond what a handful of deliveries takes on a loaded machine


class Loop:
    """Stands in for the I/O loop: callbacks handed to it wait until `run` is called."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []
        self.wakeups = 0
        self._lock = threading.Lock()

    def call_threadsafe(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self.wakeups += 1
            self.pending.append(callback)

    def run(self) -> None:
        with self._lock:
            due, self.pending = self.pending, []
        for callback in due:
            callback()


def delivery(tag: int) -> Delivery:
    return Delivery(1, tag, False, pika.BasicProperties(), b"[]")


def test_a_burst_of_results_costs_one_wakeup() -> None:
    loop, results = Loop(), []
    hand_back = HandBack(loop.call_threadsafe, lambda d, o, s: results.append((d.tag, o)))
    for tag in (1, 2, 3):
        hand_back.give(delivery(tag), Done(), 0.0)
    assert results == [] and loop.wakeups == 1  # nothing reaches the I/O thread by itself
    loop.run()
    assert results == [(1, Done()), (2, Done()), (3, Done())]
    hand_back.give(delivery(4), Done(), 0.0)
    assert loop.wakeups == 2  # the next one wakes it again


def test_workers_process_on_their_threads_and_hand_back_with_the_time_taken() -> None:
    loop, results, threads = Loop(), [], set()
    all_back = threading.Event()

    def on_result(d: Delivery, outcome: Outcome, seconds: float) -> None:
        results.append((d.tag, outcome, seconds))
        if len(results) == 4:
            all_back.set()

    def process(d: Delivery) -> Outcome:
        threads.add(threading.current_thread().name)
        return Done() if d.tag % 2 else Failed("odd one out")

    pool = WorkerPool(2, process, HandBack(loop.call_threadsafe, on_result))
    pool.start()
    try:
        for tag in (1, 2, 3, 4):
            pool.submit(delivery(tag))
        give_up_at = time.monotonic() + DEADLINE
        while not all_back.wait(0.01) and time.monotonic() < give_up_at:
            loop.run()  # the I/O thread's turn: it takes what the workers handed back
        assert all_back.is_set()
    finally:
        pool.stop()
    assert sorted((tag, outcome) for tag, outcome, _ in results) == [
        (1, Done()),
        (2, Failed("odd one out")),
        (3, Done()),
        (4, Failed("odd one out")),
    ]
    assert all(seconds >= 0 for _, _, seconds in results)
    assert threads <= {"worker-0", "worker-1"} and threading.current_thread().name not in threads


def test_a_future_is_handed_back_when_it_resolves_and_none_is_never() -> None:
    loop, results = Loop(), []
    answers: dict[int, Future[Outcome]] = {1: Future()}

    def process(d: Delivery) -> Future[Outcome] | None:
        return answers.get(d.tag)  # 2: no answer (its channel is gone)

    pool = WorkerPool(
        1, process, HandBack(loop.call_threadsafe, lambda d, o, s: results.append(d.tag))
    )
    pool.work_on(delivery(1))
    pool.work_on(delivery(2))
    loop.run()
    assert results == [] and loop.wakeups == 0  # the Future is not resolved yet
    answers[1].set_result(Done())
    loop.run()
    assert results == [1]
