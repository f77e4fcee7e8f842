"""Message headers pika cannot decode become a marker, instead of a dead connection.

pika decodes a delivery's properties while it reads the frame, before any callback of ours
runs. Some header tables that RabbitMQ accepts and passes on make that decoding raise: a field of
type timestamp past the year 9999 (`datetime` cannot hold it), a field type pika does not know,
tables nested deeper than Python's recursion limit. pika then aborts the whole connection; the
broker redelivers the message to the next connection, which dies the same way, until the
delivery limit dead-letters it with no reason given, and the good messages delivered behind it
go down with it.

`install()` wraps `BasicProperties.decode` once: when the original raises, the properties are
decoded again without the headers table (AMQP gives it a length, so it can be skipped whole), and
`headers` is set to `{UNDECODABLE: why}`. The consumer dead-letters such a message with that
reason, and the messages around it go on.

It changes pika for the whole process, so nothing installs it on import: `common.main.run()`
does, once, as each process starts. Code that consumes in a process of its own making (a test,
a tool) calls `install()` itself before it connects.
"""

from __future__ import annotations

import struct
from typing import Any

from pika import spec

UNDECODABLE = "x-undecodable-headers"  # the only header of a message whose headers pika refused
MAX_REASON = 200  # characters of pika's error kept in the reason: enough to name the field


def install() -> None:
    """Make pika's header decoding tolerant; idempotent."""
    original = spec.BasicProperties.decode
    if getattr(original, "tolerant", False):
        return

    def decode(self: spec.BasicProperties, encoded: bytes, offset: int = 0) -> Any:
        try:
            return original(self, encoded, offset)
        except Exception as error:  # anything the headers table made pika raise
            without_headers = _without_headers(encoded, offset)
            if without_headers is None:
                raise  # not the headers: the frame itself is broken, pika is right to give up
            reason = f"{type(error).__name__}: {error}"[:MAX_REASON]
        original(self, without_headers, 0)
        self.headers = {UNDECODABLE: f"pika cannot decode the message's headers ({reason})"}
        return self

    decode.tolerant = True  # type: ignore[attr-defined]
    spec.BasicProperties.decode = decode


def undecodable_reason(headers: object) -> str | None:
    """Why pika could not decode this delivery's headers, if it could not."""
    if isinstance(headers, dict) and set(headers) == {UNDECODABLE}:
        reason = headers[UNDECODABLE]
        return reason if isinstance(reason, str) else "undecodable"
    return None


def _without_headers(encoded: bytes, offset: int) -> bytes | None:
    """The encoded properties with the headers table cut out (and its flag cleared), or None
    when there is no headers table to blame."""
    try:
        (flags,) = struct.unpack_from(">H", encoded, offset)
        if flags & 1 or not flags & spec.BasicProperties.FLAG_HEADERS:
            return None  # a second flag word (never sent by RabbitMQ), or no headers at all
        position = offset + 2
        for flag in (
            spec.BasicProperties.FLAG_CONTENT_TYPE,
            spec.BasicProperties.FLAG_CONTENT_ENCODING,
        ):
            if flags & flag:  # a short string: one length byte, then the bytes
                position += 1 + encoded[position]
        (length,) = struct.unpack_from(">I", encoded, position)
        end = position + 4 + length
        if end > len(encoded):
            return None
    except (struct.error, IndexError):
        return None
    cleared = struct.pack(">H", flags & ~spec.BasicProperties.FLAG_HEADERS)
    return cleared + encoded[offset + 2 : position] + encoded[end:]
