"""Calling the next stage: a pooled connection, a deadline, retries with jittered back-off.

A message carries a deadline from `first` (HTTP_TIMEOUT after it was created) through every
hop, in the `Request-Deadline` header: each attempt may wait only for what is left of it, and a
stage never works on a message whose caller has stopped waiting. Between attempts the client
sleeps a random time up to an exponentially growing cap ("full jitter"), so that callers that
failed together do not come back together. urllib3's `Retry` is not used: it counts attempts
and gives each the same timeout, where a deadline gives each attempt what is left.

What is retried, and what is not (retry at one layer only, or a three-stage chain multiplies
every attempt by the retries of each layer above it):
- no connection, a connection broken before the answer: the next stage may be restarting; the
  idempotency key makes a repeat safe even if the first attempt did its work;
- 409: the same message is in progress there (an earlier attempt of ours): ask again shortly;
- any other error answer is final: 400 (the message is bad), 502 (a stage further on failed,
  and the stage in between has retried already), 504 (the deadline passed over there).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from urllib3 import exceptions

from common.messages import Message
from http_pipeline import wire

RETRY_STATUSES = frozenset({409})
CONNECT_TIMEOUT = 2.0  # seconds: a stage on this network accepts at once, or is not there
BACKOFF_FIRST = 0.05  # seconds: the cap of the first pause; it doubles after every attempt
BACKOFF_MAX = 2.0  # seconds: the largest cap, so that a stage that came back is found soon


@dataclass(frozen=True)
class Outcome:
    ok: bool
    attempts: int
    reason: str = ""  # why it failed, in one line
    status: int | None = None  # the last answer's status, if there was an answer


def backoff(attempt: int, uniform: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to pause after failed attempt number `attempt` (1, 2, ...): full jitter."""
    return uniform(0.0, min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1)))


def describe(error: exceptions.HTTPError) -> str:
    if isinstance(error, exceptions.NewConnectionError):
        return f"cannot connect: {error.__cause__ or error}"
    if isinstance(error, exceptions.TimeoutError):
        return "no answer before the deadline"
    if isinstance(error, exceptions.ProtocolError):
        return f"connection broken before the answer: {error.args[-1]}"
    return f"{type(error).__name__}: {error}"


def error_text(body: bytes) -> str:
    """The `error` of a JSON error answer, or the start of whatever came back."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace")


class NextHop:
    """POSTs messages to one URL over at most `connections` pooled keep-alive connections."""

    def __init__(self, url: str, connections: int) -> None:
        self.url = url
        self._path = urllib3.util.parse_url(url).request_uri
        # block=True: a thread waits for a free connection rather than opening an extra one.
        self._pool = urllib3.connection_from_url(url, maxsize=connections, block=True)

    def deliver(self, message: Message, deadline: float) -> Outcome:
        body = wire.encode(message)
        headers = wire.headers(message, deadline)
        attempt, reason, status = 0, "", None
        while (remaining := deadline - time.time()) > 0:
            attempt += 1
            try:
                response = self._pool.urlopen(
                    "POST",
                    self._path,
                    body=body,
                    headers=headers,
                    retries=False,
                    timeout=urllib3.Timeout(
                        connect=min(CONNECT_TIMEOUT, remaining), read=remaining
                    ),
                    pool_timeout=remaining,
                )
            except exceptions.HTTPError as error:
                reason, status = describe(error), None
            else:
                if 200 <= response.status < 300:
                    return Outcome(True, attempt)
                reason, status = f"{response.status} {error_text(response.data)}", response.status
                if response.status not in RETRY_STATUSES:
                    return Outcome(False, attempt, reason, status)
            time.sleep(max(0.0, min(backoff(attempt), deadline - time.time())))
        if not attempt:
            return Outcome(False, 0, "the deadline passed before the first attempt")
        return Outcome(
            False, attempt, f"deadline passed after {attempt} attempts: {reason}", status
        )

    def close(self) -> None:
        self._pool.close()
