"""The progress line: at most one per interval, counting what the consumer's events say."""

from __future__ import annotations

import logging
from unittest import mock

import pika

from common.consumer.events import Received, Settled
from common.consumer.outcomes import Delivery
from common.progress import Progress, SettledProgress


def delivery(tag: int) -> Delivery:
    return Delivery(1, tag, False, pika.BasicProperties(), b"[]")


def test_progress_counts_what_is_settled_for_good_one_line_per_interval(caplog) -> None:
    caplog.set_level(logging.INFO)
    clock = mock.Mock(return_value=100.0)
    with mock.patch("common.progress.time.monotonic", clock):
        progress = Progress(logging.getLogger("t"), 5.0, expected=10)
        observer = SettledProgress(progress, lambda: {"duplicates": 1})
        for tag in range(1, 5):
            observer(Received(delivery(tag)))
            observer(Settled(delivery(tag), acked=tag != 2))  # 2 went back to its queue
        assert caplog.records == []  # within the first interval: no line yet
        clock.return_value = 106.0
        observer(Settled(delivery(5), acked=True))
        observer(Settled(delivery(6), acked=True))  # in the same interval: no second line
    [line] = [r for r in caplog.records if r.getMessage() == "progress"]
    assert (line.done, line.expected, line.duplicates) == (4, 10, 1)
    assert line.rate_per_s == round(4 / 6.0, 1)
