"""What the bench's own contenders share: their message, their sink's record, their settings.

Their message is one JSON object, `{"history": ["seq-7", "service_a", ...], "id": UUID,
"data": {"created_at": ..., "service_a": ..., "updated_at": ...}}`: the same content as this
project's message (which keeps history in the body and the rest in AMQP properties), in the
shape the frameworks pass around most naturally. Each stage appends its name and stamps the
time, as `service.work.Stage` does.

Settings come from the environment the runner gives each process: BENCH_AMQP_URL (the run's
vhost), BENCH_QUEUE_TYPE (quorum or classic), BENCH_RESULTS (the sink's file), BENCH_PREFETCH.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NoReturn, TextIO, TypeVar

from common.topology import SINK_QUEUE, STAGES, following_queue

PREFETCH = 100  # as this project's PREFETCH default

Payload = dict[str, Any]
Step = TypeVar("Step")  # a framework's task


def amqp_url() -> str:
    return os.environ["BENCH_AMQP_URL"]


def queue_type() -> str:
    return os.environ.get("BENCH_QUEUE_TYPE", "quorum")


def prefetch() -> int:
    return int(os.environ.get("BENCH_PREFETCH", PREFETCH))


def next_queue(queue: str) -> str:
    following = following_queue(queue)
    if following is None:
        raise ValueError(f"{queue!r} is not a stage of the pipeline")
    return following


def new_message(seq: int) -> Payload:
    return {"history": [f"seq-{seq}"], "id": str(uuid.uuid4()), "data": {"created_at": time.time()}}


def stamped(message: Payload, stage: str) -> Payload:
    now = time.time()
    return {
        "history": [*message["history"], stage],
        "id": message["id"],
        "data": {**message["data"], stage: now, "updated_at": now},
    }


def pipeline_steps(register: Callable[[str, Callable[[Payload], Any]], Step]) -> list[Step]:
    """A framework's tasks for the whole pipeline, in the order a message meets them: one per
    stage, which stamps the message with its stage's name (`stamped`), then the sink's, which
    records it (BENCH_RESULTS). `register(queue, function)` makes the framework's task (a Celery
    task, a Dramatiq actor) of `function` on `queue`, named after the queue."""
    recorder = Recorder(os.environ.get("BENCH_RESULTS", os.devnull))

    def sink(message: Payload) -> None:  # a function: Celery counts a bound method's `self`
        recorder.record(message)

    steps = [register(stage, _stamping(stage)) for stage in STAGES]
    return [*steps, register(SINK_QUEUE, sink)]


def _stamping(stage: str) -> Callable[[Payload], Payload]:
    def step(message: Payload) -> Payload:
        return stamped(message, stage)

    step.__name__ = step.__qualname__ = stage  # the frameworks name a task after its function
    return step


class Recorder:
    """The sink's record of each completed message, one JSON line, for the runner to follow."""

    def __init__(self, path: str | None = None) -> None:
        self._path = path or os.environ["BENCH_RESULTS"]
        self._file: TextIO | None = None
        self._lock = threading.Lock()

    def record(self, message: Payload) -> None:
        line = json.dumps(
            {
                "id": message["id"],
                "created_at": message["data"]["created_at"],
                "completed_at": time.time(),
                "stamps": message["data"],
            }
        )
        with self._lock:
            if self._file is None:
                self._file = open(self._path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            self._file.write(line + "\n")


class Pacer:
    """Spaces publishes `1/rate` apart from the start (no pacing at rate 0)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._started = time.monotonic()

    def delay(self, sent: int) -> float:
        """Seconds to wait before publishing message number `sent` (0-based)."""
        if not self._rate:
            return 0.0
        return max(0.0, self._started + sent / self._rate - time.monotonic())

    def wait(self, sent: int) -> None:
        delay = self.delay(sent)
        if delay:
            time.sleep(delay)


def publish_in_threads(
    messages: int, rate: float, threads: int, send: Callable[[Payload], None]
) -> None:
    """Publish `messages` with `send` (which waits for the broker's confirm) from `threads`
    threads, so that that many publishes await their confirm at a time. Thread `t` sends
    seq-(t+1), seq-(t+1+threads), ...; all are paced from one clock."""
    pacer = Pacer(rate)
    failures: list[BaseException] = []

    def work(first: int) -> None:
        try:
            for seq in range(first, messages + 1, threads):
                pacer.wait(seq - 1)
                send(new_message(seq))
        except BaseException as error:
            failures.append(error)

    workers = [
        threading.Thread(target=work, args=(first,), name=f"publisher-{first}")
        for first in range(1, min(threads, messages) + 1)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        sys.exit(f"publishing failed: {failures[0]!r}")


def main(
    usage: str,
    *,
    stage: Callable[[str], None] | None = None,
    sink: Callable[[], None] | None = None,
    publish: Callable[[int, float], None] | None = None,
) -> NoReturn:
    """Run the role the runner names on the command line: `stage QUEUE`, `sink`, or
    `publish N RATE`; anything else prints `usage` (the contender's docstring) and exits 1."""
    match sys.argv[1:]:
        case ["stage", queue] if stage is not None:
            stage(queue)
        case ["sink"] if sink is not None:
            sink()
        case ["publish", messages, rate] if publish is not None:
            publish(int(messages), float(rate))
        case _:
            sys.exit(usage)
    sys.exit(0)
