"""`python -m last`: the end of the pipeline. Keeps and logs each finished message once
(`last.sink`), in the store `last.stores` opens, and stops after EXPECTED_MESSAGES if set.

The store is opened before the consumer and closed after it has drained, so that what the
consumer finished is written; a bug in the store's writer stops the consumer and ends the
process with exit code 1 (its traceback logged once, by the writer)."""

from __future__ import annotations

import logging

from common import tracing
from common.consumer import Consumer, ConsumerSettings
from common.main import run, serve
from common.progress import Progress, progress_interval
from common.settings import BrokerSettings, Env
from last.metrics import sink_metrics
from last.sink import Sink, open_results
from last.store import StoreRefused
from last.store_settings import StoreSettings
from last.stores import open_store

log = logging.getLogger("last")


def main(env: Env) -> int:
    broker = BrokerSettings.from_env(env)
    store_settings = StoreSettings.from_env(env)
    settings = ConsumerSettings.from_env(
        env, broker, default_queue="service_log", default_workers=1
    )
    expected = env.integer("EXPECTED_MESSAGES", 0, minimum=0, maximum=10**9)
    progress = Progress(log, progress_interval(env), expected or None)
    results_path = env.text("RESULTS_FILE", "", max_length=4096)
    failures: list[BaseException] = []
    consumer: Consumer | None = None
    observers, metrics = sink_metrics(env)
    traces = tracing.for_consumer(env, broker, settings.queue, process="last")
    # The store write as a CLIENT span: Redis's, or the process's own memory without STORE_URL.
    store_spans = traces.client(
        "store write", {"db.system.name": "redis"} if store_settings.url else {}
    )

    def store_failed(error: BaseException) -> None:
        failures.append(error)
        if consumer is not None:
            consumer.request_stop()

    try:
        with (
            open_results(results_path) as results,
            open_store(store_settings, store_failed, metrics) as store,
        ):
            sink = Sink(store, expected, progress, results, metrics, store_spans=store_spans)
            consumer = sink.consumer = Consumer(
                broker, settings, sink, observers=(*observers, *traces.observers), pool=traces.pool
            )
            serve(consumer)
            sink.log_summary()
    except StoreRefused as error:
        log.error(str(error))
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    run(main)
