"""The sink's handler: each finished message's record stored once, then logged and counted.

Each finished message's record goes to the store (`last.store`) under its broker_message_id
before its ack; it is logged `completed` if this write stored it, `duplicate` if the id was there
with its line written, and `completed` with `"recovered": true` (the stored record, as it first
completed) if the id was there but the `last` that stored it died before writing its line.
The HTTP pipeline's `last` (`http_pipeline.last`) uses the same Sink, so the report reads both.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, TextIO

import orjson

from common.consumer import Consumer
from common.messages import Message
from common.progress import Progress
from common.settings import SettingsError
from common.tracing import Traced
from last.metrics import SinkMetrics
from last.store import Answer, Store, Verdict
from last.tally import Tally

log = logging.getLogger("last")


class Sink:
    """The handler: store the record, log and count it, and stop after EXPECTED_MESSAGES if set.

    It hands the record to the store and returns a Future at once: the message is settled when
    the store has answered and the line is out, and a store that does not answer holds it
    unacked, with no thread waiting. The line is written as soon as the store has answered (on
    the store's writer thread), before the store marks it written.
    With RESULTS_FILE set, the completed, duplicate and summary records also go to that file,
    one JSON object per line, for `python -m tools.report`.
    """

    def __init__(
        self,
        store: Store,
        expected: int,
        progress: Progress,
        results: TextIO | None,
        metrics: SinkMetrics | None = None,
        *,
        store_spans: Traced | None = None,
    ) -> None:
        """`store_spans`, if given, makes each store write a CLIENT span (`common.tracing`)."""
        self._store = store
        self._store_spans = store_spans
        self._expected = expected
        self._progress = progress
        self._results = results
        self._metrics = metrics
        self._tally = Tally()
        self._lock = threading.Lock()
        self.consumer: Consumer | None = None

    def __call__(self, message: Message) -> Future[None]:
        if self._store_spans is not None:
            return self._store_spans(lambda: self._add(message))
        return self._add(message)

    def _add(self, message: Message) -> Future[None]:
        record = {
            "history": list(message.history),
            "broker_message_id": message.message_id,
            "run_id": message.run_id,
            "key": message.key,
            "data": {**message.data, "completed_at": time.time()},
        }
        record_json = orjson.dumps(record).decode()
        return self._store.add(
            message.message_id, record_json, lambda answer: self._answered(message, record, answer)
        )

    def _answered(self, message: Message, record: dict[str, Any], answer: Answer) -> None:
        """Count and log a message once the store has answered for its record."""
        if answer.verdict is Verdict.RECOVERED:  # the stored record, as it first completed
            record = {**orjson.loads(answer.record), "recovered": True}
        completed = answer.verdict is not Verdict.DUPLICATE
        completed_at = record["data"]["completed_at"]
        with self._lock:
            if completed:
                late = self._tally.record(message, completed_at)
            else:
                late = False
                self._tally.record_duplicate()
            if self._metrics is not None:
                latency = completed_at - message.data["created_at"]
                self._metrics.counted(completed=completed, out_of_sequence=late, latency=latency)
            done = completed and self._tally.completed == self._expected
            self._emit("completed" if completed else "duplicate", record)
            self._progress.update(self._tally.completed, duplicates=self._tally.duplicates)
        if done and self.consumer is not None:
            self.consumer.request_stop()

    def log_summary(self) -> None:
        with self._lock:
            self._emit("summary", self._tally.summary())

    def _emit(self, message: str, record: dict[str, object]) -> None:
        log.info(message, extra=record)
        if self._results is not None:
            self._results.write(orjson.dumps({"message": message, **record}).decode() + "\n")


def open_results(path: str) -> TextIO | contextlib.nullcontext[None]:
    if not path:
        return contextlib.nullcontext()
    try:
        return open(path, "a", buffering=1, encoding="utf-8")
    except OSError as error:
        allowed = f"a file that can be written ({error.strerror})"
        raise SettingsError("RESULTS_FILE", path, allowed) from None
