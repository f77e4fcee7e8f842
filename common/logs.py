"""Logging set-up: one record per line, JSON by default (python-json-logger's, encoded with
orjson, as the messages are: `common.messages`), plain text on request.

Structured fields go in `extra={...}`; both formats show them. pika's own loggers are quiet
unless LOG_LEVEL=DEBUG, so that a broker outage gives our one line per attempt, not pika's
tracebacks.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.orjson import OrjsonFormatter

from common.settings import LogSettings

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
        if extras:
            line += " " + " ".join(f"{key}={value}" for key, value in extras.items())
        return line


def setup_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stdout)
    if settings.format == "json":
        handler.setFormatter(  # orjson: `last` writes a record per message
            OrjsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    pika_level = logging.DEBUG if settings.level == "DEBUG" else logging.CRITICAL
    logging.getLogger("pika").setLevel(pika_level)
    # The one pika record always worth a line: the traceback of an exception raised in one of
    # our callbacks, which pika otherwise turns into a mere "stream lost".
    callback_errors = logging.getLogger("pika.adapters.utils.io_services_utils")
    callback_errors.setLevel(min(pika_level, logging.ERROR))
    callback_errors.filters[:] = [] if settings.level == "DEBUG" else [_CallbackErrors()]


class _CallbackErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.ERROR or str(record.msg).startswith(
            "protocol.data_received() failed"
        )
