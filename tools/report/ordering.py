"""How far the order messages finished in strays from their sequence order.

Everything here takes the sequence numbers in completion order. They are distinct in a single
run of `first`; a second run repeats them, and then equal numbers count as in order (no
inversion, no displacement) and Kendall's tau is the tau-b that allows for such ties.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Ordering:
    count: int
    out_of_sequence: int
    largest_displacement: int
    # The message displaced most: (sequence number, place in sequence order, place finished).
    most_displaced: tuple[int, int, int] | None
    tau: float | None
    repeated_seqs: int


def count_inversions(values: Sequence[int]) -> int:
    """Pairs i < j with values[i] > values[j], by merge sort: O(n log n)."""
    inversions = 0
    items = list(values)
    width = 1
    while width < len(items):
        merged: list[int] = []
        for start in range(0, len(items), 2 * width):
            left = items[start : start + width]
            right = items[start + width : start + 2 * width]
            i = j = 0
            while i < len(left) and j < len(right):
                if right[j] < left[i]:
                    inversions += len(left) - i
                    merged.append(right[j])
                    j += 1
                else:
                    merged.append(left[i])
                    i += 1
            merged += left[i:] + right[j:]
        items = merged
        width *= 2
    return inversions


def kendall_tau(values: Sequence[int]) -> float | None:
    """Kendall's tau(-b) between position and value; None when it is undefined (n < 2)."""
    pairs = len(values) * (len(values) - 1) // 2
    tied = sum(n * (n - 1) // 2 for n in Counter(values).values())
    if pairs - tied == 0:
        return None
    discordant = count_inversions(values)
    return (pairs - tied - 2 * discordant) / math.sqrt((pairs - tied) * pairs)


def out_of_sequence(values: Sequence[int]) -> int:
    """Messages that finished after one with a higher sequence number (as `last` counts them)."""
    count, highest = 0, -math.inf
    for value in values:
        if value < highest:
            count += 1
        highest = max(highest, value)
    return count


def ordering(values: Sequence[int]) -> Ordering:
    # A message's place in sequence order; a stable sort puts equal numbers in completion order.
    sequence_place = sorted(range(len(values)), key=values.__getitem__)
    largest, most_displaced = 0, None
    for place, position in enumerate(sequence_place):
        if abs(position - place) > largest:
            largest = abs(position - place)
            most_displaced = (values[position], place + 1, position + 1)
    return Ordering(
        count=len(values),
        out_of_sequence=out_of_sequence(values),
        largest_displacement=largest,
        most_displaced=most_displaced,
        tau=kendall_tau(values),
        repeated_seqs=sum(n - 1 for n in Counter(values).values()),
    )


def describe_tau(tau: float | None) -> str:
    """Kendall's tau in words, for the report's one-line explanation."""
    if tau is None:
        return "undefined for fewer than two messages"
    if tau == 1:
        words = "finished exactly in sequence order"
    elif tau >= 0.7:
        words = "mostly in sequence order, shuffled locally"
    elif tau >= 0.3:
        words = "loosely in sequence order"
    elif tau > -0.3:
        words = "finishing order little related to sequence order"
    else:
        words = "largely in reverse sequence order"
    return f"{words} (1 = same order, 0 = unrelated, -1 = reversed)"


@dataclass(frozen=True)
class KeyOrdering:
    """Order within each key: a completion is out of key order when a later message of its key
    (a higher sequence number) completed before it."""

    keys: int
    out_of_order: dict[str, int]  # key -> completions out of its key's publish order

    @property
    def total(self) -> int:
        return sum(self.out_of_order.values())

    @property
    def keys_affected(self) -> int:
        return sum(1 for count in self.out_of_order.values() if count)


def key_ordering(completions: Sequence[tuple[str, int]]) -> KeyOrdering:
    """From (key, sequence number) of each first completion, in completion order."""
    highest: dict[str, int] = {}
    late: Counter[str] = Counter()
    for key, seq in completions:
        if seq < highest.get(key, -1):
            late[key] += 1
        highest[key] = max(highest.get(key, -1), seq)
    return KeyOrdering(len(highest), {key: late[key] for key in highest})
