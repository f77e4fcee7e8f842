"""What a consumer is told by its environment: its queue, its threads, its share of the broker."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from common.settings import BrokerSettings, Env, SettingsError


@dataclass(frozen=True)
class ConsumerSettings:
    queue: str
    workers: int
    prefetch: int
    drain_timeout: float
    replica_id: str = ""  # this replica of the stage, among others: its connection name, and
    # (keyed mode) what its consumer priorities hash; the host name and process id by default
    accept_from: str = ""  # the one user whose messages are taken, "" any (consumer.senders)

    @classmethod
    def from_env(
        cls, env: Env, broker: BrokerSettings, *, default_queue: str, default_workers: int
    ) -> ConsumerSettings:
        queue = env.queue_name("RABBITMQ_QUEUE", default_queue)
        if queue == broker.dead_letter_queue:
            raise SettingsError(
                "RABBITMQ_QUEUE", queue, "a queue other than DEAD_LETTER_QUEUE (it would loop)"
            )
        return cls(
            queue=queue,
            workers=env.integer("WORKERS", default_workers, minimum=1, maximum=256),
            # Unacked messages the broker lets this process hold: those being worked on, those
            # waiting for a worker, and those whose output awaits its confirm.
            prefetch=env.integer("PREFETCH", 100, minimum=1, maximum=65535),
            drain_timeout=env.number("DRAIN_TIMEOUT", 20.0, minimum=0.0, maximum=3600.0),
            replica_id=env.text("REPLICA_ID", f"{socket.gethostname()}/{os.getpid()}"),
            accept_from=env.text("ACCEPT_FROM", ""),
        )
