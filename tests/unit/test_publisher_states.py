"""ConfirmedPublisher: each publish is confirmed once, from single and `multiple` confirms, and
what the broker refuses (nacks) is published again after a pause until it is taken."""

from __future__ import annotations

import logging

import pika

from common.publisher import REFUSAL_ROUNDS, ConfirmedPublisher
from common.retry import retry_delay
from tests.unit.fakes import FakeChannel, FakeClock, FakeConnection, FakeIOLoop


class Rig:
    def __init__(self) -> None:
        self.loop = FakeIOLoop(FakeClock())
        connection = FakeConnection(pika.URLParameters("amqp://localhost"), *[print] * 3, self.loop)
        self.channel = FakeChannel(connection, 1)
        self.unroutable: list[str] = []
        self.confirmed: list[int] = []  # numbers of the publishes confirmed, in order
        self.publisher = ConfirmedPublisher(
            self.channel, self.unroutable.append, self.loop.call_later
        )

    def publish(self, *numbers: int) -> None:
        for number in numbers:
            self.publisher.publish(
                "out",
                str(number).encode(),
                pika.BasicProperties(),
                lambda number=number: self.confirmed.append(number),
            )

    def bodies(self) -> list[int]:
        """What went on the wire, in order: each publish, and each publishing again."""
        return [int(p.body) for p in self.channel.published]


def test_publishes_are_mandatory_and_numbered_from_one() -> None:
    rig = Rig()
    rig.publish(1, 2, 3)
    assert [p.mandatory for p in rig.channel.published] == [True] * 3
    rig.channel.confirm(2)
    assert rig.confirmed == [2]


def test_a_multiple_ack_confirms_every_tag_up_to_it_once() -> None:
    rig = Rig()
    rig.publish(1, 2, 3, 4, 5)
    rig.channel.confirm(3, multiple=True)
    assert rig.confirmed == [1, 2, 3]
    rig.channel.confirm(3, multiple=True)  # again: nothing is confirmed twice
    rig.channel.confirm(5, multiple=True)
    assert rig.confirmed == [1, 2, 3, 4, 5]


def test_confirms_out_of_order() -> None:
    rig = Rig()
    rig.publish(1, 2, 3, 4)
    rig.channel.confirm(4)
    rig.channel.confirm(1)
    rig.channel.confirm(3, multiple=True)  # 1 is gone already, 4 is past it
    assert rig.confirmed == [4, 1, 2, 3]


def test_what_the_broker_refuses_is_published_again_after_a_pause(caplog) -> None:
    """A nack (say, a quorum queue's leader moving after a node's loss) is not the message's
    fault: it goes out again, and its owner hears of it only once it is taken."""
    rig = Rig()
    rig.publish(1, 2, 3, 4)
    with caplog.at_level(logging.WARNING, logger="common.publisher"):
        rig.channel.confirm(2, ack=False)  # 2 refused
        rig.channel.confirm(3, multiple=True, ack=False)  # 1 and 3 refused, in the same round
        rig.channel.confirm(4)
    assert rig.confirmed == [4]
    [line] = caplog.records  # one line for the round, not one per message
    assert (line.refused, line.retry_in_s) == (1, retry_delay(1))
    assert rig.loop.delays() == [retry_delay(1)]
    rig.loop.run()
    assert rig.bodies() == [1, 2, 3, 4, 2, 1, 3]
    rig.channel.confirm(7, multiple=True)  # tags 5, 6, 7: the three published again
    assert rig.confirmed == [4, 2, 1, 3]


def test_the_pause_grows_while_the_refusals_go_on_and_resets_after() -> None:
    rig = Rig()
    rig.publish(1)
    tag = 1
    for round_ in (1, 2):
        rig.channel.confirm(tag, ack=False)
        assert rig.loop.delays() == [retry_delay(round_)]
        rig.loop.run()
        tag += 1
    rig.channel.confirm(tag)
    assert rig.confirmed == [1]
    rig.publish(2)
    rig.channel.confirm(tag + 1, ack=False)
    assert rig.loop.delays() == [retry_delay(1)]
    assert rig.unroutable == []


def test_after_rounds_of_refusals_the_channel_is_given_up() -> None:
    """RabbitMQ 3.10 refuses every publish on a channel opened as a queue's leader died, for as
    long as that node is down; a new channel is served at once."""
    rig = Rig()
    rig.publish(1)
    for tag in range(1, REFUSAL_ROUNDS + 1):
        rig.channel.confirm(tag, ack=False)
        rig.loop.run()
    assert rig.unroutable == []
    rig.channel.confirm(REFUSAL_ROUNDS + 1, ack=False)
    assert rig.unroutable == [f"the broker refused publishes {REFUSAL_ROUNDS} rounds in a row"]
    assert rig.loop.delays() == []  # nothing more on this channel


def test_nothing_is_published_again_on_a_lost_channel() -> None:
    rig = Rig()
    rig.publish(1)
    rig.channel.confirm(1, ack=False)
    rig.channel.state = "closed"
    rig.loop.run()
    assert rig.bodies() == [1]  # the owner publishes again, or the broker redelivers


def test_a_return_reports_the_missing_queue() -> None:
    rig = Rig()
    rig.publish(1)
    rig.channel.return_(rig.channel.published[0])
    assert rig.unroutable == ["queue 'out' is missing (NO_ROUTE)"]
    assert rig.confirmed == []  # the return is not the message's fate: its confirm is
