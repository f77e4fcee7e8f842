"""The figures of a run, from `last`'s records: counts, order, latency per stage, throughput.

Records are taken in completion order (`completed_at`, the file's order breaking ties), since
several `last` processes may have written them. The first `completed` record of a
broker_message_id is its completion; a `duplicate` record, or a later `completed` one for the
same id (another `last` had not seen the first), is a duplicate.

A stage's latency runs from the previous stamp (`created_at` for the first stage) to the
stage's own, which it sets when its work is done: time waiting in the stage's queue plus time
working. The `last` stage runs from the final stage's stamp to `completed_at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from last.tally import percentile
from tools.report.ordering import KeyOrdering, Ordering, key_ordering, ordering
from tools.report.records import Record

LAST_STAGE = "last"
END_TO_END = "end to end"
PERCENTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


@dataclass(frozen=True)
class Analysis:
    completions: list[Record]  # in completion order
    duplicates: int
    ordering: Ordering
    key_ordering: KeyOrdering | None  # None when the messages had no keys
    latencies: dict[str, list[float]]  # stage (then "last", "end to end") -> seconds, sorted
    elapsed: float  # first created_at to last completed_at, seconds

    @property
    def throughput(self) -> float | None:
        """Messages completed per second over the run."""
        return len(self.completions) / self.elapsed if self.elapsed > 0 else None

    def percentiles(self, stage: str) -> dict[str, float]:
        return {name: percentile(self.latencies[stage], f) for name, f in PERCENTILES}


def in_completion_order(records: Iterable[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r.completed_at, r.line))


def split_duplicates(records: list[Record]) -> tuple[list[Record], int]:
    """The completions, in completion order, and how many records were duplicates."""
    completions, seen, duplicates = [], set(), 0
    for record in in_completion_order(records):
        if record.kind == "duplicate" or record.message_id in seen:
            duplicates += 1
        else:
            seen.add(record.message_id)
            completions.append(record)
    return completions, duplicates


def stage_latencies(completions: list[Record]) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {}
    for record in completions:
        previous = record.created_at
        for stage in (*record.stages, LAST_STAGE):
            stamp = record.completed_at if stage == LAST_STAGE else record.times[stage]
            latencies.setdefault(stage, []).append(stamp - previous)
            previous = stamp
    latencies[END_TO_END] = [r.completed_at - r.created_at for r in completions]
    return {stage: sorted(values) for stage, values in latencies.items()}


def analyse(records: list[Record]) -> Analysis:
    completions, duplicates = split_duplicates(records)
    return Analysis(
        completions=completions,
        duplicates=duplicates,
        ordering=ordering([r.seq for r in completions]),
        key_ordering=(
            key_ordering([(r.key, r.seq) for r in completions if r.key is not None])
            if any(r.key is not None for r in completions)
            else None
        ),
        latencies=stage_latencies(completions),
        elapsed=(
            max(r.completed_at for r in completions) - min(r.created_at for r in completions)
            if completions
            else 0.0
        ),
    )
