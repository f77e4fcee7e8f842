"""What `last` counts: completions, duplicates, order and latency."""

from __future__ import annotations

import math

import pytest

from common.messages import Message
from last import tally as tally_module
from last.tally import Tally, percentile


def message(seq: int, created_at: float = 100.0, message_id: str | None = None) -> Message:
    return Message(
        (f"seq-{seq}", "service_a", "service_b", "service_c"),
        message_id or f"id-{seq}",
        {"created_at": created_at},
    )


# -- percentile ------------------------------------------------------------------------------


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 0.5))


def test_percentile_of_one_value() -> None:
    for fraction in (0.0, 0.01, 0.5, 0.99, 1.0):
        assert percentile([3.5], fraction) == 3.5


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.0, 1), (0.1, 1), (0.11, 2), (0.5, 5), (0.51, 6), (0.9, 9), (0.95, 10), (1.0, 10)],
)
def test_percentile_nearest_rank_of_ten(fraction: float, expected: int) -> None:
    assert percentile([float(n) for n in range(1, 11)], fraction) == expected


@pytest.mark.parametrize(("fraction", "expected"), [(0.5, 50), (0.95, 95), (0.99, 99), (1.0, 100)])
def test_percentile_of_a_hundred(fraction: float, expected: int) -> None:
    assert percentile(list(range(1, 101)), fraction) == expected


@pytest.mark.parametrize("count", [1, 2, 3, 7, 19, 20, 21, 60, 99, 100, 101, 1000, 12345])
def test_percentile_rank_is_exact_for_the_summary_fractions(count: int) -> None:
    """No floating-point off-by-one: p95 of n values is value number ceil(95n/100)."""
    values = list(range(1, count + 1))
    for fraction, percent in ((0.5, 50), (0.95, 95), (0.99, 99), (1.0, 100)):
        rank = max(1, -(-percent * count // 100))
        assert percentile(values, fraction) == rank


# -- Tally -----------------------------------------------------------------------------------


def test_counts_each_completion() -> None:
    tally = Tally()
    for seq in range(1, 6):
        tally.record(message(seq), 101.0)
    assert (tally.completed, tally.duplicates, tally.out_of_sequence) == (5, 0, 0)


def test_duplicates_are_counted_apart() -> None:
    tally = Tally()
    tally.record(message(1, message_id="a"), 100.5)
    tally.record_duplicate()
    tally.record(message(2, message_id="b"), 101.0)
    tally.record_duplicate()
    assert (tally.completed, tally.duplicates) == (2, 2)
    summary = tally.summary()
    assert summary["completed"] == 2
    assert summary["duplicates"] == 2
    # A duplicate adds no latency figure: only 0.5 s (seq 1) and 1.0 s (seq 2) were recorded.
    assert summary["latency_ms"] == {"p50": 500.0, "p95": 1000.0, "p99": 1000.0, "max": 1000.0}


def test_same_seq_with_another_id_is_not_a_duplicate() -> None:
    tally = Tally()
    tally.record(message(1, message_id="a"), 101.0)
    tally.record(message(1, message_id="b"), 101.0)
    assert (tally.completed, tally.duplicates, tally.out_of_sequence) == (2, 0, 0)


@pytest.mark.parametrize(
    ("seqs", "out_of_sequence"),
    [
        ([1, 2, 3, 4], 0),
        ([1, 3, 2, 4], 1),
        ([5, 1, 2, 3], 3),
        ([2, 1, 4, 3, 6, 5], 3),
        ([4, 3, 2, 1], 3),
        ([1, 1, 1], 0),  # distinct ids with the same seq are not out of sequence
    ],
)
def test_out_of_sequence_completions(seqs: list[int], out_of_sequence: int) -> None:
    tally = Tally()
    for n, seq in enumerate(seqs):
        tally.record(message(seq, message_id=f"id-{n}"), 200.0)
    assert tally.out_of_sequence == out_of_sequence
    assert tally.summary()["completed_out_of_sequence"] == out_of_sequence


def test_a_duplicate_is_not_counted_out_of_sequence() -> None:
    tally = Tally()
    tally.record(message(1), 101.0)
    tally.record(message(2), 101.0)
    tally.record_duplicate()  # seq 1 again, redelivered late
    assert (tally.completed, tally.duplicates, tally.out_of_sequence) == (2, 1, 0)


def test_summary_figures() -> None:
    tally = Tally()
    # Created at 100, 101, 102, 103; latencies 0.1, 0.2, 0.3 and 0.4 s; completed last at 103.4.
    for n in range(4):
        tally.record(message(n + 1, created_at=100.0 + n), 100.0 + n + 0.1 * (n + 1))
    assert tally.summary() == {
        "completed": 4,
        "duplicates": 0,
        "completed_out_of_sequence": 0,
        "throughput_per_s": round(4 / 3.4, 1),  # 1.2
        "latency_ms": {"p50": 200.0, "p95": 400.0, "p99": 400.0, "max": 400.0},
    }


def test_summary_of_a_hundred_latencies() -> None:
    tally = Tally()
    # Latencies 1 ms … 100 ms, recorded out of order; all created at 1000.0.
    for ms in [*range(100, 50, -1), *range(1, 51)]:
        tally.record(message(ms, created_at=1000.0), 1000.0 + ms / 1000)
    summary = tally.summary()
    assert summary["latency_ms"] == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
    assert summary["throughput_per_s"] == 1000.0  # 100 in 0.1 s
    assert summary["completed_out_of_sequence"] == 99  # every one after seq 100


def test_summary_of_nothing() -> None:
    assert Tally().summary() == {
        "completed": 0,
        "duplicates": 0,
        "completed_out_of_sequence": 0,
        "throughput_per_s": None,
        "latency_ms": {"p50": None, "p95": None, "p99": None, "max": None},
    }


def test_summary_when_everything_completed_at_the_instant_it_was_created() -> None:
    tally = Tally()
    tally.record(message(1, created_at=50.0), 50.0)
    summary = tally.summary()
    assert summary["throughput_per_s"] is None  # no time elapsed: no rate, not a division error
    assert summary["latency_ms"]["max"] == 0.0


def test_kept_latencies_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tally_module, "KEPT_LATENCIES", 3)
    tally = Tally()
    for seq, latency in enumerate([9.0, 1.0, 2.0, 3.0], start=1):
        tally.record(message(seq, created_at=100.0), 100.0 + latency)
    assert tally.summary()["latency_ms"]["max"] == 3000.0  # the oldest (9 s) was dropped
    assert tally.completed == 4
