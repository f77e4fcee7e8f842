"""The message format, and the validation every consumer applies before using a message.

On the wire a message is the seed's JSON array, e.g. `["seq-7","service_a"]`, published
persistent with AMQP properties:
- `message_id`: the `broker_message_id`, a UUID set by `first`, kept by every stage;
- `headers["data"]`: a JSON object of timestamps (float seconds since the epoch):
  `created_at`, one per stage that handled it, and `updated_at`. It is JSON text rather than an
  AMQP table because pika's table encoder has no floating-point type.
- `headers["run_id"]`: which run of `first` published it, so that a report can tell two runs
  apart when their sequence numbers repeat. Optional: a message without one is still valid.
- `headers["key"]`: what the message is about (an account, an order, a device): messages of one
  key keep their order through the pipeline when ORDERING=keyed. Optional.

Anything a consumer cannot use raises `InvalidMessage` with a one-line reason; the consumer
dead-letters the message with that reason and carries on.

JSON goes through orjson: every stage decodes and encodes both on every message, and the
standard library's encoder takes 3 µs for the three timestamps of `data` where orjson takes
0.15 (its output is the same compact JSON). It is stricter, too: it refuses NaN and numbers out
of a double's range as not JSON, which the checks below would refuse anyway.
"""

from __future__ import annotations

import dataclasses
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeGuard

import orjson
import pika

CONTENT_TYPE = "application/json"
MAX_HISTORY = 16
MAX_TEXT = 128
MAX_DATA_CHARS = 4096
_SEQ = re.compile(r"seq-[0-9]{1,18}")


class InvalidMessage(ValueError):
    """The message cannot be processed; `str(error)` is the reason the dead-letter queue gets."""


@dataclass(frozen=True)
class Message:
    history: tuple[str, ...]
    message_id: str
    data: Mapping[str, float]
    run_id: str | None = None
    key: str | None = None

    @classmethod
    def first(
        cls, seq: int, now: float, run_id: str | None = None, key: str | None = None
    ) -> Message:
        """A new message `["seq-N"]` as `first` publishes it."""
        return cls((f"seq-{seq}",), str(uuid.uuid4()), {"created_at": now}, run_id, key)

    @property
    def partition_key(self) -> str:
        """What picks its partition: its key, or (no key, no order to keep) its id."""
        return self.key if self.key is not None else self.message_id

    @property
    def seq(self) -> int:
        return int(self.history[0][4:])

    def require_stages(self, stages: tuple[str, ...], queue: str) -> None:
        """Raise InvalidMessage unless the message went through exactly `stages`, in order: a
        message that skipped a stage, or comes round again, is not `queue`'s to take."""
        if self.history[1:] != stages:
            expected = (
                f"through {', '.join(stages)}" if stages else "straight from first, no stage yet"
            )
            raise InvalidMessage(
                f"history {list(self.history)[:MAX_HISTORY]} is out of order for {queue}: it "
                f"takes messages that went {expected}"
            )

    def stamped(self, stage: str, now: float) -> Message:
        """The message after `stage` handled it: its name appended, its time recorded."""
        return dataclasses.replace(
            self, history=(*self.history, stage), data={**self.data, stage: now, "updated_at": now}
        )

    def encode(self) -> tuple[bytes, pika.BasicProperties]:
        body = orjson.dumps(self.history)
        properties = pika.BasicProperties(
            content_type=CONTENT_TYPE,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=self.message_id,
            headers=self.headers(),
        )
        return body, properties

    def headers(self) -> dict[str, str]:
        headers = {"data": orjson.dumps(self.data).decode()}
        if self.run_id is not None:
            headers["run_id"] = self.run_id
        if self.key is not None:
            headers["key"] = self.key
        return headers

    @classmethod
    def decode(cls, body: bytes, properties: pika.BasicProperties, max_body_bytes: int) -> Message:
        headers = properties.headers or {}
        return cls(
            _history(body, max_body_bytes),
            _message_id(properties.message_id),
            _data(headers.get("data")),
            _optional_text(headers.get("run_id"), "header 'run_id'"),
            _optional_text(headers.get("key"), "header 'key'"),
        )


def _json(raw: bytes | str, what: str) -> object:
    try:  # decoded first, so that a bad byte is named where it is
        return orjson.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as error:
        raise InvalidMessage(f"{what} is not UTF-8: {error.reason} at byte {error.start}") from None
    except orjson.JSONDecodeError as error:  # nesting past orjson's depth limit included
        raise InvalidMessage(f"{what} is not JSON: {error}") from None


def _history(body: bytes, max_body_bytes: int) -> tuple[str, ...]:
    if len(body) > max_body_bytes:
        raise InvalidMessage(f"body is {len(body)} bytes, over the limit of {max_body_bytes}")
    history = _json(body, "body")
    if not isinstance(history, list):
        raise InvalidMessage(f"body must be a JSON array, got {type(history).__name__}")
    if not 1 <= len(history) <= MAX_HISTORY:
        raise InvalidMessage(f"body must hold 1 to {MAX_HISTORY} items, got {len(history)}")
    for item in history:
        if not isinstance(item, str) or not 0 < len(item) <= MAX_TEXT:
            raise InvalidMessage(f"body items must be strings of 1 to {MAX_TEXT} characters")
    if not _SEQ.fullmatch(history[0]):
        raise InvalidMessage(f"body must start with 'seq-<n>', got {history[0][:40]!r}")
    return tuple(history)


def _is_short_text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT and value.isprintable()


def _message_id(value: object) -> str:
    if not _is_short_text(value):
        raise InvalidMessage("message_id (broker_message_id) is missing or not printable text")
    return value


def _optional_text(value: object, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise InvalidMessage(f"{what} is not UTF-8") from None
    if not _is_short_text(value):
        raise InvalidMessage(f"{what} is not printable text of 1 to {MAX_TEXT} characters")
    return value


def _data(header: object) -> dict[str, float]:
    if not isinstance(header, str | bytes) or len(header) > MAX_DATA_CHARS:
        raise InvalidMessage("header 'data' is missing or is not JSON text of a sane size")
    value = _json(header, "header 'data'")
    if not isinstance(value, dict) or len(value) > MAX_HISTORY + 4:
        raise InvalidMessage("header 'data' is not a JSON object of timestamps")
    data: dict[str, float] = {}
    for key, stamp in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_TEXT:
            raise InvalidMessage("header 'data' has a key that is not short text")
        if isinstance(stamp, bool) or not isinstance(stamp, int | float):
            raise InvalidMessage(f"header 'data' field {key[:40]!r} is not a finite number")
        try:
            value = float(stamp)
        except OverflowError:  # an integer too large for a float
            value = math.inf
        if not math.isfinite(value):
            raise InvalidMessage(f"header 'data' field {key[:40]!r} is not a finite number")
        data[key] = value
    if "created_at" not in data:
        raise InvalidMessage("header 'data' has no 'created_at'")
    return data
