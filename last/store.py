"""Where `last` keeps what it completed: one record per broker_message_id, and its line once.

With STORE_URL set, every `last` replica writes to the same Redis (`last.redis_store`), so a
message is logged `completed` once however many replicas run or are replaced. A record goes in
only if its id is not there yet, and `last` logs `completed` when its own write stored it, else
`duplicate`. The write comes before the ack, and the ack after the line: a `last` killed in
between leaves the message unacked, and the broker redelivers it.

The store also remembers whether each record's line was written: a record goes in marked
"line not written", and the mark is cleared once its `completed` line is out. A `last` killed
after the write and before the line leaves the mark, and the `last` that gets the redelivery
writes the stored record's line for it, as `completed` with `"recovered": true`, then clears the
mark: every stored record gets its line. A record marked for less than RECOVER_AFTER seconds may
be in the hands of a live `last` writing its line right now (the same message published twice):
it is asked about again once that time is up. The one window left: a `last` killed after
writing a batch's lines and before clearing their marks gives those lines twice, at most the
messages it held unacked (PREFETCH) per kill.

One round trip per message would cap the sink's rate, so records go through a `Writer`
(`last.writer`): `add` returns a Future at once, and one thread writes whatever has come in
meanwhile in one command, writes the lines, clears the marks, then resolves the Futures. No
worker thread waits on the store: the consumer settles each message when its Future resolves.

Without STORE_URL the ids are kept in memory (`last.memory_store`): de-duplication then holds
within one process. `last.stores.open_store` opens the one STORE_URL names.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol


class StoreUnavailable(Exception):
    """The store did not answer, or refused the write for now (loading, read-only, full)."""


class StoreRefused(Exception):
    """The store answered, but `last` cannot use it: wrong credentials, or too old a Redis."""


class Verdict(enum.Enum):
    COMPLETED = "completed"  # this call stored the record: its line is this call's to write
    DUPLICATE = "duplicate"  # the id was there, and its line was written
    RECOVERED = "recovered"  # the id was there, its line never written: this call writes it


@dataclass(frozen=True)
class Answer:
    """What the store said of one record, and the record to log: this call's, or for
    RECOVERED the one the store holds (the message as it first completed)."""

    verdict: Verdict
    record: str


@dataclass(frozen=True)
class Later:
    """The id is there with its line not written yet, by a `last` that may still be writing it:
    ask again in `seconds`."""

    seconds: float


class Store(Protocol):
    def add(self, key: str, record: str, log_line: Callable[[Answer], None]) -> Future[None]:
        """Keep `record` under `key` unless the key is there. Once the store has answered,
        `log_line` is called with the answer (on the store's thread: it must be quick); the
        Future resolves once the line is marked written, however long that takes."""
        ...
