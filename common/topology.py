"""The queues of the pipeline and the arguments they are declared with.

Every process declares the queues it reads or writes, so start-up order does not matter and a
message is never published to a queue that does not exist yet. Declaring is idempotent as long
as the arguments match; a queue left over with other arguments (say, classic where quorum is
configured) is reported as a clear start-up error instead of being silently used.

With ORDERING=keyed, a stage's input is PARTITIONS queues (`service_b.0` ... `service_b.5`), each
with a single active consumer, and a message goes to the partition its key picks: one key is
worked on by one consumer at a time, in publish order, while different keys run in parallel.
The partition is a stable hash of the key computed by the publisher, and the message goes
through the default exchange like any other: no plugin to enable (the consistent-hash exchange
would need one), the same on every RabbitMQ version, and the mapping is plain code anyone can
read and test. Changing PARTITIONS remaps keys, as adding a queue to a consistent-hash exchange
would remap some: do it with the pipeline drained.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from common.settings import BrokerSettings

PRIORITY_RANGE = 1 << 20  # consumer priorities 0..2^20-1: replicas of a stage rarely tie

STAGES = ("service_a", "service_b", "service_c")  # the services, in the order a message meets them
SINK_QUEUE = "service_log"  # what `last` consumes: the history of a message that went through all
PIPELINE_QUEUES = (*STAGES, SINK_QUEUE)


@dataclass(frozen=True)
class Queues:
    """The queues one process uses: `own`, those it reads, which it always declares (and so
    needs the right to configure); `others`, those it writes to, declared too unless
    DECLARE_QUEUES=own says they exist already (seeded by the broker's definitions, or declared
    by their owners), and are then only checked, which needs no right at all. A user that may
    configure a queue may also delete it: with `own`, no stage may delete another's input."""

    own: tuple[str, ...]
    others: tuple[str, ...]


def following_queue(queue: str) -> str | None:
    """The queue after `queue` in the pipeline, if it is one of the pipeline's stages."""
    if queue in STAGES:
        return PIPELINE_QUEUES[PIPELINE_QUEUES.index(queue) + 1]
    return None


def stages_before(queue: str) -> tuple[str, ...] | None:
    """The stages a message has passed, in order, when it arrives in `queue` (none for the first
    stage, all for the sink); None for a queue outside the pipeline, which takes any history."""
    if queue in PIPELINE_QUEUES:
        return STAGES[: PIPELINE_QUEUES.index(queue)]
    return None


def input_queues(queue: str, settings: BrokerSettings) -> tuple[str, ...]:
    """The queues a consumer of `queue` reads: the queue itself, or its partitions."""
    if settings.ordering == "keyed":
        return tuple(f"{queue}.{index}" for index in range(settings.partitions))
    return (queue,)


def every_input(settings: BrokerSettings) -> tuple[str, ...]:
    """The queues every consumer of the pipeline reads, in the pipeline's order (partitions in
    keyed mode): what a deployment declares, watches and drains."""
    return tuple(name for queue in PIPELINE_QUEUES for name in input_queues(queue, settings))


def partition_of(key: str, partitions: int) -> int:
    """The partition of `key`: CRC-32 is stable across processes, machines and versions (unlike
    Python's `hash`), and spreads short keys evenly."""
    return zlib.crc32(key.encode()) % partitions


def route(queue: str, key: str, settings: BrokerSettings) -> str:
    """The queue a message with `key` goes to, when it is published to `queue`."""
    if settings.ordering == "keyed":
        return f"{queue}.{partition_of(key, settings.partitions)}"
    return queue


def consumer_priority(identity: str, queue: str) -> int:
    """A replica's consumer priority on a partition: its rendezvous-hash score. Each replica of a
    stage computes its own; the broker makes the highest one active, so partitions spread over
    the replicas, and a replica's loss moves only its own partitions."""
    return zlib.crc32(f"{identity}|{queue}".encode()) % PRIORITY_RANGE


def work_queue_arguments(settings: BrokerSettings) -> dict[str, object]:
    """A queue whose rejected (or, for quorum, too often redelivered) messages are dead-lettered."""
    arguments: dict[str, object] = {
        "x-queue-type": settings.queue_type,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": settings.dead_letter_queue,
    }
    if settings.queue_type == "quorum":
        # The broker's backstop: a message whose handling kills the process over and over is
        # dead-lettered after this many deliveries instead of looping for ever.
        arguments["x-delivery-limit"] = settings.delivery_limit
    if settings.ordering == "keyed":
        # One consumer at a time per partition: the others wait, and take over if it goes.
        arguments["x-single-active-consumer"] = True
    return arguments


def dead_letter_queue_arguments(settings: BrokerSettings) -> dict[str, object]:
    return {"x-queue-type": settings.queue_type}


def queue_arguments(name: str, settings: BrokerSettings) -> dict[str, object]:
    if name == settings.dead_letter_queue:
        return dead_letter_queue_arguments(settings)
    return work_queue_arguments(settings)
