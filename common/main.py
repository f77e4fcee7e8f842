"""The entry point every process shares: settings, logging, signals and exit codes, and the
process-wide set-up the libraries leave to it.

Importing the runtime changes nothing outside it: whatever is global to a process is done here,
when it starts. `run()` makes pika's header decoding tolerant (`common.frames.install`: a hostile
header must cost one dead letter, not the connection), and `serve()` sets the thread switch
interval and the signal handlers. At the end, `run()` flushes the spans still queued, if the
process exports traces (`common.tracing`): a graceful stop (SIGTERM) loses none.

Exit codes: 0 done, 1 the run failed (broker unusable, messages not confirmed), 2 a bad setting.
Every failure a user can cause ends in one line, not a traceback. The libraries' lines speak of
their own settings; what only a deployment knows (the compose service to start) is added here.

The broker I/O runs on its own thread while the main thread only waits, so a signal handler
(which Python always runs on the main thread) never interrupts pika half-way through a call.
SIGTERM or SIGINT asks for a graceful stop; a second one ends the process at once (the broker
redelivers whatever was not acked).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn, Protocol

from common import frames, tracing
from common.connection import BrokerError, BrokerUnreachable
from common.logs import setup_logging
from common.settings import Env, LogSettings, SettingsError

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.001  # seconds
# The broker most often does not answer because it was not started: the compose file's service.
UNREACHABLE_HINT = "with Docker Compose: `docker compose up -d rabbitmq`"


class Stoppable(Protocol):
    def run(self) -> None: ...

    def request_stop(self) -> None: ...


def serve(runner: Stoppable) -> None:
    """Run `runner.run()` on an I/O thread until it returns; signals ask it to stop."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            runner.run()
        except BaseException as error:
            failure.append(error)

    def on_signal(signum: int, _frame: object) -> None:
        if stop_requested.is_set():
            log.warning("second stop signal: exiting now")
            os._exit(1)
        stop_requested.set()
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        runner.request_stop()

    # The I/O thread and the workers hand each message back and forth; the default 5 ms before
    # a thread that wants the GIL may take it from a busy one adds up over four hops.
    sys.setswitchinterval(SWITCH_INTERVAL)
    stop_requested = threading.Event()
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=target, name="amqp-io")
    thread.start()
    try:
        thread.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure:
        raise failure[0]


def run(main: Callable[[Env], int]) -> NoReturn:
    """Call `main(env)` and exit with its code, turning expected failures into one line."""
    frames.install()  # before any frame is decoded
    env = Env()
    try:
        setup_logging(LogSettings.from_env(env))
        code = main(env)
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        code = 2
    except BrokerUnreachable as error:
        log.error(f"{error} ({UNREACHABLE_HINT})")
        code = 1
    except BrokerError as error:
        log.error(str(error))
        code = 1
    tracing.shutdown()  # the spans still queued, flushed (bounded: see common.tracing.provider)
    logging.shutdown()
    sys.exit(code)
