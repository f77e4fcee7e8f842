"""Serving a `MessagesApp` with gunicorn's threaded worker, configured here rather than on a
command line, so that every setting is checked like the broker pipeline's and the choices are
written down once:

- one worker process with WORKERS threads (10): the concurrency of a broker stage, and one
  process, so the stage's idempotency keys are in one memory;
- an explicit accept backlog and connection limit: past `WORKER_CONNECTIONS` callers wait in
  the kernel's backlog; past that their connections time out;
- SIGTERM: stop accepting, finish the calls in hand within DRAIN_TIMEOUT, exit 0 (as a broker
  stage drains); gunicorn's own lines go through this project's logging, one record per line.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from common.settings import Env, LogSettings
from http_pipeline.app import MessagesApp
from http_pipeline.settings import ServerSettings

log = logging.getLogger("http")

BACKLOG = 2048  # connections the kernel holds for the worker to accept (gunicorn's default)
WORKER_CONNECTIONS = 1000  # open connections at most; callers keep theirs alive between calls
KEEPALIVE = 75  # seconds an idle connection stays open: callers reuse theirs across pauses
WORKER_TIMEOUT = 30  # seconds without a heartbeat from the worker's main loop before a restart


class ProjectLogs(glogging.Logger):
    """gunicorn's own records, handed to the root logger that `common.logs` set up."""

    def setup(self, cfg: object) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True


class Server(BaseApplication):
    def __init__(self, load: Callable[[], MessagesApp], options: dict[str, object]) -> None:
        self._load = load
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> MessagesApp:
        return self._load()


def serve(
    name: str,
    env: Env,
    settings: ServerSettings,
    load: Callable[[], MessagesApp],
    **facts: object,
) -> None:
    """Serve the app that `load` makes (in the worker process) until SIGTERM; log `serving`
    with `facts` once it takes calls, and close the app when the worker stops."""

    def serving(worker: object) -> None:
        log.info(
            "serving",
            extra={"stage": name, "bind": settings.bind, "workers": settings.workers, **facts},
        )

    def worker_exit(_arbiter: object, worker: object) -> None:
        app = getattr(worker, "wsgi", None)
        if isinstance(app, MessagesApp):
            app.close()

    options = {
        "bind": [settings.bind],
        "workers": 1,
        "worker_class": "gthread",
        "threads": settings.workers,
        "backlog": BACKLOG,
        "worker_connections": WORKER_CONNECTIONS,
        "keepalive": KEEPALIVE,
        "timeout": WORKER_TIMEOUT,
        "graceful_timeout": math.ceil(settings.drain_timeout),  # gunicorn takes whole seconds
        "proc_name": name,
        "logger_class": ProjectLogs,
        # Its path is one per user by default: several servers on a machine would share it.
        "control_socket_disable": True,
        "loglevel": LogSettings.from_env(env).level.lower(),
        "post_worker_init": serving,
        "worker_exit": worker_exit,
    }
    Server(load, options).run()
