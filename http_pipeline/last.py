"""`python -m http_pipeline.last`: the end of the HTTP chain, writing the broker `last`'s records.

It runs the broker pipeline's own `Sink`, so a message it is sent gives the same `completed`
record (or `duplicate`, for an id it has recorded before) in its log and in RESULTS_FILE, and
`python -m tools.report` reads either pipeline's. The summary is written when it stops.
"""

from __future__ import annotations

import contextlib
import logging

from common.main import run
from common.messages import Message
from common.progress import Progress, progress_interval
from common.settings import Env
from http_pipeline.app import MessagesApp, Reply
from http_pipeline.server import serve
from http_pipeline.settings import ServerSettings
from last.sink import Sink, open_results

log = logging.getLogger("last")


class SinkHandler:
    def __init__(self, sink: Sink, resources: contextlib.ExitStack) -> None:
        self._sink = sink
        self._resources = resources

    def __call__(self, message: Message, deadline: float) -> Reply:
        self._sink(message)
        return Reply(200, {"status": "recorded"})

    def close(self) -> None:
        self._sink.log_summary()
        self._resources.close()


def main(env: Env) -> int:
    settings = ServerSettings.from_env(env)
    interval = progress_interval(env)
    results_path = env.text("RESULTS_FILE", "", max_length=4096)
    with open_results(results_path):  # a file that cannot be written stops it here, in one line
        pass

    def load() -> MessagesApp:
        resources = contextlib.ExitStack()
        results = resources.enter_context(open_results(results_path))
        sink = Sink(0, Progress(log, interval, None), results)
        return MessagesApp("last", SinkHandler(sink, resources), settings.timeout)

    serve("last", env, settings, load)
    return 0


if __name__ == "__main__":
    run(main)
