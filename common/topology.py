"""The queues of the pipeline and the arguments they are declared with.

Every process declares the queues it reads or writes, so start-up order does not matter and a
message is never published to a queue that does not exist yet. Declaring is idempotent as long
as the arguments match; a queue left over with other arguments (say, classic where quorum is
configured) is reported as a clear start-up error instead of being silently used.
"""

from __future__ import annotations

from common.settings import BrokerSettings

STAGES = ("service_a", "service_b", "service_c")  # the services, in the order a message meets them
SINK_QUEUE = "service_log"  # what `last` consumes: the history of a message that went through all
PIPELINE_QUEUES = (*STAGES, SINK_QUEUE)


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
    return arguments


def dead_letter_queue_arguments(settings: BrokerSettings) -> dict[str, object]:
    return {"x-queue-type": settings.queue_type}


def queue_arguments(name: str, settings: BrokerSettings) -> dict[str, object]:
    if name == settings.dead_letter_queue:
        return dead_letter_queue_arguments(settings)
    return work_queue_arguments(settings)
