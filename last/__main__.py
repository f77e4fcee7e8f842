"""`python -m last`: the end of the pipeline. Keeps and logs each finished message once
(`last.sink`), in the store `last.store` opens, and stops after EXPECTED_MESSAGES if set."""

from __future__ import annotations

import logging

from common.consumer import Consumer, ConsumerSettings
from common.main import run, serve
from common.progress import Progress, progress_interval
from common.settings import BrokerSettings, Env
from last.sink import Sink, open_results
from last.store import StoreRefused, StoreSettings, open_store

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
    try:
        store = open_store(store_settings)
    except StoreRefused as error:
        log.error(str(error))
        return 1
    with open_results(results_path) as results:
        sink = Sink(store, expected, progress, results)
        sink.consumer = Consumer(broker, settings, sink)
        serve(sink.consumer)
        sink.log_summary()
    return 0


if __name__ == "__main__":
    run(main)
