"""`python -m http_pipeline.first`: POST NUMBER_OF_MESSAGES messages to NEXT_URL (service_a).

The same `["seq-N"]` messages as the broker pipeline's `first`, offered at PUBLISH_RATE (0: as
fast as the window allows), each sent on a thread of its own so that a slow answer does not
hold up the next message; at most MAX_IN_FLIGHT wait for their answer at a time, the window of
the broker `first`'s unconfirmed messages. A message is accepted when service_a answers 200,
which in this synchronous chain means `last` has it; it fails when its deadline (HTTP_TIMEOUT
after it was created) passes first, or a stage refuses it: one `message failed` record each.
Exit code 0 when every message was accepted, 1 otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from common.main import run, serve
from common.messages import Message
from common.progress import Progress
from common.settings import Env
from common.topology import STAGES
from first.flood import FloodSettings
from http_pipeline.client import NextHop
from http_pipeline.settings import http_timeout, next_url

log = logging.getLogger("first")

# Messages awaiting their answer at most, as the broker `first`'s window of unconfirmed ones.
MAX_IN_FLIGHT = 1000


@dataclass(frozen=True)
class SendSettings:
    flood: FloodSettings  # NUMBER_OF_MESSAGES, PUBLISH_RATE, RUN_ID, PROGRESS_INTERVAL
    next_url: str
    timeout: float
    max_in_flight: int

    @classmethod
    def from_env(cls, env: Env) -> SendSettings:
        return cls(
            flood=FloodSettings.from_env(env),
            next_url=next_url(env, f"the first stage ({STAGES[0]})"),
            timeout=http_timeout(env),
            max_in_flight=env.integer("MAX_IN_FLIGHT", MAX_IN_FLIGHT, minimum=1, maximum=10_000),
        )


class Sender:
    def __init__(self, settings: SendSettings) -> None:
        self._settings = settings
        self._hop = NextHop(settings.next_url, settings.max_in_flight)
        self._window = threading.BoundedSemaphore(settings.max_in_flight)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.accepted = 0
        self.failed = 0
        flood = settings.flood
        self._progress = Progress(log, flood.progress_interval, flood.number_of_messages)

    @property
    def url(self) -> str:
        return self._settings.next_url

    @property
    def unsent(self) -> int:
        return self._settings.flood.number_of_messages - self.accepted - self.failed

    def run(self) -> None:
        flood = self._settings.flood
        log.info(
            "sending",
            extra={
                "run_id": flood.run_id,
                "messages": flood.number_of_messages,
                "url": self._settings.next_url,
            },
        )
        started = time.monotonic()
        with ThreadPoolExecutor(self._settings.max_in_flight, thread_name_prefix="send") as pool:
            for seq in range(1, flood.number_of_messages + 1):
                if flood.publish_rate:
                    due = started + (seq - 1) / flood.publish_rate
                    if self._stopping.wait(max(0.0, due - time.monotonic())):
                        break
                while not self._window.acquire(timeout=0.5):
                    if self._stopping.is_set():
                        break
                if self._stopping.is_set():
                    break
                pool.submit(self._send, seq)
        self._hop.close()
        log.info("sent", extra=self.counts())

    def request_stop(self) -> None:
        self._stopping.set()

    def _send(self, seq: int) -> None:
        try:
            flood = self._settings.flood
            message = Message.first(seq, time.time(), flood.run_id, flood.key_for(seq))
            outcome = self._hop.deliver(
                message, message.data["created_at"] + self._settings.timeout
            )
            with self._lock:
                if outcome.ok:
                    self.accepted += 1
                else:
                    self.failed += 1
                self._progress.update(self.accepted, failed=self.failed)
            if not outcome.ok:
                log.error(
                    "message failed",
                    extra={
                        "seq": message.history[0],
                        "broker_message_id": message.message_id,
                        "reason": outcome.reason,
                        "status": outcome.status,
                        "attempts": outcome.attempts,
                    },
                )
        finally:
            self._window.release()

    def counts(self) -> dict[str, object]:
        return {
            "run_id": self._settings.flood.run_id,
            "accepted": self.accepted,
            "failed": self.failed,
            "total": self._settings.flood.number_of_messages,
        }


def main(env: Env) -> int:
    sender = Sender(SendSettings.from_env(env))
    serve(sender)
    if sender.failed or sender.unsent:
        log.error(
            f"{sender.failed + sender.unsent} messages were not accepted by {sender.url}",
            extra=sender.counts(),
        )
        return 1
    return 0


if __name__ == "__main__":
    run(main)
