"""The sink's handler: each finished message's record stored once, then logged and counted.

Each finished message's record goes to the store (`last.store`) under its broker_message_id
before its ack; it is logged `completed` if this write stored it, `duplicate` if the id was there.
The HTTP pipeline's `last` (`http_pipeline.last`) uses the same Sink, so the report reads both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from concurrent.futures import Future
from typing import TextIO

from common.consumer import Consumer
from common.messages import Message
from common.progress import Progress
from common.settings import SettingsError
from last.store import Store
from last.tally import Tally

log = logging.getLogger("last")


class Sink:
    """The handler: store the record, log and count it, and stop after EXPECTED_MESSAGES if set.

    It hands the record to the store and returns a Future at once: the message is settled when
    the store has answered, and a store that does not answer holds it unacked, with no thread
    waiting. The `completed` line is written as soon as the store has answered (by the store's
    writer), so that a `last` killed in between leaves as few stored records without their line
    as it can.
    With RESULTS_FILE set, the completed, duplicate and summary records also go to that file,
    one JSON object per line, for `python -m tools.report`.
    """

    def __init__(
        self, store: Store, expected: int, progress: Progress, results: TextIO | None
    ) -> None:
        self._store = store
        self._expected = expected
        self._progress = progress
        self._results = results
        self._tally = Tally()
        self._lock = threading.Lock()
        self.consumer: Consumer | None = None

    def __call__(self, message: Message) -> Future[None]:
        completed_at = time.time()
        record = {
            "history": list(message.history),
            "broker_message_id": message.message_id,
            "run_id": message.run_id,
            "key": message.key,
            "data": {**message.data, "completed_at": completed_at},
        }
        settled: Future[None] = Future()

        def answered(stored: Future[bool]) -> None:
            try:
                self._answered(message, completed_at, record, stored=stored.result())
            except Exception as error:  # the message is not settled: it goes back to the queue
                settled.set_exception(error)
            else:
                settled.set_result(None)

        record_json = json.dumps(record, separators=(",", ":"))
        self._store.add(message.message_id, record_json).add_done_callback(answered)
        return settled

    def _answered(
        self, message: Message, completed_at: float, record: dict[str, object], *, stored: bool
    ) -> None:
        """Count and log a message once the store has answered for its record."""
        with self._lock:
            if stored:
                self._tally.record(message, completed_at)
            else:
                self._tally.record_duplicate()
            done = stored and self._tally.completed == self._expected
            self._emit("completed" if stored else "duplicate", record)
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


def open_results(path: str) -> TextIO | contextlib.nullcontext[None]:
    if not path:
        return contextlib.nullcontext()
    try:
        return open(path, "a", buffering=1, encoding="utf-8")
    except OSError as error:
        allowed = f"a file that can be written ({error.strerror})"
        raise SettingsError("RESULTS_FILE", path, allowed) from None
