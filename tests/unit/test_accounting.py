"""Accounting for every message of a comparison run: each one's single fate, from the records."""

from __future__ import annotations

import math
import time

from harness.accounting import (
    Arrivals,
    CallerView,
    Completion,
    Fate,
    account,
    arrivals,
    caller_view,
    fates,
    logged_at,
    per_second,
)


def asctime(moment: float) -> str:
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))
        + f",{int(moment % 1 * 1000):03d}"
    )


def completed(seq: int, created: float, done: float, run_id: str = "r", kind: str = "completed"):
    return {
        "message": kind,
        "history": [f"seq-{seq}", "service_a", "service_b", "service_c"],
        "broker_message_id": f"id-{seq}",
        "run_id": run_id,
        "data": {"created_at": created, "completed_at": done},
    }


def test_each_message_has_exactly_one_fate() -> None:
    fate = fates(5, failed=[2, 3], completed=[1, 3])
    assert fate == {
        1: Fate.COMPLETED,
        2: Fate.FAILED,
        3: Fate.COMPLETED,  # completed although the caller was told it failed
        4: Fate.LOST,
        5: Fate.LOST,
    }


def test_logged_at_reads_asctime_to_the_millisecond() -> None:
    moment = 1795725217.125
    assert logged_at({"asctime": asctime(moment)}) == moment


def test_caller_view_from_either_first() -> None:
    at = 1795725217.5
    http = [
        {"message": "sending", "asctime": asctime(at)},
        {"message": "message failed", "seq": "seq-4", "asctime": asctime(at)},
        {"message": "message failed", "seq": "seq-4", "asctime": asctime(at + 1)},
        {"message": "sent", "accepted": 8, "failed": 2, "asctime": asctime(at)},
    ]
    assert caller_view(http) == CallerView({4: at}, accepted=8, repeated_failures=1)
    broker = [
        {"message": "message not confirmed", "seq": "seq-9", "asctime": asctime(at)},
        {"message": "published", "confirmed": 99, "asctime": asctime(at)},
    ]
    assert caller_view(broker) == CallerView({9: at}, accepted=99, repeated_failures=0)
    assert caller_view([]).accepted is None


def test_arrivals_count_the_first_completion_and_every_repeat() -> None:
    records = [
        completed(1, 10.0, 12.0),
        completed(1, 10.0, 13.0),  # completed twice: a duplicate
        completed(2, 10.0, 14.0, kind="duplicate"),
        completed(2, 10.0, 15.0),
        completed(3, 10.0, 16.0, run_id="another run"),
        completed(9, 10.0, 17.0),  # never offered
        {"message": "progress"},
    ]
    seen = arrivals(records, "r", offered=4)
    assert seen.completions == {1: Completion(1, 10.0, 12.0), 2: Completion(2, 10.0, 15.0)}
    assert (seen.duplicates, seen.strangers) == (2, 1)


def test_account_of_a_run() -> None:
    caller = CallerView({3: 50.0, 4: 51.0}, accepted=3, repeated_failures=0)
    done = {1: Completion(1, 10.0, 11.0), 2: Completion(2, 10.0, 30.0), 4: Completion(4, 10, 12)}
    result = account(5, caller, Arrivals(done, duplicates=1, strangers=0), fault_end=20.0)
    assert (result.offered, result.accepted) == (5, 3)
    assert (result.completed, result.failed, result.lost) == (3, 1, 1)
    assert result.completed_after_failure == 1
    assert result.duplicates == 1
    assert (result.p50, result.p99) == (2.0, 20.0)
    assert result.recovery is None  # seq 5 was accepted and never completed
    assert result.unaccounted == 0


def test_recovery_runs_from_the_end_of_the_fault_until_its_backlog_completed() -> None:
    caller = CallerView({}, accepted=3, repeated_failures=0)
    done = {
        1: Completion(1, 10.0, 11.0),
        2: Completion(2, 10.0, 27.5),
        3: Completion(3, 25.0, 40.0),  # created after the fault: not its backlog
    }
    assert account(3, caller, Arrivals(done, 0, 0), fault_end=20.0).recovery == 7.5
    assert account(3, caller, Arrivals(done, 0, 0), fault_end=30.0).recovery == 10.0
    assert account(3, caller, Arrivals(done, 0, 0), fault_end=50.0).recovery == 0.0
    assert account(3, caller, Arrivals(done, 0, 0), fault_end=None).recovery == 0.0


def test_account_notices_a_first_whose_count_disagrees() -> None:
    caller = CallerView({}, accepted=7, repeated_failures=0)
    result = account(10, caller, Arrivals({}, 0, 0), fault_end=None)
    assert result.unaccounted == 3
    assert result.lost == 10 and math.isnan(result.p50)


def test_per_second() -> None:
    assert per_second([100.2, 100.9, 101.0, 103.99, 99.0, 104.0], 100.0, 4) == [2, 1, 0, 1]
