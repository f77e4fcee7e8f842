"""Where `last` keeps what it completed: one record per broker_message_id, written once.

With STORE_URL set, every `last` replica writes to the same Redis, so a message is logged
`completed` once however many replicas run or are replaced. Each record goes in under its id
with `SET key record NX GET`, which stores it only if the id is not there yet, and `last` logs
`completed` only when its own write stored the record (else `duplicate`). The write comes before
the ack: a `last` killed in between leaves the record stored and the message unacked, and the
redelivery is a `duplicate`. A `last` killed after the write but before its log line leaves a
record with no `completed` line: the store, not the log, is the full account.

One round trip per message would cap the sink's rate, so records go through a `Writer`: `add`
returns a Future at once, and one thread writes whatever has come in meanwhile in one command
(INSERT), then resolves the Futures. No worker thread waits on the store: the consumer settles
each message when its Future resolves (`common.consumer`).

When the store does not answer, the writer tries again with back-off, one log line per try, and
the Futures wait: their messages stay unacked (never nacked: on a quorum queue every requeue
spends a delivery attempt), and once PREFETCH of them are held the broker sends no more. When
the store answers again, everything waiting goes in one round trip.

Without STORE_URL the ids are kept in memory: de-duplication then holds within one process.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry

from common.retry import describe
from common.settings import Env, SettingsError, redact_url

log = logging.getLogger(__name__)

DEFAULT_KEY_PREFIX = "rabbithole:completed:"
# Ids an in-memory store remembers: a redelivery arrives within seconds or minutes, far inside.
REMEMBERED_IDS = 1_000_000
# Seconds for the store to answer before a try counts as failed; one round trip carries at most
# WORKERS small writes, which Redis answers in well under a millisecond.
STORE_TIMEOUT = 5.0
# Back-off between tries while the store does not answer: quick after a blip, then one log line
# every few seconds through a long outage.
FIRST_RETRY = 0.2
LONGEST_RETRY = 5.0
# SET with both NX and GET came with Redis 7.0.
OLDEST_REDIS = (7, 0)
# Records written in one round trip at most: a burst is bounded by PREFETCH anyway; this keeps
# a long outage's backlog from becoming one huge command.
MAX_BATCH = 1000
# Keys per SCAN (and per MGET of their records) when the report reads the store.
SCAN_COUNT = 1000
# One batch of records in one command: `SET id record NX GET` for each, which stores the record
# only if the id is not there and answers what was there. 1 where this call stored the record,
# or found the very same record: an earlier try of ours whose reply was lost (the write went
# through, the connection broke before the answer came back). A script costs the client half
# the CPU of a pipeline of as many SETs, and runs whole or not at all.
INSERT = """
local stored = {}
for i, key in ipairs(KEYS) do
  local found = redis.call('SET', key, ARGV[i], 'NX', 'GET')
  stored[i] = (not found or found == ARGV[i]) and 1 or 0
end
return stored
"""
URL_HELP = "a Redis URL like redis://host:6379/0 or redis://:password@host:6379/0 (or rediss://)"

Batch = Sequence[tuple[str, str]]  # (id, record) pairs


class StoreUnavailable(Exception):
    """The store did not answer, or refused the write for now (loading, read-only, full)."""


class StoreRefused(Exception):
    """The store answered, but `last` cannot use it: wrong credentials, or too old a Redis."""


class Store(Protocol):
    def add(self, key: str, record: str) -> Future[bool]:
        """Keep `record` under `key` unless the key is there; the Future says whether this call
        kept it. It resolves once the store has answered, however long that takes."""
        ...


@dataclass(frozen=True)
class StoreSettings:
    url: str  # empty: in memory, for this process only
    key_prefix: str

    @classmethod
    def from_env(cls, env: Env) -> StoreSettings:
        url = env.text("STORE_URL", "", max_length=4096)
        return cls(
            url=check_store_url("STORE_URL", url) if url else "",
            key_prefix=env.text("STORE_KEY_PREFIX", DEFAULT_KEY_PREFIX),
        )

    @property
    def display_url(self) -> str:
        return redact_url(self.url)


def check_store_url(name: str, url: str) -> str:
    """`url` if it is a Redis URL; SettingsError naming `name` if not."""
    try:
        parts = parse_url(url)
    except ValueError:
        raise SettingsError(name, redact_url(url), URL_HELP) from None
    if "host" not in parts and "path" not in parts:
        raise SettingsError(name, redact_url(url), f"{URL_HELP}: it names no host")
    return url


def open_store(settings: StoreSettings) -> Store:
    """The store `last` writes to; raises StoreRefused if the store answers but cannot be used.

    A store that does not answer yet is not an error: the first records wait for it."""
    if not settings.url:
        log.info(
            "no STORE_URL: completed ids are kept in memory, so de-duplication holds within "
            "this process only"
        )
        return MemoryStore()
    store = RedisStore(settings)
    try:
        store.check()
    except StoreUnavailable as error:
        log.warning(
            "the store does not answer yet; messages wait for it",
            extra={"store": settings.display_url, "error": str(error)},
        )
    else:
        log.info(
            "completed records go to the store",
            extra={"store": settings.display_url, "key_prefix": settings.key_prefix},
        )
    return Writer(store.insert, settings.display_url)


class MemoryStore:
    """The ids this process completed, the oldest forgotten past REMEMBERED_IDS."""

    def __init__(self, remembered: int = REMEMBERED_IDS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._remembered = remembered
        self._lock = threading.Lock()

    def add(self, key: str, record: str) -> Future[bool]:
        with self._lock:
            kept = key not in self._ids
            if kept:
                self._ids[key] = None
                if len(self._ids) > self._remembered:
                    self._ids.popitem(last=False)
        answer: Future[bool] = Future()
        answer.set_result(kept)
        return answer


class RedisStore:
    """The records in Redis, one string key per message: `<key prefix><broker_message_id>`."""

    def __init__(self, settings: StoreSettings) -> None:
        self._prefix = settings.key_prefix
        self._where = settings.display_url
        self._client = redis.Redis.from_url(
            settings.url,
            decode_responses=True,
            socket_timeout=STORE_TIMEOUT,
            socket_connect_timeout=STORE_TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # the caller retries, with back-off and a log line
        )
        self._insert = self._client.register_script(INSERT)

    def check(self) -> None:
        """Raises StoreRefused if the store cannot be used, StoreUnavailable if it is not there."""
        try:
            version = self._client.info("server")["redis_version"]
        except (redis.AuthenticationError, redis.exceptions.AuthorizationError) as error:
            raise StoreRefused(
                f"the store at {self._where} refused us ({error}): check the user and password "
                "in STORE_URL"
            ) from None
        except redis.RedisError as error:
            raise StoreUnavailable(describe(error)) from None
        found = tuple(int(part) for part in version.split(".")[:2])
        if found < OLDEST_REDIS:
            oldest = ".".join(map(str, OLDEST_REDIS))
            raise StoreRefused(
                f"the store at {self._where} runs Redis {version}; last needs Redis {oldest} or "
                "later (SET with NX and GET)"
            )

    def insert(self, batch: Batch) -> list[bool]:
        """Write each record unless its id is there, all in one round trip; True where this call
        stored it (see INSERT)."""
        keys = [self._prefix + key for key, _ in batch]
        try:
            stored = self._insert(keys=keys, args=[record for _, record in batch])
        except redis.RedisError as error:
            raise StoreUnavailable(describe(error)) from None
        return [flag == 1 for flag in stored]

    def records(self) -> Iterator[tuple[str, str]]:
        """Every (id, record) in the store, each once, in no particular order."""
        pattern = glob_escape(self._prefix) + "*"
        seen: set[str] = set()
        cursor = None
        try:
            while cursor != 0:
                cursor, keys = self._client.scan(cursor or 0, match=pattern, count=SCAN_COUNT)
                keys = [key for key in keys if key not in seen]
                seen.update(keys)
                for key, record in zip(keys, self._client.mget(keys) if keys else [], strict=True):
                    if record is not None:  # deleted since the SCAN
                        yield key[len(self._prefix) :], record
        except redis.AuthenticationError as error:
            raise StoreRefused(f"the store at {self._where} refused us ({error})") from None
        except redis.RedisError as error:
            raise StoreUnavailable(describe(error)) from None

    def close(self) -> None:
        self._client.close()


def glob_escape(text: str) -> str:
    """`text` matched literally in a Redis glob pattern (SCAN MATCH)."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


Pending = tuple[str, str, "Future[bool]"]  # (id, record, its answer)


class Writer:
    """Every record handed to it, written by one thread, everything waiting in one round trip.

    A lone record goes straight out; records that come in while a write is under way go in the
    next one together, so a burst costs one round trip. The writer resolves each record's Future
    as soon as the store has answered, so what follows a write (`last`'s log line, the ack)
    follows it at once.

    While `insert` fails, the writer tries again with back-off (taking in what came meanwhile),
    one log line per try, and the Futures wait for as long as that takes: none is told to give
    up, since giving up would mean handing its message back to the broker.
    """

    def __init__(
        self,
        insert: Callable[[Batch], list[bool]],
        where: str,
        *,
        first_retry: float = FIRST_RETRY,
        longest_retry: float = LONGEST_RETRY,
    ) -> None:
        self._insert = insert
        self._where = where
        self._first_retry = first_retry
        self._longest_retry = longest_retry
        self._queue: queue.SimpleQueue[Pending] = queue.SimpleQueue()
        # A daemon: records it had not written when the process ends were never acked either.
        threading.Thread(target=self._run, name="store-writer", daemon=True).start()

    def add(self, key: str, record: str) -> Future[bool]:
        answer: Future[bool] = Future()
        self._queue.put((key, record, answer))
        return answer

    def _run(self) -> None:
        while True:
            batch = self._take([self._queue.get()])
            stored = self._insert_until_it_answers(batch)
            for (_, _, answer), was_stored in zip(batch, stored, strict=True):
                answer.set_result(was_stored)

    def _take(self, batch: list[Pending]) -> list[Pending]:
        """`batch` and whatever else has come in, up to MAX_BATCH."""
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _insert_until_it_answers(self, batch: list[Pending]) -> list[bool]:
        retry_in, failed_at = self._first_retry, None
        while True:
            try:
                stored = self._insert([(key, record) for key, record, _ in batch])
                break
            except Exception as error:  # StoreUnavailable, or a bug: the records wait either way
                failed_at = failed_at or time.monotonic()
                log.warning(
                    "the store does not answer: holding messages unacked until it does",
                    extra={
                        "store": self._where,
                        "error": str(error) if isinstance(error, StoreUnavailable) else None,
                        "waiting": len(batch),
                        "retry_in_s": retry_in,
                    },
                    exc_info=not isinstance(error, StoreUnavailable),
                )
                time.sleep(retry_in)
                retry_in = min(retry_in * 2, self._longest_retry)
                self._take(batch)
        if failed_at is not None:
            log.info(
                "the store answers again",
                extra={
                    "store": self._where,
                    "outage_s": round(time.monotonic() - failed_at, 1),
                    "written": len(batch),
                },
            )
        return stored
