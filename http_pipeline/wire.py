"""A message as an HTTP request: the broker pipeline's `Message`, its fields in a JSON body.

    POST /messages
    Content-Type: application/json
    Idempotency-Key: 6f1c...            the message id: a repeated call is recognised
    Request-Deadline: 1795725244.35     when the caller stops waiting (seconds since the epoch)

    {"history": ["seq-7", "service_a"], "message_id": "6f1c...", "run_id": "20261127-...",
     "data": {"created_at": 1795725214.35, "service_a": 1795725215.45, "updated_at": ...}}

A body is checked by the broker pipeline's own `Message.decode`, so both pipelines refuse the
same messages with the same reasons (in them, "body" is the history and "header 'data'" the
timestamps, as on the broker's wire).
"""

from __future__ import annotations

import json
import math

import pika

from common.messages import CONTENT_TYPE, InvalidMessage, Message

IDEMPOTENCY_KEY = "Idempotency-Key"
DEADLINE = "Request-Deadline"
# A request body at most: a history of 16 names of 128 characters and its timestamps fit easily.
MAX_REQUEST_BYTES = 16 * 1024
FIELDS = ("history", "message_id", "data")


def encode(message: Message) -> bytes:
    fields = {
        "history": list(message.history),
        "message_id": message.message_id,
        "run_id": message.run_id,
        "key": message.key,
        "data": dict(message.data),
    }
    return json.dumps(fields, separators=(",", ":")).encode()


def headers(message: Message, deadline: float) -> dict[str, str]:
    return {
        "Content-Type": CONTENT_TYPE,
        IDEMPOTENCY_KEY: message.message_id,
        DEADLINE: f"{deadline:.6f}",
    }


def decode(body: bytes) -> Message:
    """The message in a request body; `InvalidMessage` with a one-line reason if it is unusable."""
    if len(body) > MAX_REQUEST_BYTES:
        raise InvalidMessage(f"request body is {len(body)} bytes, over {MAX_REQUEST_BYTES}")
    try:
        fields = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidMessage("request body is not JSON") from None
    if not isinstance(fields, dict) or not all(name in fields for name in FIELDS):
        raise InvalidMessage(f"request body must be a JSON object with {', '.join(FIELDS)}")
    properties = pika.BasicProperties(
        message_id=fields["message_id"],
        headers={
            "data": json.dumps(fields["data"]),
            "run_id": fields.get("run_id"),
            "key": fields.get("key"),
        },
    )
    return Message.decode(json.dumps(fields["history"]).encode(), properties, MAX_REQUEST_BYTES)


def deadline(value: str | None, default: float) -> float:
    """The caller's deadline from its header, or `default` when it sent none; never later than
    `default`, so that no caller can hold a stage's thread longer than the stage allows."""
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise InvalidMessage(
            f"header {DEADLINE} must be seconds since the epoch, got {value[:40]!r}"
        )
    return min(seconds, default)
