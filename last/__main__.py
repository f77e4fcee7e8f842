"""`python -m last`: the end of the pipeline. Logs each finished message's history, once."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import TextIO

from common.consumer import Consumer, ConsumerSettings
from common.main import run, serve
from common.messages import Message
from common.progress import Progress, progress_interval
from common.settings import BrokerSettings, Env, SettingsError
from last.tally import Tally

log = logging.getLogger("last")


class Sink:
    """The handler: log the message, count it, and stop after EXPECTED_MESSAGES if that is set.

    With RESULTS_FILE set, the completed, duplicate and summary records also go to that file,
    one JSON object per line, for `python -m tools.report`.
    """

    def __init__(self, expected: int, progress: Progress, results: TextIO | None) -> None:
        self._expected = expected
        self._progress = progress
        self._results = results
        self._tally = Tally()
        self._lock = threading.Lock()
        self.consumer: Consumer | None = None

    def __call__(self, message: Message) -> None:
        completed_at = time.time()
        record = {
            "history": list(message.history),
            "broker_message_id": message.message_id,
            "run_id": message.run_id,
            "key": message.key,
            "data": {**message.data, "completed_at": completed_at},
        }
        with self._lock:
            is_new = self._tally.record(message, completed_at)
            done = is_new and self._tally.completed == self._expected
            self._emit("completed" if is_new else "duplicate", record)
            self._progress.update(self._tally.completed, duplicates=self._tally.duplicates)
        if done and self.consumer is not None:
            self.consumer.request_stop()

    def log_summary(self) -> None:
        with self._lock:
            self._emit("summary", self._tally.summary())

    def _emit(self, message: str, record: dict[str, object]) -> None:
        log.info(message, extra=record)
        if self._results is not None:
            self._results.write(json.dumps({"message": message, **record}) + "\n")


def main(env: Env) -> int:
    broker = BrokerSettings.from_env(env)
    settings = ConsumerSettings.from_env(
        env, broker, default_queue="service_log", default_workers=1
    )
    expected = env.integer("EXPECTED_MESSAGES", 0, minimum=0, maximum=10**9)
    progress = Progress(log, progress_interval(env), expected or None)
    results_path = env.text("RESULTS_FILE", "", max_length=4096)
    with open_results(results_path) as results:
        sink = Sink(expected, progress, results)
        sink.consumer = Consumer(broker, settings, sink)
        serve(sink.consumer)
        sink.log_summary()
    return 0


def open_results(path: str) -> TextIO | contextlib.nullcontext[None]:
    if not path:
        return contextlib.nullcontext()
    try:
        return open(path, "a", buffering=1, encoding="utf-8")
    except OSError as error:
        allowed = f"a file that can be written ({error.strerror})"
        raise SettingsError("RESULTS_FILE", path, allowed) from None


if __name__ == "__main__":
    run(main)
