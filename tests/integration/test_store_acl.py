"""`last`'s store with a Redis user per client (`provision.store_acl`), tried on the local Redis:
`last`'s user can do its job and nothing else, the report's user can only read, and what they
are refused comes back as Redis's own NOPERM. The users are the test's own (named after its key
prefix) and are removed at the end; the local Redis's default user is left as it is."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
import redis

from harness.store import StoreKeys, StoreUsers
from last.redis_store import RedisStore
from last.store import Verdict
from last.store_settings import StoreSettings
from tools.store_reader import stored_records, unwritten_lines


@pytest.fixture
def users(store: StoreKeys) -> Iterator[StoreUsers]:
    made = StoreUsers(store, {role: secrets.token_urlsafe(24) for role in ("last", "monitor")})
    yield made
    made.delete()


def refused(call) -> bool:
    """Redis refused it for the user's ACL: NOPERM, or inside a script its own words for it."""
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as error:
        return "can't run this command" in str(error)
    return False


def test_last_may_write_its_records_and_nothing_else(users: StoreUsers, store: StoreKeys) -> None:
    writer = RedisStore(StoreSettings(users.url("last"), store.prefix))
    writer.check()
    record = json.dumps({"broker_message_id": "m-1"})
    assert [answer.verdict for answer in writer.insert([("m-1", record)])] == [Verdict.COMPLETED]
    writer.mark_written(["m-1"])
    assert store.records() == {"m-1": {"broker_message_id": "m-1"}}
    client = redis.Redis.from_url(users.url("last"))
    assert refused(client.flushall)
    assert refused(lambda: client.set("elsewhere:key", "x"))
    assert refused(lambda: client.delete(f"{store.prefix}m-1"))
    assert refused(lambda: client.config_get("*"))
    assert refused(lambda: client.keys("*"))
    assert refused(
        lambda: client.eval("return redis.call('DEL', KEYS[1])", 1, f"{store.prefix}m-1")
    )
    assert store.records() == {"m-1": {"broker_message_id": "m-1"}}


def test_the_reports_user_may_only_read(users: StoreUsers, store: StoreKeys) -> None:
    RedisStore(StoreSettings(users.url("last"), store.prefix)).insert([("m-2", '{"a": 1}')])
    reading = StoreSettings(users.url("monitor"), store.prefix)
    assert dict(stored_records(reading)) == {"m-2": '{"a": 1}'}
    assert unwritten_lines(reading) == 1
    client = redis.Redis.from_url(users.url("monitor"))
    assert refused(lambda: client.set(f"{store.prefix}m-3", "x"))
    assert refused(lambda: client.delete(f"{store.prefix}m-2"))
    assert refused(lambda: client.eval("return 1", 0))
    assert refused(client.flushall)
    assert refused(lambda: client.get("elsewhere:key"))
