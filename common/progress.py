"""A progress line every few seconds while work goes on: one line, never one per message."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from common.consumer.events import Event, Settled
from common.settings import Env


def progress_interval(env: Env) -> float:
    return env.number("PROGRESS_INTERVAL", 5.0, minimum=0.0, maximum=3600.0)


class Progress:
    """Call `update` as often as you like; it logs at most once per `interval` seconds."""

    def __init__(self, log: logging.Logger, interval: float, expected: int | None) -> None:
        self._log = log
        self._interval = interval
        self._expected = expected
        self._last_at = time.monotonic()
        self._last_done = 0

    def due(self) -> bool:
        """True once `interval` has passed since the last line."""
        return bool(self._interval) and time.monotonic() - self._last_at >= self._interval

    def update(self, done: int, **fields: object) -> None:
        if not self.due():
            return
        now = time.monotonic()
        rate = (done - self._last_done) / (now - self._last_at)
        self._last_at, self._last_done = now, done
        self._log.info(
            "progress",
            extra={
                "done": done,
                "expected": self._expected,
                "rate_per_s": round(rate, 1),
                **fields,
            },
        )


class SettledProgress:
    """An observer of a consumer's events (`common.consumer.events`): its progress line counts
    the messages settled for good here (acked: passed on, ended, or dead-lettered), with the
    extra `fields` its owner adds."""

    def __init__(self, progress: Progress, fields: Callable[[], dict[str, object]] = dict) -> None:
        self._progress = progress
        self._fields = fields
        self.done = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Settled) and event.acked:
            self.done += 1
            if self._progress.due():
                self._progress.update(self.done, **self._fields())
