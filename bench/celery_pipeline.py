"""Contender: a Celery chain of three tasks and a sink task, on the same broker.

Each task is routed to a queue of its own, consumed by a worker process of its own
(`celery worker -Q QUEUE --pool threads --concurrency 10`, as this project's 10 threads).
`chain(service_a.s(msg), service_b.s(), service_c.s(), service_log.s())`: the worker running a task
publishes the next one of the chain, then acks (`task_acks_late`). Publisher confirms are on
(`confirm_publish`), messages persistent, queues quorum (Celery detects them and drops global
QoS); prefetch 10 x 10 = 100; no result backend; worker logging at WARNING (no line per task).
The publisher runs 8 threads, so 8 `apply_async` calls await their confirm at a time.

    python -m bench.celery_pipeline stage service_a | sink | publish N RATE
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from celery import Celery, Task, chain
from kombu import Exchange, Queue

from bench import wire
from common.topology import PIPELINE_QUEUES, SINK_QUEUE

THREADS = 10
PUBLISHER_THREADS = 8

app = Celery("bench", broker=os.environ.get("BENCH_AMQP_URL", "amqp://"), set_as_current=True)
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    task_default_delivery_mode="persistent",
    task_queues=[
        Queue(
            name,
            Exchange(name, type="direct", durable=True),
            routing_key=name,
            durable=True,
            queue_arguments={"x-queue-type": wire.queue_type()},
        )
        for name in PIPELINE_QUEUES
    ],
    task_routes={f"bench.{name}": {"queue": name, "routing_key": name} for name in PIPELINE_QUEUES},
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=wire.PREFETCH // THREADS,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=True,
)


def _task(queue: str, function: Callable[[wire.Payload], Any]) -> Task:
    return app.task(name=f"bench.{queue}")(function)


STEPS = wire.pipeline_steps(_task)  # service_a, service_b, service_c, then the sink's


def send(message: wire.Payload) -> None:
    first, *rest = STEPS
    chain(first.s(message), *(step.s() for step in rest)).apply_async()


def worker(queue: str) -> None:
    argv = [sys.executable, "-m", "celery", "-A", "bench.celery_pipeline", "worker"]
    argv += ["-Q", queue, "--pool", "threads", "--concurrency", str(THREADS)]
    argv += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
    argv += ["--without-heartbeat", "--hostname", f"{queue}@%h"]
    os.execv(sys.executable, argv)


def publish(messages: int, rate: float) -> None:
    wire.publish_in_threads(messages, rate, PUBLISHER_THREADS, send)


if __name__ == "__main__":
    wire.main(__doc__, stage=worker, sink=lambda: worker(SINK_QUEUE), publish=publish)
