"""The arguments queues are declared with, and (against the broker) that they do what they say."""

from __future__ import annotations

import dataclasses
import zlib
from collections import Counter

import pytest

from common.settings import BrokerSettings, Env
from common.topology import (
    PIPELINE_QUEUES,
    dead_letter_queue_arguments,
    input_queues,
    partition_of,
    queue_arguments,
    route,
    work_queue_arguments,
)

DEFAULTS = BrokerSettings.from_env(Env({}))
QUORUM = dataclasses.replace(DEFAULTS, queue_type="quorum", delivery_limit=5)
CLASSIC = dataclasses.replace(DEFAULTS, queue_type="classic")


def test_pipeline_queues() -> None:
    assert PIPELINE_QUEUES == ("service_a", "service_b", "service_c", "service_log")


def test_quorum_work_queue() -> None:
    assert work_queue_arguments(QUORUM) == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "dead_letter",
        "x-delivery-limit": 5,
    }


def test_classic_work_queue_has_no_delivery_limit() -> None:
    assert work_queue_arguments(CLASSIC) == {
        "x-queue-type": "classic",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "dead_letter",
    }


def test_settings_flow_into_the_arguments() -> None:
    settings = BrokerSettings.from_env(
        Env({"DELIVERY_LIMIT": "9", "DEAD_LETTER_QUEUE": "graveyard", "QUEUE_TYPE": "quorum"})
    )
    arguments = work_queue_arguments(settings)
    assert arguments["x-delivery-limit"] == 9
    assert arguments["x-dead-letter-routing-key"] == "graveyard"
    classic = BrokerSettings.from_env(Env({"DELIVERY_LIMIT": "9", "QUEUE_TYPE": "CLASSIC"}))
    assert "x-delivery-limit" not in work_queue_arguments(classic)


@pytest.mark.parametrize("settings", [QUORUM, CLASSIC], ids=["quorum", "classic"])
def test_dead_letter_queue_is_not_dead_lettered_itself(settings: BrokerSettings) -> None:
    assert dead_letter_queue_arguments(settings) == {"x-queue-type": settings.queue_type}


@pytest.mark.parametrize("settings", [QUORUM, CLASSIC], ids=["quorum", "classic"])
def test_queue_arguments_by_name(settings: BrokerSettings) -> None:
    for name in PIPELINE_QUEUES:
        assert queue_arguments(name, settings) == work_queue_arguments(settings)
    assert queue_arguments("dead_letter", settings) == dead_letter_queue_arguments(settings)
    renamed = dataclasses.replace(settings, dead_letter_queue="graveyard")
    assert queue_arguments("graveyard", renamed) == {"x-queue-type": settings.queue_type}
    assert queue_arguments("dead_letter", renamed)["x-dead-letter-routing-key"] == "graveyard"


def test_arguments_are_fresh_dicts() -> None:
    first = work_queue_arguments(QUORUM)
    first["x-queue-type"] = "changed"
    assert work_queue_arguments(QUORUM)["x-queue-type"] == "quorum"


# -- against the broker ----------------------------------------------------------------------


# -- keyed mode --------------------------------------------------------------------------------

KEYED = dataclasses.replace(DEFAULTS, ordering="keyed", partitions=4)


def test_keyed_inputs_are_partitions_with_a_single_active_consumer() -> None:
    assert input_queues("service_b", DEFAULTS) == ("service_b",)
    assert input_queues("service_b", KEYED) == tuple(f"service_b.{n}" for n in range(4))
    assert work_queue_arguments(KEYED)["x-single-active-consumer"] is True
    assert "x-single-active-consumer" not in work_queue_arguments(DEFAULTS)
    assert "x-single-active-consumer" not in dead_letter_queue_arguments(KEYED)


def test_a_key_always_picks_the_same_partition() -> None:
    """CRC-32, not Python's salted hash: every process, every run, every machine agrees."""
    assert [partition_of(f"key-{n}", 6) for n in range(8)] == [
        zlib.crc32(f"key-{n}".encode()) % 6 for n in range(8)
    ]
    assert partition_of("key-7", 6) == 5  # pinned: a change here remaps every key
    assert route("service_c", "key-7", KEYED) == f"service_c.{partition_of('key-7', 4)}"
    assert route("service_c", "key-7", DEFAULTS) == "service_c"


def test_twenty_keys_spread_over_six_partitions() -> None:
    used = Counter(partition_of(f"key-{n}", 6) for n in range(20))
    assert len(used) == 6 and max(used.values()) <= 6
