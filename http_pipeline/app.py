"""The WSGI application every HTTP stage and `last` runs: one route, POST /messages.

Status codes, and what the caller does with them (see `client`):
- 200: handled (`{"status": "done"}`), or handled before (`{"status": "duplicate"}`);
- 400: a message or header it cannot use, with the reason: final;
- 409: the same message is being handled right now (a repeated call): ask again shortly;
- 502: the next stage could not be reached or refused it, after retries: final;
- 504: the deadline passed before the work began: final, and no work was done.
`GET /health` answers 200 once the process serves (the compose healthcheck asks it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from common.messages import CONTENT_TYPE, InvalidMessage, Message
from http_pipeline import wire

log = logging.getLogger("http")

PATH = "/messages"
HEALTH_PATH = "/health"
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}

StartResponse = Callable[[str, list[tuple[str, str]]], object]


@dataclass(frozen=True)
class Reply:
    status: int
    fields: dict[str, object]

    @classmethod
    def error(cls, status: int, reason: str) -> Reply:
        return cls(status, {"error": reason})


class Handler(Protocol):
    """What a stage or `last` does with a valid message before its caller's deadline."""

    def __call__(self, message: Message, deadline: float) -> Reply: ...

    def close(self) -> None: ...


class MessagesApp:
    def __init__(self, name: str, handler: Handler, default_timeout: float) -> None:
        self.name = name
        self.handler = handler
        self.default_timeout = default_timeout

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        reply = self.route(environ)
        body = json.dumps(reply.fields, separators=(",", ":")).encode()
        headers = [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))]
        start_response(f"{reply.status} {REASONS[reply.status]}", headers)
        return [body]

    def close(self) -> None:
        self.handler.close()

    def route(self, environ: dict) -> Reply:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            return Reply(200, {"status": "serving", "name": self.name})
        if path != PATH:
            return Reply.error(404, f"no such path: POST messages to {PATH}")
        if method != "POST":
            return Reply.error(405, f"{method} is not allowed: POST messages to {PATH}")
        return self.receive(environ)

    def receive(self, environ: dict) -> Reply:
        length = environ.get("CONTENT_LENGTH") or ""
        if not length.isdigit():
            return Reply.error(411, "a Content-Length header is required")
        if int(length) > wire.MAX_REQUEST_BYTES:
            return Reply.error(413, f"request body over {wire.MAX_REQUEST_BYTES} bytes")
        body = environ["wsgi.input"].read(int(length))
        try:
            message = wire.decode(body)
            key = environ.get("HTTP_IDEMPOTENCY_KEY")
            if key != message.message_id:
                raise InvalidMessage(f"header {wire.IDEMPOTENCY_KEY} must be the message_id")
            deadline = wire.deadline(
                environ.get("HTTP_REQUEST_DEADLINE"), time.time() + self.default_timeout
            )
        except InvalidMessage as error:
            log.warning("message refused", extra={"reason": str(error)})
            return Reply.error(400, str(error))
        try:
            return self.handler(message, deadline)
        except Exception as error:
            log.error(
                "processing failed",
                extra={"seq": message.history[0], "error": f"{type(error).__name__}: {error}"},
            )
            return Reply.error(500, f"{self.name} failed: {type(error).__name__}: {error}")
