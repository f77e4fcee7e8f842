"""`python -m http_pipeline.last`: the end of the HTTP chain, writing the broker `last`'s records.

It runs the broker pipeline's own `Sink`, with the same store (STORE_URL, or ids in memory), so
a message it is sent gives the same `completed` record (or `duplicate`, for an id it has
recorded before) in its log and in RESULTS_FILE, and `python -m tools.report` reads either
pipeline's. It answers 200 only once the record is kept. The summary is written when it stops.
"""

from __future__ import annotations

import contextlib
import logging
import time

from common.main import run
from common.messages import Message
from common.progress import Progress, progress_interval
from common.settings import Env
from http_pipeline.app import MessagesApp, Reply
from http_pipeline.server import serve
from http_pipeline.settings import ServerSettings
from last.sink import Sink, open_results
from last.store_settings import StoreSettings
from last.stores import open_store

log = logging.getLogger("last")


class SinkHandler:
    def __init__(self, sink: Sink, resources: contextlib.ExitStack) -> None:
        self._sink = sink
        self._resources = resources

    def __call__(self, message: Message, deadline: float) -> Reply:
        try:
            self._sink(message).result(timeout=max(0.0, deadline - time.time()))
        except TimeoutError:
            return Reply.error(504, "the store did not answer before the deadline")
        return Reply(200, {"status": "recorded"})

    def close(self) -> None:
        self._sink.log_summary()
        self._resources.close()


def load(env: Env) -> MessagesApp:
    """The app, in each server worker: the store, RESULTS_FILE, the Sink on them."""
    settings = ServerSettings.from_env(env)
    resources = contextlib.ExitStack()
    results = resources.enter_context(open_results(env.text("RESULTS_FILE", "", max_length=4096)))
    progress = Progress(log, progress_interval(env), None)
    # A bug in the store's writer fails every request after it (500), its traceback logged once.
    store = resources.enter_context(open_store(StoreSettings.from_env(env), lambda _error: None))
    sink = Sink(store, 0, progress, results)
    return MessagesApp("last", SinkHandler(sink, resources), settings.timeout)


def main(env: Env) -> int:
    settings = ServerSettings.from_env(env)
    StoreSettings.from_env(env)  # bad settings stop it here, in one line, before the server
    with open_results(env.text("RESULTS_FILE", "", max_length=4096)):
        pass
    serve("last", env, settings, lambda: load(env))
    return 0


if __name__ == "__main__":
    run(main)
