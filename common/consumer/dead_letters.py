"""The copy that goes to the dead-letter queue: the original, plus why, where and when it failed.

A dead letter is the original body with the original's properties, plus `x-error-*` headers.
The original headers come along only while they are small: a copy must always fit in the
broker's frame, or the dead-lettering itself would fail on every redelivery. The copy's
`user_id` is the dead-lettering stage's (the broker takes no other from it); the original
sender's goes in `x-original-user-id` ("" if it had none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pika

from common.consumer.outcomes import Delivery
from common.frames import undecodable_reason
from common.publisher import ConfirmedPublisher

log = logging.getLogger("common.consumer")

# Bounds on a dead letter's properties: the reason, where and when it failed, and the original
# headers while they are small come to under 4 KiB, far inside the broker's frame (RabbitMQ's
# default frame_max is 128 KiB), so that the copy can always be published.
MAX_CARRIED_HEADERS = 2048  # bytes of the original's headers carried over; more are dropped
MAX_REASON = 1000  # bytes (UTF-8) of x-error-reason, cut at a character


@dataclass(frozen=True)
class DeadLetterCopy:
    """Why `delivery`, taken from `queue`, is given up."""

    delivery: Delivery
    reason: str
    queue: str


def send_dead_letter(
    publisher: ConfirmedPublisher,
    dead_letter_queue: str,
    copy: DeadLetterCopy,
    on_confirmed: Callable[[], None],
) -> None:
    """Log the dead-lettering (one line) and publish the copy; `on_confirmed` once it is safe."""
    delivery = copy.delivery
    log.warning(
        "dead-lettered",
        extra={
            "queue": copy.queue,
            "reason": copy.reason,
            "message_id": printable(delivery.properties.message_id),
        },
    )
    properties = dead_letter_properties(delivery, copy.reason, copy.queue)
    publisher.publish(dead_letter_queue, delivery.body, properties, on_confirmed)


def dead_letter_properties(delivery: Delivery, reason: str, queue: str) -> pika.BasicProperties:
    """The original's properties, plus why and where it failed, in `x-error-*` headers."""
    error: dict[str, object] = {
        "x-error-reason": reason.encode()[:MAX_REASON].decode(errors="ignore"),
        "x-error-queue": queue,
        "x-error-at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    # Always set, so that a header of that name the sender wrote itself never passes for it.
    error["x-original-user-id"] = printable(delivery.properties.user_id) or ""
    properties = pika.BasicProperties(
        content_type=printable(delivery.properties.content_type),
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=printable(delivery.properties.message_id),
        headers=error,
    )
    original = delivery.properties.headers
    if isinstance(original, dict) and original and undecodable_reason(original) is None:
        size = _encoded_size(original)
        if size is None:
            # pika decodes some header types it cannot encode again (floats): drop them rather
            # than fail to dead-letter.
            error["x-error-headers-dropped"] = "the original headers cannot be re-encoded"
        elif size > MAX_CARRIED_HEADERS:
            error["x-error-headers-dropped"] = f"the original headers ({size} bytes)"
        else:
            properties.headers = {**original, **error}
    return properties


def printable(value: object) -> str | None:
    """A property fit for a log line or a copy: a printable string, else nothing."""
    return value if isinstance(value, str) and value.isprintable() else None


def _encoded_size(headers: dict) -> int | None:
    """Bytes the headers take on the wire, or None when pika cannot encode them."""
    try:
        return len(b"".join(pika.BasicProperties(headers=headers).encode()))
    except Exception:
        return None
