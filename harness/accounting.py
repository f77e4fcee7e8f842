"""Accounting for every message of a run, from what `first` was told and what `last` recorded.

Each message `first` offered ends up exactly one of:
- completed: `last` recorded it (the first `completed` record of its sequence number counts);
- failed at the caller: not completed, and `first` was told it failed (a `message failed`
  record from the HTTP `first`, `message not confirmed` from the broker's);
- lost: neither: not completed, and nobody said so.
A message the caller was told had failed but that completed all the same counts as completed,
and is also counted in `completed_after_failure`: a caller that tried again would make a
duplicate. Both pipelines' `first` and `last` records are read the same way.
"""

from __future__ import annotations

import enum
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from last.tally import percentile

FAILURE_RECORDS = ("message failed", "message not confirmed")  # HTTP first, broker first
SUMMARY_RECORDS = {"sent": "accepted", "published": "confirmed"}  # record -> its accepted count
_SEQ = re.compile(r"seq-([0-9]{1,18})")


class Fate(enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed at the caller"
    LOST = "lost"


def seq_of(text: object) -> int | None:
    match = _SEQ.fullmatch(text) if isinstance(text, str) else None
    return int(match.group(1)) if match else None


def logged_at(record: Mapping[str, object]) -> float:
    """When a record was logged: its `asctime` (local time, milliseconds), as epoch seconds."""
    stamp, _, millis = str(record["asctime"]).partition(",")
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis or 0) / 1000


@dataclass(frozen=True)
class CallerView:
    """What `first` was told: the messages that failed (and when), and how many it delivered."""

    failed: dict[int, float]  # seq -> when the failure was reported
    accepted: int | None  # from its closing record; None if it wrote none
    repeated_failures: int  # failure records for a seq reported before (should be 0)


def caller_view(first_records: Iterable[Mapping[str, object]]) -> CallerView:
    failed: dict[int, float] = {}
    accepted, repeated = None, 0
    for record in first_records:
        kind = record.get("message")
        if kind in FAILURE_RECORDS and (seq := seq_of(record.get("seq"))) is not None:
            repeated += seq in failed
            failed.setdefault(seq, logged_at(record))
        elif kind in SUMMARY_RECORDS:
            accepted = int(record[SUMMARY_RECORDS[kind]])
    return CallerView(failed, accepted, repeated)


@dataclass(frozen=True)
class Completion:
    seq: int
    created_at: float
    completed_at: float

    @property
    def latency(self) -> float:
        return self.completed_at - self.created_at


@dataclass(frozen=True)
class Arrivals:
    """What `last` recorded of one run: each sequence number's first completion, and repeats."""

    completions: dict[int, Completion]
    duplicates: int  # `duplicate` records, and `completed` records of a seq completed before
    strangers: int  # records of this run whose seq was never offered (should be 0)


def arrivals(last_records: Iterable[Mapping], run_id: str | None, offered: int) -> Arrivals:
    completions: dict[int, Completion] = {}
    duplicates = strangers = 0
    for record in last_records:
        kind = record.get("message")
        if kind not in ("completed", "duplicate") or record.get("run_id") != run_id:
            continue
        seq = seq_of(record["history"][0])
        if seq is None or not 1 <= seq <= offered:
            strangers += 1
        elif kind == "duplicate" or seq in completions:
            duplicates += 1
        else:
            data = record["data"]
            completions[seq] = Completion(seq, data["created_at"], data["completed_at"])
    return Arrivals(completions, duplicates, strangers)


def fates(offered: int, failed: Iterable[int], completed: Iterable[int]) -> dict[int, Fate]:
    """Each offered message's one fate; completion wins over a reported failure."""
    failed, completed = set(failed), set(completed)
    return {
        seq: Fate.COMPLETED if seq in completed else Fate.FAILED if seq in failed else Fate.LOST
        for seq in range(1, offered + 1)
    }


@dataclass(frozen=True)
class Account:
    offered: int
    accepted: int  # the first hop said yes: the broker confirmed it, or service_a answered 200
    completed: int
    failed: int  # failed at the caller and not completed
    lost: int
    completed_after_failure: int
    duplicates: int
    p50: float  # seconds, created to completed, over the completed messages
    p99: float
    # Seconds from the fault's end until every message accepted by then had completed (0 when
    # they all had, or there was no fault); None if some accepted message never completed.
    recovery: float | None
    # Signs of a broken account, 0 when all is well: `first`'s own count of accepted messages
    # disagrees by `unaccounted`; it reported a failure twice; `last` recorded unknown messages.
    unaccounted: int
    repeated_failures: int
    strangers: int


def account(
    offered: int, caller: CallerView, arrived: Arrivals, fault_end: float | None
) -> Account:
    fate = fates(offered, caller.failed, arrived.completions)
    counts = {kind: sum(1 for f in fate.values() if f is kind) for kind in Fate}
    accepted = [seq for seq in range(1, offered + 1) if seq not in caller.failed]
    recovery = None
    if all(seq in arrived.completions for seq in accepted):  # else: never recovered
        recovery = backlog_cleared(arrived.completions.values(), fault_end)
    latencies = sorted(c.latency for c in arrived.completions.values())
    stated = caller.accepted if caller.accepted is not None else len(accepted)
    return Account(
        offered=offered,
        accepted=len(accepted),
        completed=counts[Fate.COMPLETED],
        failed=counts[Fate.FAILED],
        lost=counts[Fate.LOST],
        completed_after_failure=len(set(caller.failed) & set(arrived.completions)),
        duplicates=arrived.duplicates,
        p50=percentile(latencies, 0.5),
        p99=percentile(latencies, 0.99),
        recovery=recovery,
        unaccounted=abs(stated - len(accepted)),
        repeated_failures=caller.repeated_failures,
        strangers=arrived.strangers,
    )


def backlog_cleared(completions: Iterable[Completion], fault_end: float | None) -> float:
    """Seconds from the end of the fault until every message created by then had completed."""
    if fault_end is None:
        return 0.0
    ends = [c.completed_at - fault_end for c in completions if c.created_at <= fault_end]
    return max([0.0, *ends])


def per_second(times: Iterable[float], start: float, seconds: int) -> list[int]:
    """How many of `times` fall in each second after `start`, for `seconds` seconds."""
    counts = [0] * seconds
    for moment in times:
        slot = math.floor(moment - start)
        if 0 <= slot < seconds:
            counts[slot] += 1
    return counts
