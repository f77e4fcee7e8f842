"""Counting what reaches the end of the pipeline: completions, duplicates, order, latency."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from common.messages import Message

# Latencies kept for the percentiles of a `last` that runs for ever: the most recent ones.
KEPT_LATENCIES = 100_000


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values; `fraction` from 0 to 1."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(values)))
    return values[rank - 1]


class Tally:
    def __init__(self) -> None:
        self.completed = 0
        self.duplicates = 0
        self.out_of_sequence = 0
        self._highest_seq = 0
        self._latencies: deque[float] = deque(maxlen=KEPT_LATENCIES)
        self._first_created = math.inf
        self._last_completed = -math.inf

    def record(self, message: Message, completed_at: float) -> bool:
        """Count a message completed (the store took its record); True if it came out of
        sequence (after a message with a higher seq)."""
        self.completed += 1
        late = message.seq < self._highest_seq
        self.out_of_sequence += late
        self._highest_seq = max(self._highest_seq, message.seq)
        created_at = message.data["created_at"]
        self._latencies.append(completed_at - created_at)
        self._first_created = min(self._first_created, created_at)
        self._last_completed = max(self._last_completed, completed_at)
        return late

    def record_duplicate(self) -> None:
        """Count a message whose id the store already held."""
        self.duplicates += 1

    def summary(self) -> dict[str, object]:
        latencies = sorted(self._latencies)
        elapsed = self._last_completed - self._first_created
        return {
            "completed": self.completed,
            "duplicates": self.duplicates,
            "completed_out_of_sequence": self.out_of_sequence,
            "throughput_per_s": round(self.completed / elapsed, 1) if elapsed > 0 else None,
            "latency_ms": {
                name: round(percentile(latencies, fraction) * 1000, 1) if latencies else None
                for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
            },
        }
