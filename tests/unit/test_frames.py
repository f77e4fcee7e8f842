"""Header tables pika cannot decode: the properties decode without them, and say why."""

from __future__ import annotations

import struct

import pika
import pytest
from pika import frame, spec

from common import frames

frames.install()


def table(*fields: bytes) -> bytes:
    """An AMQP field table from encoded fields (short-string name, type, value)."""
    body = b"".join(fields)
    return struct.pack(">I", len(body)) + body


def field(name: str, kind: bytes, value: bytes) -> bytes:
    return bytes([len(name)]) + name.encode() + kind + value


def properties_with(headers_table: bytes) -> bytes:
    """Encoded BasicProperties: content type, the given headers table, persistent, an id."""
    flags = (
        spec.BasicProperties.FLAG_CONTENT_TYPE
        | spec.BasicProperties.FLAG_HEADERS
        | spec.BasicProperties.FLAG_DELIVERY_MODE
        | spec.BasicProperties.FLAG_MESSAGE_ID
    )
    content_type = b"application/json"
    return (
        struct.pack(">H", flags)
        + bytes([len(content_type)])
        + content_type
        + headers_table
        + bytes([2])
        + bytes([len(b"id-1")])
        + b"id-1"
    )


def nested(depth: int) -> bytes:
    inner = table()
    for _ in range(depth):
        inner = table(field("n", b"F", inner))
    return inner


HOSTILE = {
    "timestamp past 9999": table(field("when", b"T", struct.pack(">Q", 2**40))),
    "unknown field type": table(field("what", b"Z", b"")),
    "nested past the recursion limit": nested(5000),
}


@pytest.mark.parametrize("headers_table", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_headers_become_a_reason(headers_table: bytes) -> None:
    decoded = pika.BasicProperties().decode(properties_with(headers_table))
    reason = frames.undecodable_reason(decoded.headers)
    assert reason is not None and reason.startswith("pika cannot decode the message's headers (")
    # Everything but the headers survives: the id and type a dead letter needs.
    assert decoded.message_id == "id-1"
    assert decoded.content_type == "application/json"
    assert decoded.delivery_mode == 2


def test_the_reason_names_the_error() -> None:
    decoded = pika.BasicProperties().decode(properties_with(HOSTILE["timestamp past 9999"]))
    assert "ValueError" in decoded.headers[frames.UNDECODABLE]
    assert "year" in decoded.headers[frames.UNDECODABLE]


def test_good_headers_decode_as_before() -> None:
    original = pika.BasicProperties(
        content_type="application/json", headers={"data": "{}", "n": 7}, message_id="id-1"
    )
    decoded = pika.BasicProperties().decode(b"".join(original.encode()))
    assert decoded.headers == {"data": "{}", "n": 7}
    assert frames.undecodable_reason(decoded.headers) is None


def test_a_whole_header_frame_decodes() -> None:
    """As pika reads it off the wire: the frame decoder no longer raises."""
    payload = struct.pack(">HHQ", spec.Basic.INDEX, 0, 9)  # class, weight, body size
    payload += properties_with(HOSTILE["timestamp past 9999"])
    raw = struct.pack(">BHI", pika.spec.FRAME_HEADER, 1, len(payload)) + payload
    raw += bytes([pika.spec.FRAME_END])
    consumed, decoded = frame.decode_frame(raw)
    assert consumed == len(raw)
    assert frames.undecodable_reason(decoded.properties.headers) is not None


def test_a_broken_frame_still_raises() -> None:
    """Only a headers table is forgiven: properties cut short are pika's to refuse."""
    with pytest.raises(struct.error):
        pika.BasicProperties().decode(struct.pack(">H", spec.BasicProperties.FLAG_CONTENT_TYPE))


def test_install_is_idempotent() -> None:
    decode = spec.BasicProperties.decode
    frames.install()
    assert spec.BasicProperties.decode is decode
