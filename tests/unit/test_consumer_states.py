"""The Consumer's state machine: acks gathered after confirms, void channels, drains, dead
letters. Driven with fake pika objects and the worker step run in the test's own thread."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial
from unittest import mock

import pika
import pika.channel
import pika.connection
import pytest
from pika import frame, spec

from common.connection import ReconnectingConnection
from common.consumer import Consumer, ConsumerSettings
from common.consumer.dead_letters import MAX_CARRIED_HEADERS, MAX_REASON
from common.consumer.drain import cancel_keeping_deliveries_in_flight
from common.consumer.events import AcksSent, DeadLettered, Event, HandlerFinished, Settled
from common.consumer.outcomes import Delivery
from common.consumer.workers import HandBack, Process, WorkerPool
from common.messages import InvalidMessage, Message
from common.settings import BrokerSettings, Env
from common.topology import route
from tests.unit.fakes import FakeChannel, FakeClock, FakeConnection, FakeIOLoop
from tests.unit.test_frames import HOSTILE, properties_with

BROKER = BrokerSettings.from_env(Env({"CONNECT_TIMEOUT": "30"}))


class ManualPool(WorkerPool):
    """The worker pool with no threads: what is submitted waits in `submitted` until the test
    runs the workers' step on it (`work`)."""

    def __init__(self, size: int, process: Process, hand_back: HandBack) -> None:
        super().__init__(size, process, hand_back)
        self.submitted: list[Delivery] = []

    def start(self) -> None:
        pass

    def submit(self, delivery: Delivery) -> None:
        self.submitted.append(delivery)

    def work(self, count: int | None = None) -> None:
        taken = self.submitted[:count]
        del self.submitted[: len(taken)]
        for delivery in taken:
            self.work_on(delivery)


class CountingConnection(ReconnectingConnection):
    """The real connection, counting what its user reports as progress."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.progress_noted = 0

    def note_progress(self) -> None:
        self.progress_noted += 1
        super().note_progress()


class Rig:
    """A Consumer of `service_b` (or `queue`) on a fake broker, its worker step run by hand."""

    def __init__(
        self,
        handler: Callable[[Message], Message | None],
        queue_name: str,
        broker: BrokerSettings = BROKER,
        accept_from: str = "",
    ) -> None:
        FakeConnection.made.clear()
        self.clock = FakeClock()
        self.loop = FakeIOLoop(self.clock)
        settings = ConsumerSettings(
            queue_name, workers=1, prefetch=100, drain_timeout=20.0, accept_from=accept_from
        )
        connect = partial(
            CountingConnection,
            ioloop=self.loop,
            connection_class=FakeConnection,
            clock=self.clock,
        )
        self.pools: list[ManualPool] = []

        def pool(*args: object) -> ManualPool:
            self.pools.append(ManualPool(*args))
            return self.pools[-1]

        self.consumer = Consumer(broker, settings, handler, "service_c", connect=connect, pool=pool)
        self.consumer.connection.run()
        FakeConnection.made[-1].open()

    @property
    def channel(self) -> FakeChannel:
        return FakeConnection.made[-1].channel_

    @property
    def pool(self) -> ManualPool:
        return self.pools[-1]

    def deliver(self, message: Message | None = None, **kwargs: object) -> int:
        message = message or Message.first(1, 1.0).stamped("service_a", 2.0)
        body, properties = message.encode()
        return self.channel.deliver(kwargs.get("body", body), kwargs.get("properties", properties))

    def work(self, count: int | None = None) -> None:
        """Run the workers' step on what they have been given (all, or `count`), then the I/O
        loop's callbacks that are due."""
        self.pool.work(count)
        self.loop.run(until=self.clock.now)

    def confirm_all(self) -> None:
        self.channel.confirm(len(self.channel.published), multiple=True)
        self.loop.run(until=self.clock.now)


def stamp(message: Message) -> Message:
    return message.stamped("service_b", 3.0)


@pytest.fixture
def rig() -> Iterator[Rig]:
    yield Rig(stamp, "service_b")
    FakeConnection.made.clear()


# -- acks after confirms -----------------------------------------------------------------------


def test_the_input_is_acked_only_after_the_output_is_confirmed(rig: Rig) -> None:
    tag = rig.deliver()
    rig.work()
    [out] = rig.channel.published
    assert (out.routing_key, out.mandatory) == ("service_c", True)
    assert json.loads(out.body) == ["seq-1", "service_a", "service_b"]
    assert rig.channel.acks == []
    rig.confirm_all()
    assert rig.channel.acks == [(tag, True)]


def test_acks_are_gathered_into_one_multiple_ack_and_singles(rig: Rig) -> None:
    tags = [rig.deliver() for _ in range(6)]
    rig.work()
    # Confirm the outputs of deliveries 1, 2, 3 and 5: 4 is still out, 6 too.
    for number in (1, 2, 3, 5):
        rig.channel.confirm(number)
    rig.loop.run(until=rig.clock.now)
    assert rig.channel.acks == [(tags[2], True), (tags[4], False)]
    rig.channel.confirm(6)
    rig.channel.confirm(4)
    rig.loop.run(until=rig.clock.now)
    assert rig.channel.acks[2:] == [(tags[5], True)]


def test_a_refused_output_is_published_again_while_the_input_waits(rig: Rig) -> None:
    """A nack is the broker saying "not now" (a leader moving after a node's loss): requeueing
    the input would spend its delivery attempts in milliseconds."""
    tag = rig.deliver()
    rig.work()
    rig.channel.confirm(1, ack=False)
    rig.loop.run_for(1.0)
    assert len(rig.channel.published) == 2 and rig.channel.nacks == []
    assert rig.channel.acks == []
    rig.channel.confirm(2)
    rig.loop.run(until=rig.clock.now)
    assert rig.channel.acks == [(tag, True)]


def test_results_from_a_lost_channel_are_void(rig: Rig) -> None:
    """A reconnect between the work and its result: nothing is acked, on either channel."""
    rig.deliver()
    first_channel = rig.channel
    FakeConnection.made[-1].lose()
    rig.loop.run(until=rig.clock.now)
    FakeConnection.made[-1].open()
    rig.work()  # the worker finishes the old delivery now
    assert first_channel.published == [] and rig.channel.published == []
    assert first_channel.acks == [] and rig.channel.acks == []


def test_a_confirm_arriving_for_a_lost_channel_acks_nothing(rig: Rig) -> None:
    rig.deliver()
    rig.work()
    old = rig.channel
    FakeConnection.made[-1].lose()
    rig.loop.run(until=rig.clock.now)
    FakeConnection.made[-1].open()
    old.confirm(1)  # late, stale
    rig.loop.run(until=rig.clock.now)
    assert rig.channel.acks == []


def test_a_delivery_on_a_channel_given_up_is_ignored(rig: Rig) -> None:
    """pika may still hand us a frame of a channel we have voided: no assert, no crash."""
    old = rig.channel
    FakeConnection.made[-1].lose()
    old.state = "open"  # as if its last frame was still being read
    old.deliver(b'["seq-1"]')
    assert rig.pool.submitted == []


def test_settling_counts_as_progress(rig: Rig) -> None:
    connection = rig.consumer.connection
    assert connection.progress_noted == 0
    rig.deliver()
    rig.work()
    rig.confirm_all()
    assert connection.progress_noted == 1


def test_waiting_for_work_means_nothing_in_hand(rig: Rig) -> None:
    assert rig.consumer.waiting_for_work()
    rig.deliver()
    assert not rig.consumer.waiting_for_work()
    rig.work()
    rig.confirm_all()
    assert rig.consumer.waiting_for_work()


# -- draining ----------------------------------------------------------------------------------


def test_a_drain_finishes_what_arrives_between_cancel_and_cancel_ok(rig: Rig, caplog) -> None:
    """pika hands such deliveries back (a delivery attempt each, on a quorum queue): they are
    taken and finished instead, and counted."""
    caplog.set_level(logging.INFO)
    held = [rig.deliver() for _ in range(3)]
    rig.consumer.request_stop()
    rig.loop.run(until=rig.clock.now)
    assert rig.channel.cancels == ["ctag-1.1"]
    in_flight = [rig.deliver() for _ in range(2)]  # sent by the broker before it saw the cancel
    assert rig.channel.rejects == []
    rig.channel.cancel_ok()
    rig.work()
    rig.confirm_all()
    assert rig.channel.acks == [(in_flight[-1], True)]
    assert held + in_flight == list(range(1, 6))
    [stopped] = [r for r in caplog.records if r.getMessage().startswith("stopped")]
    assert (stopped.finished, stopped.arrived_after_cancel, stopped.handed_back) == (5, 2, 0)
    assert rig.loop.stopped


def test_a_drain_that_times_out_counts_what_it_hands_back(rig: Rig, caplog) -> None:
    rig.deliver()
    rig.deliver()
    rig.consumer.request_stop()
    rig.work(1)
    rig.confirm_all()
    rig.loop.run_for(20.0)  # DRAIN_TIMEOUT, with one message still in work
    [timed_out] = [r for r in caplog.records if r.getMessage().startswith("drain timed out")]
    assert (timed_out.finished, timed_out.handed_back) == (1, 1)
    assert rig.loop.stopped


def test_a_drain_with_nothing_in_hand_stops_at_the_cancel_ok(rig: Rig) -> None:
    """Until the broker's Cancel-Ok, a delivery may still be on its way: stopping before it
    would hand that one back."""
    rig.consumer.request_stop()
    rig.loop.run(until=rig.clock.now)
    assert not rig.loop.stopped
    rig.channel.cancel_ok()
    rig.loop.run(until=rig.clock.now)
    assert rig.loop.stopped
    assert FakeConnection.made[-1].closes_sent == 1


def test_a_channel_closed_during_a_drain_ends_it_without_a_second_close(rig: Rig) -> None:
    rig.deliver()
    rig.consumer.request_stop()
    rig.loop.run(until=rig.clock.now)
    rig.channel.close_by_broker(406, "PRECONDITION_FAILED - unknown delivery tag 9")
    rig.loop.run()
    assert rig.loop.stopped
    assert FakeConnection.made[-1].closes_sent == 1
    assert len(FakeConnection.made) == 1


def test_cancel_keeps_deliveries_in_flight_on_pikas_real_channel() -> None:
    """Pins the pika internals the drain relies on: after our cancel, a delivery that arrives
    before the Cancel-Ok reaches the consumer callback instead of being rejected."""
    connection = mock.Mock(spec=pika.connection.Connection)
    connection.callbacks = pika.callback.CallbackManager()
    channel = pika.channel.Channel(connection, 1, lambda _channel: None)
    channel._set_state(channel.OPEN)
    seen: list[int] = []
    tag = channel.basic_consume(
        "q", lambda _ch, method, _props, _body: seen.append(method.delivery_tag)
    )
    cancelled: list[bool] = []
    cancel_keeping_deliveries_in_flight(channel, tag, lambda: cancelled.append(True))
    header = frame.Header(1, 2, pika.BasicProperties())
    channel._on_deliver(frame.Method(1, spec.Basic.Deliver(tag, 7, False, "", "q")), header, b"[]")
    assert seen == [7]
    rejects = [
        c
        for c in connection._send_method.call_args_list
        if isinstance(c.args[1], spec.Basic.Reject)
    ]
    assert rejects == []
    cancel_ok = frame.Method(1, spec.Basic.CancelOk(tag))
    connection.callbacks.process(1, spec.Basic.CancelOk, channel, cancel_ok)  # ours
    channel._on_cancelok(cancel_ok)  # pika's own
    assert tag not in channel.consumer_tags
    assert cancelled == [True]


# -- dead letters ------------------------------------------------------------------------------


def dead_letters(rig: Rig) -> list:
    return [p for p in rig.channel.published if p.routing_key == "dead_letter"]


def test_undecodable_headers_are_dead_lettered_with_the_reason(rig: Rig) -> None:
    properties = pika.BasicProperties().decode(properties_with(HOSTILE["timestamp past 9999"]))
    tag = rig.deliver(body=b'["seq-1","service_a"]', properties=properties)
    good = rig.deliver()
    rig.work()
    [dead] = dead_letters(rig)
    reason = dead.properties.headers["x-error-reason"]
    assert reason.startswith("pika cannot decode the message's headers (ValueError: year ")
    assert dead.properties.message_id == "id-1"
    assert dead.body == b'["seq-1","service_a"]'
    rig.confirm_all()
    assert rig.channel.acks == [(good, True)] and tag < good


def test_the_dead_letter_copy_drops_headers_too_large_to_carry(rig: Rig) -> None:
    """Headers just under the broker's frame limit: the copy keeps the reason, not them."""
    headers = {"data": "{}", "big": "x" * 120_000}
    rig.deliver(body=b"not json", properties=pika.BasicProperties(message_id="m", headers=headers))
    rig.work()
    [dead] = dead_letters(rig)
    assert dead.properties.headers["x-error-reason"].startswith("body is not JSON")
    assert "big" not in dead.properties.headers
    assert dead.properties.headers["x-error-headers-dropped"].startswith("the original headers (")
    assert len(b"".join(dead.properties.encode())) < 4096  # the AMQP minimum frame size


def test_the_dead_letter_copy_carries_small_headers(rig: Rig) -> None:
    headers = {"data": "{}", "trace": "abc"}
    rig.deliver(body=b"not json", properties=pika.BasicProperties(message_id="m", headers=headers))
    rig.work()
    [dead] = dead_letters(rig)
    assert dead.properties.headers["trace"] == "abc"
    assert "x-error-headers-dropped" not in dead.properties.headers
    assert len(b"".join(pika.BasicProperties(headers=headers).encode())) < MAX_CARRIED_HEADERS


@pytest.mark.parametrize("letter", ["x", "語"])
def test_a_long_reason_is_cut_in_bytes(letter: str) -> None:
    def fail(_message: Message) -> Message:
        raise InvalidMessage(letter * 10_000)

    rig = Rig(fail, "service_b")
    body, properties = Message.first(1, 1.0).stamped("service_a", 2.0).encode()
    properties.headers["pad"] = "p" * 1900  # carried over: under MAX_CARRIED_HEADERS
    rig.deliver(body=body, properties=properties)
    rig.work()
    [dead] = dead_letters(rig)
    reason = dead.properties.headers["x-error-reason"]
    assert dead.properties.headers["pad"] == "p" * 1900
    assert MAX_REASON - 3 <= len(reason.encode()) <= MAX_REASON and set(reason) == {letter}
    assert len(b"".join(dead.properties.encode())) < 4096


def test_every_publish_carries_the_connections_user(rig: Rig) -> None:
    """RabbitMQ checks user_id against the login: the next stage may trust it."""
    rig.deliver()
    rig.deliver(body=b"not json")
    rig.work()
    assert [p.properties.user_id for p in rig.channel.published] == ["guest", "guest"]


@pytest.mark.parametrize(
    ("sender", "shown", "kept"),
    [
        ("intruder", "user 'intruder'", "intruder"),
        (None, "no user", ""),
        ("\x00", "no user", ""),
    ],
)
def test_a_message_from_another_user_than_the_stage_before_is_dead_lettered(
    sender: str | None, shown: str, kept: str
) -> None:
    rig = Rig(stamp, "service_b", accept_from="service_a")
    body, properties = Message.first(1, 1.0).stamped("service_a", 2.0).encode()
    properties.user_id = sender
    properties.headers["x-original-user-id"] = "service_a"  # written by the sender: not kept
    tag = rig.deliver(body=body, properties=properties)
    rig.work()
    [dead] = dead_letters(rig)
    assert dead.properties.headers["x-error-reason"] == (
        f"sent by {shown}: service_b accepts messages only from user 'service_a'"
    )
    assert dead.properties.headers["x-original-user-id"] == kept
    assert dead.properties.user_id == "guest"  # the copy is the dead-lettering stage's own
    assert dead.body == body and dead_letters(rig) == rig.channel.published  # nothing goes on
    rig.confirm_all()
    assert [acked for acked, _multiple in rig.channel.acks] == [tag]


def test_a_message_from_the_stage_before_goes_on() -> None:
    rig = Rig(stamp, "service_b", accept_from="service_a")
    body, properties = Message.first(1, 1.0).stamped("service_a", 2.0).encode()
    properties.user_id = "service_a"
    rig.deliver(body=body, properties=properties)
    rig.work()
    [out] = rig.channel.published
    assert out.routing_key == "service_c" and dead_letters(rig) == []


@pytest.mark.parametrize(
    ("queue_name", "history", "expected"),
    [
        ("service_c", ["seq-7"], "takes messages that went through service_a, service_b"),
        ("service_a", ["seq-8", "service_b"], "straight from first, no stage yet"),
        ("service_a", ["seq-9", "service_a", "service_b", "service_c"], "straight from first"),
        ("service_log", ["seq-10"], "through service_a, service_b, service_c"),
        ("service_b", ["seq-11", "service_a", "service_a"], "through service_a"),
    ],
)
def test_a_history_out_of_stage_order_is_dead_lettered(
    queue_name: str, history: list[str], expected: str
) -> None:
    rig = Rig(lambda message: None, queue_name)
    body = json.dumps(history).encode()
    properties = pika.BasicProperties(message_id="m", headers={"data": '{"created_at": 1}'})
    rig.deliver(body=body, properties=properties)
    rig.work()
    [dead] = dead_letters(rig)
    reason = dead.properties.headers["x-error-reason"]
    assert reason.startswith(f"history {history} is out of order for {queue_name}: ")
    assert expected in reason


def test_a_history_in_stage_order_goes_on(rig: Rig) -> None:
    rig.deliver()
    rig.work()
    assert dead_letters(rig) == [] and len(rig.channel.published) == 1


def test_a_queue_outside_the_pipeline_takes_any_history() -> None:
    rig = Rig(lambda message: None, "audit")
    rig.deliver(Message.first(1, 1.0).stamped("service_c", 2.0))
    rig.work()
    assert dead_letters(rig) == []


# -- keyed mode --------------------------------------------------------------------------------

KEYED = BrokerSettings.from_env(Env({"ORDERING": "keyed", "PARTITIONS": "3"}))


def keyed(seq: int, key: str) -> Message:
    return Message.first(seq, 1.0, key=key).stamped("service_a", 2.0)


def outputs(rig: Rig) -> list[tuple[str, str]]:
    """(routing key, first history item) of each output published, in order."""
    return [
        (p.routing_key, json.loads(p.body)[0])
        for p in rig.channel.published
        if p.routing_key != "dead_letter"
    ]


def test_keyed_consumes_every_partition_with_a_priority_of_its_own() -> None:
    rig = Rig(stamp, "service_b", KEYED)
    channel = rig.channel
    assert set(channel.priorities) == {"service_b.0", "service_b.1", "service_b.2"}
    assert all(isinstance(p, int) for p in channel.priorities.values())
    assert len(set(channel.priorities.values())) == 3  # a rendezvous score per partition
    assert channel.declared[:3] == ["service_b.0", "service_b.1", "service_b.2"]
    assert channel.declared[3:] == ["service_c.0", "service_c.1", "service_c.2", "dead_letter"]


def test_one_key_at_a_time_in_arrival_order_other_keys_in_parallel() -> None:
    rig = Rig(stamp, "service_b", KEYED)
    queue_of = {key: route("service_b", key, KEYED) for key in ("k", "j")}
    for seq, key in ((1, "k"), (2, "k"), (3, "j"), (4, "k")):
        rig.channel.deliver(*keyed(seq, key).encode(), queue=queue_of[key])
    assert [d.tag for d in rig.pool.submitted] == [1, 3]  # seq-2 and seq-4 wait behind seq-1,
    rig.work()  # seq-3 runs beside it
    assert len(outputs(rig)) == 2  # seq-2 waits until seq-1's output is confirmed
    for expected in (3, 4):
        rig.confirm_all()
        rig.work()  # seq-2, then seq-4: each released when the one before it is settled
        assert len(outputs(rig)) == expected
    assert outputs(rig) == [
        (route("service_c", "k", KEYED), "seq-1"),
        (route("service_c", "j", KEYED), "seq-3"),
        (route("service_c", "k", KEYED), "seq-2"),
        (route("service_c", "k", KEYED), "seq-4"),
    ]


def test_a_failure_is_retried_in_place_holding_its_key() -> None:
    failures = {1: 2}  # seq-1 fails twice, then works

    def flaky(message: Message) -> Message:
        if failures.get(message.seq, 0) > 0:
            failures[message.seq] -= 1
            raise RuntimeError("flaky")
        return stamp(message)

    rig = Rig(flaky, "service_b", KEYED)
    partition = route("service_b", "k", KEYED)
    for seq in (1, 2):
        rig.channel.deliver(*keyed(seq, "k").encode(), queue=partition)
    for _ in range(4):
        rig.work()
        rig.confirm_all()
        rig.loop.run_for(5.0)  # the retry's back-off
    rig.work()
    assert rig.channel.nacks == []  # nothing went back to the queue
    assert [history for _, history in outputs(rig)] == ["seq-1", "seq-2"]


def test_a_poison_message_in_keyed_mode_is_dead_lettered_and_its_key_goes_on() -> None:
    def poison(message: Message) -> Message:
        if message.seq == 1:
            raise RuntimeError("always")
        return stamp(message)

    rig = Rig(poison, "service_b", KEYED)
    partition = route("service_b", "k", KEYED)
    for seq in (1, 2):
        rig.channel.deliver(*keyed(seq, "k").encode(), queue=partition)
    for _ in range(KEYED.delivery_limit + 1):
        rig.work()
        rig.confirm_all()
        rig.loop.run_for(5.0)
    rig.work()
    [dead] = dead_letters(rig)
    assert dead.properties.headers["x-error-reason"].startswith(
        f"failed on attempt {KEYED.delivery_limit}: RuntimeError: always"
    )
    assert [history for _, history in outputs(rig)] == ["seq-2"]


# -- handlers that answer later ---------------------------------------------------------------


def test_a_handler_may_answer_with_a_future_settled_later() -> None:
    """`last` hands its record to the store and returns a Future: no worker waits, and the
    message is acked only once the Future resolves."""
    answers: list[Future[None]] = []

    def later(_message: Message) -> Future[None]:
        answers.append(Future())
        return answers[-1]

    rig = Rig(later, "service_log")
    tags = [
        rig.deliver(
            Message.first(n, 1.0)
            .stamped("service_a", 2.0)
            .stamped("service_b", 3.0)
            .stamped("service_c", 4.0)
        )
        for n in (1, 2, 3)
    ]
    rig.work()
    assert len(answers) == 3 and rig.channel.acks == []
    answers[1].set_result(None)
    rig.loop.run(until=rig.clock.now)
    assert rig.channel.acks == [(tags[1], False)]
    answers[0].set_exception(InvalidMessage("no good"))
    answers[2].set_exception(RuntimeError("store bug"))
    rig.loop.run(until=rig.clock.now)
    assert [p.routing_key for p in rig.channel.published] == ["dead_letter"]
    assert rig.channel.nacks == [tags[2]]  # tried again, like any failure


def test_a_future_resolved_after_its_channel_is_lost_settles_nothing() -> None:
    answer: Future[None] = Future()
    rig = Rig(lambda _message: answer, "service_b")
    rig.deliver()
    rig.work()
    FakeConnection.made[-1].lose()
    rig.loop.run(until=rig.clock.now)
    FakeConnection.made[-1].open()
    answer.set_result(None)
    rig.loop.run(until=rig.clock.now)
    assert rig.channel.acks == [] and rig.channel.published == []


def test_keyed_prefetch_is_shared_by_the_partitions() -> None:
    """basic.qos counts per consumer: six partitions must not hold six times PREFETCH."""
    rig = Rig(stamp, "service_b", KEYED)  # PREFETCH 100 over 3 partitions
    assert rig.channel.prefetch == 34


def test_a_keyed_drain_cancels_nothing_and_hands_back_what_waits(caplog) -> None:
    """Cancelling would make the next replica active at once, and it would take later messages
    of keys still in work here. So: finish what is in work, start nothing more, and let what
    waits go back to the broker, in order, when the channel closes."""
    caplog.set_level(logging.INFO)
    rig = Rig(stamp, "service_b", KEYED)
    partition = route("service_b", "k", KEYED)
    tags = [rig.channel.deliver(*keyed(seq, "k").encode(), queue=partition) for seq in (1, 2)]
    rig.consumer.request_stop()
    rig.loop.run(until=rig.clock.now)
    later = rig.channel.deliver(*keyed(3, "j").encode(), queue=route("service_b", "j", KEYED))
    assert rig.channel.cancels == []
    rig.work()
    rig.confirm_all()
    assert rig.loop.stopped
    assert outputs(rig) == [(route("service_c", "k", KEYED), "seq-1")]
    assert rig.channel.acks == [(tags[0], True)]  # seq-2 and seq-3 go back unacked
    # No Close either: it would cancel first, and the next replica could start on seq-4 of k
    # while seq-2 is still held here. Without one, the broker returns what was held first.
    assert FakeConnection.made[-1].closes_sent == 0
    [stopped] = [r for r in caplog.records if r.getMessage().startswith("stopped")]
    assert (stopped.finished, stopped.handed_back) == (1, 2)
    assert later == 3


def test_a_keyed_output_the_broker_refuses_is_retried_before_its_key_goes_on() -> None:
    rig = Rig(stamp, "service_b", KEYED)
    partition = route("service_b", "k", KEYED)
    for seq in (1, 2):
        rig.channel.deliver(*keyed(seq, "k").encode(), queue=partition)
    rig.work()
    rig.channel.confirm(1, ack=False)  # seq-1's output nacked
    rig.loop.run_for(5.0)
    rig.work()  # seq-1 again, not seq-2
    rig.confirm_all()
    rig.work()
    rig.confirm_all()
    assert rig.channel.nacks == []
    assert [history for _, history in outputs(rig)] == ["seq-1", "seq-1", "seq-2"]


def test_a_handler_answering_nonsense_fails_the_message_not_the_worker() -> None:
    rig = Rig(lambda _message: "not a message", "service_b")
    tag = rig.deliver()
    rig.work()
    assert rig.channel.nacks == [tag]  # tried again, like any failure; the worker lives on


# -- events ------------------------------------------------------------------------------------


def told(seen: list[Event]) -> list[tuple[str, int | None]]:
    return [(type(e).__name__, getattr(getattr(e, "delivery", None), "tag", None)) for e in seen]


def test_what_becomes_of_each_message_is_told_to_observers(rig: Rig) -> None:
    seen: list[Event] = []
    rig.consumer.events.subscribe(seen.append)
    rig.deliver()
    rig.deliver(body=b"not json", properties=pika.BasicProperties(message_id="m"))
    rig.work()
    rig.confirm_all()
    assert told(seen) == [
        ("Received", 1),
        ("Received", 2),
        ("HandlerFinished", 1),
        ("Publishing", 1),
        ("HandlerFinished", 2),
        ("Confirmed", 1),
        ("Settled", 1),
        ("DeadLettered", 2),
        ("Settled", 2),
        ("AcksSent", None),  # both acks in one flush
    ]
    finished = [e for e in seen if isinstance(e, HandlerFinished)]
    assert [type(e.outcome).__name__ for e in finished] == ["Forward", "DeadLetter"]
    assert all(e.seconds >= 0 for e in finished)
    assert [e.acked for e in seen if isinstance(e, Settled)] == [True, True]
    assert [e.count for e in seen if isinstance(e, AcksSent)] == [2]
    [dead] = [e for e in seen if isinstance(e, DeadLettered)]
    assert dead.reason.startswith("body is not JSON")


def test_a_requeue_and_a_reconnect_are_told_too() -> None:
    def fail(_message: Message) -> Message:
        raise RuntimeError("down")

    seen: list[Event] = []
    rig = Rig(fail, "service_b")
    rig.consumer.events.subscribe(seen.append)
    rig.deliver()
    rig.work()
    FakeConnection.made[-1].lose()
    rig.loop.run(until=rig.clock.now)
    FakeConnection.made[-1].open()
    assert told(seen) == [
        ("Received", 1),
        ("HandlerFinished", 1),
        ("Settled", 1),
        ("Connected", None),
    ]
    assert [e.acked for e in seen if isinstance(e, Settled)] == [False]
