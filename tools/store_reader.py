"""Reading back the records `last` keeps in its Redis store: for the report, tests and the bench.

`last` itself only writes (`last.redis_store`); reading every record is a tool's job, so it
lives here, out of the runtime.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis

from last.redis_store import STORE_TIMEOUT, failure, unwritten_key
from last.store import StoreRefused
from last.store_settings import StoreSettings, glob_escape

# Keys per SCAN (and per MGET of their records): one round trip per thousand records.
SCAN_COUNT = 1000


def stored_records(settings: StoreSettings) -> Iterator[tuple[str, str]]:
    """Every (id, record) in the store, each once, in no particular order; raises
    StoreUnavailable or StoreRefused if the store cannot be read."""
    prefix = settings.key_prefix
    client = settings.client(decode_responses=True, socket_timeout=STORE_TIMEOUT)
    pattern = glob_escape(prefix) + "*"
    seen = {unwritten_key(prefix)}  # not a record: the ids whose line is not written yet
    cursor = None
    try:
        while cursor != 0:
            cursor, keys = client.scan(cursor or 0, match=pattern, count=SCAN_COUNT)
            keys = [key for key in keys if key not in seen]
            seen.update(keys)
            for key, record in zip(keys, client.mget(keys) if keys else [], strict=True):
                if record is not None:  # deleted since the SCAN
                    yield key[len(prefix) :], record
    except redis.AuthenticationError as error:
        raise StoreRefused(f"the store at {settings.display_url} refused us ({error})") from None
    except redis.RedisError as error:
        raise failure(error, settings) from None
    finally:
        client.close()


def unwritten_lines(settings: StoreSettings) -> int:
    """How many stored records still wait for their `completed` line."""
    client = settings.client(socket_timeout=STORE_TIMEOUT)
    try:
        return int(client.zcard(unwritten_key(settings.key_prefix)))
    finally:
        client.close()
