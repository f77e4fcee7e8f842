"""ConfirmedPublisher: each publish learns its fate once, from single and `multiple` confirms."""

from __future__ import annotations

import pika

from common.publisher import ConfirmedPublisher
from tests.unit.fakes import FakeChannel, FakeClock, FakeConnection, FakeIOLoop


def publisher() -> tuple[ConfirmedPublisher, FakeChannel, dict[int, str | None], list[str]]:
    connection = FakeConnection(
        pika.URLParameters("amqp://localhost"), print, print, print, FakeIOLoop(FakeClock())
    )
    channel = FakeChannel(connection, 1)
    unroutable: list[str] = []
    fates: dict[int, str | None] = {}
    return ConfirmedPublisher(channel, unroutable.append), channel, fates, unroutable


def publish(pub: ConfirmedPublisher, fates: dict[int, str | None], n: int) -> None:
    for number in range(1, n + 1):
        pub.publish(
            "out",
            b"[]",
            pika.BasicProperties(),
            lambda failure, number=number: fates.__setitem__(number, failure),
        )


def test_publishes_are_persistent_mandatory_and_numbered_from_one() -> None:
    pub, channel, fates, _ = publisher()
    publish(pub, fates, 3)
    assert [p.mandatory for p in channel.published] == [True] * 3
    channel.confirm(2)
    assert fates == {2: None}


def test_a_multiple_ack_settles_every_tag_up_to_it_once() -> None:
    pub, channel, fates, _ = publisher()
    publish(pub, fates, 5)
    channel.confirm(3, multiple=True)
    assert fates == {1: None, 2: None, 3: None}
    channel.confirm(3, multiple=True)  # again: nothing is settled twice
    channel.confirm(5, multiple=True)
    assert fates == dict.fromkeys(range(1, 6))


def test_nacks_single_and_multiple() -> None:
    pub, channel, fates, _ = publisher()
    publish(pub, fates, 4)
    channel.confirm(2, ack=False)
    channel.confirm(3, multiple=True, ack=False)
    channel.confirm(4)
    assert fates == {
        1: "nacked by the broker",
        2: "nacked by the broker",
        3: "nacked by the broker",
        4: None,
    }


def test_confirms_out_of_order() -> None:
    pub, channel, fates, _ = publisher()
    publish(pub, fates, 4)
    channel.confirm(4)
    channel.confirm(1)
    channel.confirm(3, multiple=True)  # 1 is gone already, 4 is past it
    assert fates == {4: None, 1: None, 2: None, 3: None}


def test_a_return_reports_the_missing_queue() -> None:
    pub, channel, fates, unroutable = publisher()
    publish(pub, fates, 1)
    channel.return_(channel.published[0])
    assert unroutable == ["queue 'out' is missing (NO_ROUTE)"]
    assert fates == {}  # the return is not the message's fate: its confirm is
