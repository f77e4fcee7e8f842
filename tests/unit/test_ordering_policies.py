"""The ordering policies on their own, with no channel: deliveries in, decisions out."""

from __future__ import annotations

import pika
import pytest

from common.consumer.lanes import KeyedLanes, lane_key
from common.consumer.ordering import Retry, attempt_limit
from common.consumer.outcomes import DeadLetter, Delivery
from common.consumer.unordered import Unordered
from common.retry import retry_delay
from common.settings import BrokerSettings, Env

LIMIT = 4


def delivery(tag: int, key: str | None = None, **properties: object) -> Delivery:
    headers = {"key": key} if key is not None else None
    props = pika.BasicProperties(message_id=f"id-{tag}", headers=headers, **properties)
    return Delivery(1, tag, False, props, b"[]")


def redelivered(tag: int, count: int) -> Delivery:
    props = pika.BasicProperties(message_id=f"id-{tag}", headers={"x-delivery-count": count})
    return Delivery(1, tag, True, props, b"[]")


# -- unordered ---------------------------------------------------------------------------------


def test_unordered_starts_everything_and_holds_nothing() -> None:
    policy = Unordered(LIMIT)
    assert all(policy.admit(delivery(tag, "k")) for tag in (1, 2, 3))
    assert policy.settled(delivery(1, "k")) is None
    assert policy.held() == 0
    assert policy.consume_arguments("service_b") is None


def test_unordered_requeues_a_failure_until_the_last_delivery() -> None:
    policy = Unordered(LIMIT)
    assert policy.failed(delivery(1), "boom") == Retry(attempt=1)
    assert policy.failed(redelivered(1, LIMIT - 2), "boom") == Retry(attempt=LIMIT - 1)
    assert policy.failed(redelivered(1, LIMIT - 1), "boom") == DeadLetter(
        f"failed on delivery {LIMIT}: boom"
    )


def test_unordered_cancels_and_closes_on_stop() -> None:
    policy = Unordered(LIMIT)
    assert policy.drain_begins() is True
    assert policy.admit(delivery(9))  # what arrives before the Cancel-Ok is finished too
    assert policy.drain_ends() is True


@pytest.mark.parametrize(
    ("queue_type", "limit"), [("quorum", 20), ("classic", 2)]
)  # classic queues count no deliveries: any redelivery is the last
def test_the_attempt_limit_follows_the_queue_type(queue_type: str, limit: int) -> None:
    broker = BrokerSettings.from_env(Env({"QUEUE_TYPE": queue_type, "DELIVERY_LIMIT": "20"}))
    assert attempt_limit(broker) == limit


# -- keyed lanes -------------------------------------------------------------------------------


def test_one_delivery_of_a_key_at_a_time_in_arrival_order() -> None:
    lanes = KeyedLanes(LIMIT, "service_b@r-1")
    k1, k2, j1, k3 = delivery(1, "k"), delivery(2, "k"), delivery(3, "j"), delivery(4, "k")
    assert [lanes.admit(d) for d in (k1, k2, j1, k3)] == [True, False, True, False]
    assert lanes.held() == 2
    assert lanes.settled(j1) is None  # j has nothing behind it
    assert lanes.settled(k1) is k2
    assert lanes.settled(k2) is k3
    assert lanes.settled(k3) is None
    assert lanes.held() == 0
    assert lanes.admit(delivery(5, "k"))  # the lane is free again


def test_a_delivery_without_a_key_is_ordered_by_nothing_but_itself() -> None:
    lanes = KeyedLanes(LIMIT, "service_b@r-1")
    assert lanes.admit(delivery(1)) and lanes.admit(delivery(2))
    assert lane_key(delivery(3)) == "id-3"
    assert lane_key(Delivery(1, 7, False, pika.BasicProperties(), b"")) == "#7"


def test_a_keyed_failure_is_retried_here_with_back_off_then_given_up() -> None:
    lanes = KeyedLanes(LIMIT, "service_b@r-1")
    first = delivery(1, "k")
    lanes.admit(first)
    decisions = [lanes.failed(first, "flaky") for _ in range(LIMIT)]
    assert decisions[: LIMIT - 1] == [
        Retry(attempt=n, delay=retry_delay(n)) for n in range(1, LIMIT)
    ]
    assert decisions[-1] == DeadLetter(f"failed on attempt {LIMIT}: flaky")


def test_retries_count_from_the_brokers_delivery_count() -> None:
    lanes = KeyedLanes(LIMIT, "service_b@r-1")
    again = redelivered(1, LIMIT - 2)  # two deliveries spent already (a crash, say)
    lanes.admit(again)
    assert lanes.failed(again, "x") == Retry(attempt=LIMIT - 1, delay=retry_delay(1))
    assert isinstance(lanes.failed(again, "x"), DeadLetter)


def test_a_settled_delivery_takes_its_retries_with_it() -> None:
    lanes = KeyedLanes(LIMIT, "service_b@r-1")
    for tag in (1, 2):
        d = delivery(tag, "k")
        lanes.admit(d)
        assert lanes.failed(d, "x") == Retry(attempt=1, delay=retry_delay(1))
        lanes.settled(d)


def test_a_keyed_stop_cancels_nothing_starts_nothing_and_holds_what_waits() -> None:
    lanes = KeyedLanes(LIMIT, "service_b@r-1")
    k1, k2 = delivery(1, "k"), delivery(2, "k")
    lanes.admit(k1)
    lanes.admit(k2)
    assert lanes.drain_begins() is False
    assert not lanes.admit(delivery(3, "j"))  # arrives while stopping: goes back, unstarted
    assert lanes.settled(k1) is None  # k2 is not started either
    assert lanes.held() == 2
    assert lanes.drain_ends() is False  # no Close: the broker returns what was held, in order


def test_each_replica_asks_its_own_priority_for_each_partition() -> None:
    one, other = KeyedLanes(LIMIT, "service_b@r-1"), KeyedLanes(LIMIT, "service_b@r-2")
    partitions = [f"service_b.{n}" for n in range(8)]
    mine = [one.consume_arguments(q)["x-priority"] for q in partitions]
    theirs = [other.consume_arguments(q)["x-priority"] for q in partitions]
    assert mine == [one.consume_arguments(q)["x-priority"] for q in partitions]  # stable
    assert mine != theirs
    assert any(a > b for a, b in zip(mine, theirs, strict=True))  # the partitions spread
    assert any(a < b for a, b in zip(mine, theirs, strict=True))
