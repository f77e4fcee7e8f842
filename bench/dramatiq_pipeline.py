"""Contender: Dramatiq (pika underneath, worker threads, ack after processing).

Three actors and a sink actor, each on its own queue and in its own worker process
(`dramatiq bench.dramatiq_pipeline --processes 1 --threads 10 --queues QUEUE`), chained with
`dramatiq.pipeline`: the Pipelines middleware enqueues the next message with the actor's
result, then the worker acks the input. `confirm_delivery=True`, so every enqueue waits for the
broker's confirm (Dramatiq publishes through a `BlockingConnection` per thread). Queues are
declared quorum by a small subclass of `RabbitmqBroker` (Dramatiq has no option for it); its
delay (`.DQ`) queues follow, its dead-letter (`.XQ`) queues stay classic. Prefetch is Dramatiq's
own: 2 x threads. The publisher runs 8 threads, so 8 enqueues await their confirm at a time.

    python -m bench.dramatiq_pipeline stage service_a | sink | publish N RATE
"""

from __future__ import annotations

import os
import sys
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench import wire
from common.topology import SINK_QUEUE

THREADS = 10
PUBLISHER_THREADS = 8


class QuorumRabbitmqBroker(RabbitmqBroker):
    """RabbitmqBroker whose work queues are of BENCH_QUEUE_TYPE (quorum by default)."""

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments = super()._build_queue_arguments(queue_name)
        arguments["x-queue-type"] = wire.queue_type()
        return arguments


broker = QuorumRabbitmqBroker(url=wire.amqp_url(), confirm_delivery=True)
dramatiq.set_broker(broker)
STEPS = wire.pipeline_steps(  # service_a, service_b, service_c, then the sink's
    lambda queue, function: dramatiq.actor(function, actor_name=queue, queue_name=queue)
)


def send(message: wire.Payload) -> None:
    first, *rest = STEPS
    dramatiq.pipeline([first.message(message), *(step.message() for step in rest)]).run()


def worker(queue: str) -> None:
    argv = [sys.executable, "-m", "dramatiq", "bench.dramatiq_pipeline"]
    argv += ["--processes", "1", "--threads", str(THREADS), "--queues", queue]
    os.execv(sys.executable, argv)


def publish(messages: int, rate: float) -> None:
    wire.publish_in_threads(messages, rate, PUBLISHER_THREADS, send)
    broker.close()


if __name__ == "__main__":
    wire.main(__doc__, stage=worker, sink=lambda: worker(SINK_QUEUE), publish=publish)
