"""Trying again after a failure: how long to wait, and how to say what went wrong.

One back-off for every retry in the runtime (the broker connection, a refused publish, a keyed
retry in place, `last`'s store writer), so that they all behave, and read, alike.
"""

from __future__ import annotations

FIRST_DELAY = 0.5  # seconds: long enough for a restarting broker or store to come back
LONGEST_DELAY = 5.0  # seconds: short enough that a recovered service is noticed quickly


def retry_delay(
    attempt: int, *, first: float = FIRST_DELAY, longest: float = LONGEST_DELAY
) -> float:
    """Doubling from `first` for each attempt (counted from 1), never more than `longest`:
    0.5 s, 1 s, 2 s, 4 s, then 5 s by default."""
    return min(first * 2 ** (attempt - 1), longest)


def describe(error: BaseException | str) -> str:
    """One line for a log: the error's type and text (a string is taken as it is)."""
    if isinstance(error, str):
        return error
    text = str(error) or repr(error)
    return f"{type(error).__name__}: {text}"
