"""`last`'s records in Redis: one string key per message, `<key prefix><broker_message_id>`.

Beside them, one sorted set named the key prefix itself (no record's key: an id is never
empty) holds the records whose line is not written yet, each scored with when it went in (or
was last claimed), by the server's clock so that every replica reads the same time.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common import tls
from common.retry import describe
from last.store import Answer, Later, StoreRefused, StoreUnavailable, Verdict
from last.store_settings import StoreSettings

# Seconds for the store to answer before a try counts as failed; one round trip carries at most
# MAX_BATCH small writes, which Redis answers in well under a millisecond each.
STORE_TIMEOUT = 5.0
# SET with both NX and GET came with Redis 7.0.
OLDEST_REDIS = (7, 0)
# Seconds a record may wait for its line before another `last` writes it: the `last` that
# stored it writes its lines and clears the marks within a round trip or two of the write, so
# this is far longer than that on a busy machine, and short enough that a killed `last`'s
# redeliveries are logged soon after they come back.
RECOVER_AFTER = 2.0
# One batch of records in one command: `SET key record NX GET` for each, which stores the record
# only if the key is not there and answers what was there. Answers, for each:
# {1}: stored, its line is ours to write (or the very same record was there: an earlier try of
#      ours whose reply was lost, the write went through, the connection broke before the
#      answer came back);
# {0}: there, and its line written: a duplicate;
# {2, record}: there, its line not written for RECOVER_AFTER: ours to write now (claimed: its
#      time starts again, so that no other `last` writes it meanwhile);
# {3, seconds}: there, its line not written yet, by someone who may be writing it right now.
# A script costs the client half the CPU of a pipeline of as many commands, and runs whole or
# not at all.
INSERT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local grace = tonumber(ARGV[1])
local answers = {}
for i = 2, #KEYS do
  local key, record = KEYS[i], ARGV[i]
  local found = redis.call('SET', key, record, 'NX', 'GET')
  local since = found and redis.call('ZSCORE', KEYS[1], key)
  if not found then
    redis.call('ZADD', KEYS[1], now, key)
    answers[i - 1] = {1}
  elseif not since then
    answers[i - 1] = {0}
  elseif found == record then
    answers[i - 1] = {1}
  elseif now - tonumber(since) >= grace then
    redis.call('ZADD', KEYS[1], now, key)
    answers[i - 1] = {2, found}
  else
    answers[i - 1] = {3, tostring(grace - (now - tonumber(since)))}
  end
end
return answers
"""


def unwritten_key(prefix: str) -> str:
    """The sorted set of the records whose line is not written yet."""
    return prefix


class RedisStore:
    def __init__(self, settings: StoreSettings, recover_after: float = RECOVER_AFTER) -> None:
        self._prefix = settings.key_prefix
        self._settings = settings
        self._where = settings.display_url
        self._recover_after = recover_after
        self._client = settings.client(
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
            raise failure(error, self._settings) from None
        found = tuple(int(part) for part in version.split(".")[:2])
        if found < OLDEST_REDIS:
            oldest = ".".join(map(str, OLDEST_REDIS))
            raise StoreRefused(
                f"the store at {self._where} runs Redis {version}; last needs Redis {oldest} or "
                "later (SET with NX and GET)"
            )

    def insert(self, batch: list[tuple[str, str]]) -> list[Answer | Later]:
        """Write each (id, record) unless its id is there, all in one round trip (see INSERT)."""
        keys = [unwritten_key(self._prefix), *(self._prefix + key for key, _ in batch)]
        try:
            found = self._insert(
                keys=keys, args=[self._recover_after, *(record for _, record in batch)]
            )
        except redis.RedisError as error:
            raise failure(error, self._settings) from None
        return [_answer(reply, record) for reply, (_, record) in zip(found, batch, strict=True)]

    def mark_written(self, keys: list[str]) -> None:
        """The lines of these ids are written: nobody need write them again."""
        try:
            self._client.zrem(unwritten_key(self._prefix), *(self._prefix + key for key in keys))
        except redis.RedisError as error:
            raise failure(error, self._settings) from None

    def close(self) -> None:
        self._client.close()


REDIS = tls.Protocol(ca_setting="STORE_CA_FILE", plain="redis://", tls="rediss://")


def failure(error: redis.RedisError, settings: StoreSettings) -> StoreRefused | StoreUnavailable:
    """What `error` from the store at `settings.url` means: StoreRefused for a TLS failure no
    retry mends (`common.tls.refusal`; a plain client whose connection broke may have dialled a
    TLS port), else StoreUnavailable (the store is down, or the network: trying again will do)."""
    url = urlsplit(settings.url)
    reason = None
    if isinstance(error, redis.ConnectionError):
        secure = url.scheme == "rediss"
        host, port = url.hostname or "", url.port or 6379
        reason = tls.refusal(error, host, port, REDIS, tls=secure, cut=not secure)
    if reason:
        return StoreRefused(f"cannot connect to the store at {settings.display_url}: {reason}")
    return StoreUnavailable(describe(error))


def _answer(reply: list, record: str) -> Answer | Later:
    code = int(reply[0])
    if code == 3:
        return Later(float(reply[1]))
    if code == 2:
        return Answer(Verdict.RECOVERED, reply[1])
    return Answer(Verdict.COMPLETED if code == 1 else Verdict.DUPLICATE, record)
