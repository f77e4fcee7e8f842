"""`python -m last`: the end of the pipeline. Logs each finished message's history, once."""

from __future__ import annotations

import logging
import threading
import time

from common.consumer import Consumer, ConsumerSettings
from common.main import run, serve
from common.messages import Message
from common.settings import BrokerSettings, Env
from last.tally import Tally

log = logging.getLogger("last")


class Sink:
    """The handler: log the message, count it, and stop after EXPECTED_MESSAGES if that is set."""

    def __init__(self, expected: int) -> None:
        self._expected = expected
        self._tally = Tally()
        self._lock = threading.Lock()
        self.consumer: Consumer | None = None

    def __call__(self, message: Message) -> None:
        completed_at = time.time()
        data = {**message.data, "completed_at": completed_at}
        record = {
            "history": list(message.history),
            "broker_message_id": message.message_id,
            "data": data,
        }
        with self._lock:
            is_new = self._tally.record(message, completed_at)
            done = is_new and self._tally.completed == self._expected
        log.info("completed" if is_new else "duplicate", extra=record)
        if done and self.consumer is not None:
            self.consumer.request_stop()

    def log_summary(self) -> None:
        with self._lock:
            log.info("summary", extra=self._tally.summary())


def main(env: Env) -> int:
    broker = BrokerSettings.from_env(env)
    settings = ConsumerSettings.from_env(env, default_queue="service_log", default_workers=1)
    expected = env.integer("EXPECTED_MESSAGES", 0, minimum=0, maximum=10**9)
    sink = Sink(expected)
    sink.consumer = Consumer(broker, settings, sink)
    serve(sink.consumer)
    sink.log_summary()
    return 0


if __name__ == "__main__":
    run(main)
