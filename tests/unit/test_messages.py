"""The message format: building, stamping, encoding, and rejecting everything malformed."""

from __future__ import annotations

import json
import threading

import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.messages import (
    CONTENT_TYPE,
    MAX_DATA_CHARS,
    MAX_HISTORY,
    MAX_TEXT,
    InvalidMessage,
    Message,
)

LIMIT = 4096
GOOD_BODY = b'["seq-1","service_a"]'
GOOD_DATA = '{"created_at":1700000000.5,"service_a":1700000001.25,"updated_at":1700000001.25}'


def props(message_id: object = "id-1", data: object = GOOD_DATA, **headers: object):
    all_headers = {**({} if data is None else {"data": data}), **headers}
    return pika.BasicProperties(message_id=message_id, headers=all_headers or None)


def reason(body: bytes = GOOD_BODY, properties=None, limit: int = LIMIT) -> str:
    with pytest.raises(InvalidMessage) as caught:
        Message.decode(body, props() if properties is None else properties, limit)
    text = str(caught.value)
    assert text
    assert "\n" not in text
    return text


# -- building and round trip -----------------------------------------------------------------


def test_first() -> None:
    message = Message.first(7, 1700000000.5)
    assert message.history == ("seq-7",)
    assert message.seq == 7
    assert message.data == {"created_at": 1700000000.5}
    assert len(message.message_id) == 36
    assert Message.first(7, 1.0).message_id != message.message_id


def test_stamped_appends_the_stage_and_its_time() -> None:
    message = Message.first(3, 100.0)
    a = message.stamped("service_a", 101.0)
    b = a.stamped("service_b", 102.5)
    assert b.history == ("seq-3", "service_a", "service_b")
    assert b.message_id == message.message_id
    assert b.data == {
        "created_at": 100.0,
        "service_a": 101.0,
        "service_b": 102.5,
        "updated_at": 102.5,
    }
    assert message.history == ("seq-3",)  # the original is untouched
    assert message.data == {"created_at": 100.0}
    assert b.seq == 3


def test_encode() -> None:
    message = Message.first(12, 1700000000.25).stamped("service_a", 1700000001.0)
    body, properties = message.encode()
    assert body == b'["seq-12","service_a"]'
    assert properties.content_type == CONTENT_TYPE
    assert properties.delivery_mode == pika.DeliveryMode.Persistent.value
    assert properties.message_id == message.message_id
    assert json.loads(properties.headers["data"]) == {
        "created_at": 1700000000.25,
        "service_a": 1700000001.0,
        "updated_at": 1700000001.0,
    }
    properties.encode()  # pika can put the headers on the wire


def test_round_trip() -> None:
    message = Message.first(99, 1700000000.123456).stamped("service_a", 1700000000.2)
    body, properties = message.encode()
    assert Message.decode(body, properties, LIMIT) == message


def test_round_trip_through_the_wire_encoding() -> None:
    """Through pika's own encode/decode of the properties, as the broker delivers them."""
    message = Message.first(5, 1700000000.5).stamped("service_b", 1700000002.75)
    body, properties = message.encode()
    wire = pika.BasicProperties()
    wire.decode(b"".join(properties.encode()))
    assert Message.decode(body, wire, LIMIT) == message


def test_the_run_id_travels_with_the_message() -> None:
    message = Message.first(3, 1700000000.0, "20261127-101500-3f2a").stamped("service_a", 2.0)
    body, properties = message.encode()
    assert properties.headers["run_id"] == "20261127-101500-3f2a"
    wire = pika.BasicProperties()
    wire.decode(b"".join(properties.encode()))
    assert Message.decode(body, wire, LIMIT).run_id == "20261127-101500-3f2a"
    assert "run_id" not in Message.first(3, 1.0).encode()[1].headers  # optional


@pytest.mark.parametrize(
    "run_id", ["", "x" * (MAX_TEXT + 1), "new\nline", 7, b"\xff", {"a": 1}], ids=repr
)
def test_decode_rejects_a_bad_run_id(run_id: object) -> None:
    with pytest.raises(InvalidMessage, match="header 'run_id' is not"):
        Message.decode(b'["seq-1"]', props(run_id=run_id), LIMIT)


def test_decode_accepts_data_as_bytes_and_integers() -> None:
    message = Message.decode(b'["seq-0"]', props(data=b'{"created_at": 5}'), LIMIT)
    assert message.data == {"created_at": 5.0}
    assert isinstance(message.data["created_at"], float)
    assert message.seq == 0


def test_decode_accepts_the_limits() -> None:
    history = ["seq-" + "9" * 18, *["s" * MAX_TEXT] * (MAX_HISTORY - 1)]
    body = json.dumps(history).encode()
    message = Message.decode(body, props(message_id="m" * MAX_TEXT), len(body))
    assert message.history == tuple(history)
    assert message.seq == 10**18 - 1
    data = {"created_at": 1.0, **{f"k{n}": float(n) for n in range(MAX_HISTORY + 3)}}
    assert Message.decode(b'["seq-1"]', props(data=json.dumps(data)), LIMIT).data == data


@given(
    seq=st.integers(min_value=0, max_value=10**18 - 1),
    created=st.floats(min_value=0, max_value=4e9),
    stages=st.lists(
        st.tuples(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=20),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        max_size=MAX_HISTORY - 1,
        unique_by=lambda stage: stage[0],
    ),
)
def test_round_trip_property(seq: int, created: float, stages: list[tuple[str, float]]) -> None:
    message = Message.first(seq, created)
    for stage, now in stages:
        message = message.stamped(stage, now)
    body, properties = message.encode()
    assert Message.decode(body, properties, 1 << 20) == message


# -- bad bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'["seq-1\xff"]', "body is not UTF-8: invalid start byte at byte 7"),
        (b"\xc3\x28", "body is not UTF-8"),
        (b"hello", "body is not JSON: unexpected character, expected a JSON value"),
        (b'["seq-1",]', "body is not JSON"),
        (b'["seq-1"', "body is not JSON"),
        (b"", "body is not JSON"),
        (b"   ", "body is not JSON"),
        (b'\xef\xbb\xbf["seq-1"]', "body is not JSON"),
        (b'{"history": ["seq-1"]}', "body must be a JSON array, got dict"),
        (b'"seq-1"', "body must be a JSON array, got str"),
        (b"1", "body must be a JSON array, got int"),
        (b"1.5", "body must be a JSON array, got float"),
        (b"null", "body must be a JSON array, got NoneType"),
        (b"true", "body must be a JSON array, got bool"),
        (b"false", "body must be a JSON array, got bool"),
        (b"[]", f"body must hold 1 to {MAX_HISTORY} items, got 0"),
        (b'["seq-1", 2]', f"body items must be strings of 1 to {MAX_TEXT} characters"),
        (b"[1]", "body items must be strings"),
        (b'["seq-1", null]', "body items must be strings"),
        (b'["seq-1", ["a"]]', "body items must be strings"),
        (b'["seq-1", {}]', "body items must be strings"),
        (b'["seq-1", ""]', "body items must be strings"),
        (b'[""]', "body items must be strings"),
        (b'["first-1"]', "body must start with 'seq-<n>', got 'first-1'"),
        (b'["service_a", "seq-1"]', "body must start with 'seq-<n>', got 'service_a'"),
        (b'["seq-"]', "body must start with 'seq-<n>'"),
        (b'["seq--1"]', "body must start with 'seq-<n>'"),
        (b'["seq-1x"]', "body must start with 'seq-<n>'"),
        (b'["SEQ-1"]', "body must start with 'seq-<n>'"),
        (b'["seq-1\\n"]', "body must start with 'seq-<n>'"),
        (b'["seq-' + b"1" * 19 + b'"]', "body must start with 'seq-<n>'"),
        (b'["seq-\\u0661"]', "body must start with 'seq-<n>'"),  # an Arabic-Indic digit
        # Not JSON numbers, or out of a double's range: not JSON to orjson.
        (b"[1e999]", "body is not JSON: number is infinity when parsed as double"),
        (b"[NaN]", "body is not JSON"),
        (b"[-Infinity]", "body is not JSON"),
    ],
)
def test_decode_rejects_bad_bodies(body: bytes, expected: str) -> None:
    assert expected in reason(body)


def test_decode_shortens_a_long_first_item_in_the_reason() -> None:
    text = reason(json.dumps(["x" * MAX_TEXT]).encode())
    assert text == f"body must start with 'seq-<n>', got {'x' * 40!r}"


def test_decode_rejects_too_many_items() -> None:
    body = json.dumps(["seq-1", *["s"] * MAX_HISTORY]).encode()
    assert reason(body) == f"body must hold 1 to {MAX_HISTORY} items, got {MAX_HISTORY + 1}"


def test_decode_rejects_over_long_items() -> None:
    body = json.dumps(["seq-1", "s" * (MAX_TEXT + 1)]).encode()
    assert reason(body) == f"body items must be strings of 1 to {MAX_TEXT} characters"


def test_decode_rejects_a_body_over_the_limit() -> None:
    body = json.dumps(["seq-1", "s" * 100]).encode()
    assert reason(body, limit=len(body) - 1) == (
        f"body is {len(body)} bytes, over the limit of {len(body) - 1}"
    )
    assert Message.decode(body, props(), len(body)).history[1] == "s" * 100
    big = b'["seq-1","' + b"x" * 5000 + b'"]'
    assert reason(big) == f"body is {len(big)} bytes, over the limit of {LIMIT}"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000,
        b'["seq-1",' * 50_000,
        b"[" * 1_000_000,
    ],
)
def test_decode_rejects_deep_nesting_without_recursion_error(body: bytes) -> None:
    text = reason(body, limit=len(body))
    assert text.startswith("body is not JSON: "), text
    assert "depth limit exceeded" in text or "unexpected end of data" in text, text


def test_decode_rejects_deep_nesting_in_a_worker_thread() -> None:
    """The consumer decodes in worker threads, whose stacks may be smaller."""
    outcome: list[BaseException | Message] = []

    def decode() -> None:
        try:
            outcome.append(Message.decode(b"[" * 100_000, props(), 1 << 20))
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=decode)
    thread.start()
    thread.join(30)
    [error] = outcome
    assert isinstance(error, InvalidMessage), repr(error)
    assert "depth limit exceeded" in str(error)


def test_decode_rejects_huge_numbers_in_the_body() -> None:
    body = b"[" + b"9" * 10_000 + b"]"
    assert "body is not JSON" in reason(body, limit=len(body))
    body = b"[" + b"9" * 400 + b"]"
    assert "body is not JSON: number is infinity" in reason(body)


# -- bad properties --------------------------------------------------------------------------

MISSING_ID = "message_id (broker_message_id) is missing or not printable text"
NO_DATA = "header 'data' is missing or is not JSON text of a sane size"
NOT_OBJECT = "header 'data' is not a JSON object of timestamps"


@pytest.mark.parametrize("message_id", [None, "", "a\nb", "tab\t", "m" * (MAX_TEXT + 1)])
def test_decode_rejects_a_missing_or_bad_message_id(message_id: object) -> None:
    assert reason(properties=props(message_id=message_id)) == MISSING_ID


def test_decode_rejects_missing_headers() -> None:
    assert reason(properties=pika.BasicProperties(message_id="id")) == NO_DATA
    assert reason(properties=props(data=None)) == NO_DATA
    assert reason(properties=props(data=None, other="x")) == NO_DATA


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (12, NO_DATA),
        (1.5, NO_DATA),
        (True, NO_DATA),
        ({"created_at": 1}, NO_DATA),  # an AMQP table, not JSON text
        (["created_at"], NO_DATA),
        ('{"created_at": 1, "pad": "' + "x" * MAX_DATA_CHARS + '"}', NO_DATA),
        ("not json", "header 'data' is not JSON: invalid literal"),
        ("", "header 'data' is not JSON"),
        ('{"created_at": 1', "header 'data' is not JSON"),
        (b'{"created_at": 1, "x\xff": 2}', "header 'data' is not UTF-8"),
        ("[" * (MAX_DATA_CHARS - 1), "header 'data' is not JSON: depth limit exceeded"),
        ("[1, 2]", NOT_OBJECT),
        ('"created_at"', NOT_OBJECT),
        ("1700000000", NOT_OBJECT),
        ("null", NOT_OBJECT),
        ("true", NOT_OBJECT),
        (
            json.dumps({f"k{n}": 1 for n in range(MAX_HISTORY + 5)}),
            NOT_OBJECT,
        ),
        ('{"created_at": 1, "": 2}', "header 'data' has a key that is not short text"),
        (
            json.dumps({"created_at": 1, "k" * (MAX_TEXT + 1): 2}),
            "header 'data' has a key that is not short text",
        ),
        ('{"created_at": "1700000000"}', "header 'data' field 'created_at' is not a finite number"),
        ('{"created_at": null}', "field 'created_at' is not a finite number"),
        ('{"created_at": true}', "field 'created_at' is not a finite number"),
        ('{"created_at": [1]}', "field 'created_at' is not a finite number"),
        ('{"created_at": {"t": 1}}', "field 'created_at' is not a finite number"),
        ('{"created_at": NaN}', "header 'data' is not JSON"),
        ('{"created_at": Infinity}', "header 'data' is not JSON"),
        ('{"created_at": -Infinity}', "header 'data' is not JSON"),
        ('{"created_at": 1e999}', "header 'data' is not JSON: number is infinity"),
        ('{"created_at": 1, "updated_at": "soon"}', "field 'updated_at' is not a finite number"),
        ("{}", "header 'data' has no 'created_at'"),
        ('{"updated_at": 1700000000}', "header 'data' has no 'created_at'"),
        ('{"Created_At": 1700000000}', "header 'data' has no 'created_at'"),
        ('{"created_at": ' + "1" * 5000 + "}", NO_DATA),
    ],
)
def test_decode_rejects_bad_data_headers(data: object, expected: str) -> None:
    assert expected in reason(properties=props(data=data))


def test_decode_rejects_a_data_integer_too_large_for_a_float() -> None:
    assert "header 'data' is not JSON: number is infinity" in reason(
        properties=props(data='{"created_at": ' + "1" * 400 + "}")
    )


# -- property: decode returns a Message or raises InvalidMessage, nothing else ----------------


def decodes_or_rejects(body: bytes, properties: pika.BasicProperties, limit: int) -> None:
    try:
        message = Message.decode(body, properties, limit)
    except InvalidMessage as error:
        assert str(error)
        return
    assert isinstance(message, Message)
    assert 1 <= len(message.history) <= MAX_HISTORY
    assert message.history[0].startswith("seq-")
    assert "created_at" in message.data


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=5000), limit=st.integers(min_value=64, max_value=1 << 20))
def test_decode_of_arbitrary_bytes(body: bytes, limit: int) -> None:
    decodes_or_rejects(body, props(), limit)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["seq-1", "seq-12", "service_a", "created_at"]),
    lambda children: (
        st.lists(children, max_size=20)
        | st.dictionaries(st.text(max_size=10), children, max_size=22)
    ),
    max_leaves=40,
)


@settings(max_examples=300)
@given(value=JSON)
def test_decode_of_arbitrary_json_bodies(value: object) -> None:
    decodes_or_rejects(json.dumps(value).encode(), props(), LIMIT)


@settings(max_examples=300)
@given(
    data=JSON.map(json.dumps)
    | st.dictionaries(
        st.sampled_from(["created_at", "updated_at", "service_a", ""]),
        JSON,
        max_size=4,
    ).map(json.dumps)
    | st.text(max_size=200)
    | st.binary(max_size=200)
    | st.none()
    | st.integers(),
    message_id=st.none() | st.text(max_size=140),
)
def test_decode_of_arbitrary_properties(data: object, message_id: str | None) -> None:
    decodes_or_rejects(GOOD_BODY, props(message_id=message_id, data=data), LIMIT)
