"""`python -m service`: one pipeline stage, RABBITMQ_QUEUE in, RABBITMQ_NEXT_QUEUE out."""

from __future__ import annotations

import logging

from common import tracing
from common.consumer import Consumer, ConsumerSettings
from common.main import run, serve
from common.metrics import consumer_metrics
from common.progress import Progress, SettledProgress, progress_interval
from common.settings import BrokerSettings, Env, SettingsError
from common.topology import following_queue
from service.work import Stage, WorkSettings


def main(env: Env) -> int:
    broker = BrokerSettings.from_env(env)
    consumer_settings = ConsumerSettings.from_env(
        env, broker, default_queue="service_a", default_workers=10
    )
    next_queue = env.queue_name(
        "RABBITMQ_NEXT_QUEUE", following_queue(consumer_settings.queue) or ""
    )
    if next_queue in ("", consumer_settings.queue):
        raise SettingsError(
            "RABBITMQ_NEXT_QUEUE", next_queue, "a queue other than RABBITMQ_QUEUE must be set"
        )
    stage = Stage(WorkSettings.from_env(env, consumer_settings.queue))
    progress = Progress(logging.getLogger("service"), progress_interval(env), expected=None)
    traces = tracing.for_consumer(env, broker, consumer_settings.queue, next_queue)
    observers = (
        SettledProgress(progress),
        *consumer_metrics(env, consumer_settings.queue),
        *traces.observers,
    )
    consumer = Consumer(
        broker, consumer_settings, stage, next_queue, observers=observers, pool=traces.pool
    )
    serve(consumer)
    return 0


if __name__ == "__main__":
    run(main)
