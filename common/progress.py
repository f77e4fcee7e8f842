"""A progress line every few seconds while work goes on: one line, never one per message."""

from __future__ import annotations

import logging
import time

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

    def update(self, done: int, **fields: object) -> None:
        now = time.monotonic()
        if not self._interval or now - self._last_at < self._interval:
            return
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
