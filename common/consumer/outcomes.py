"""What travels between the I/O thread and the workers: a delivery, and what became of it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import pika

from common.messages import Message

Result = Message | None
# A handler's answer: the output (None: the message ends here), or, for a handler that waits on
# something outside (a store), a Future of it, so that no worker thread waits along with it.
Handler = Callable[[Message], Result | Future[Result]]


@dataclass(eq=False)
class Delivery:
    """One message the broker sent on one channel: `generation` names that channel's life,
    since a delivery tag means nothing (or something else) on the next channel."""

    generation: int
    tag: int
    redelivered: bool
    properties: pika.BasicProperties
    body: bytes


@dataclass(frozen=True)
class Forward:
    """The output, already encoded and routed by the worker: the I/O thread only sends it."""

    routing_key: str
    body: bytes
    properties: pika.BasicProperties


@dataclass(frozen=True)
class Done:
    """The message ends here: ack it."""


@dataclass(frozen=True)
class DeadLetter:
    """The message can never be processed: dead-letter it with the reason, then ack it."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """The work failed, perhaps for now: the ordering policy decides what comes next."""

    reason: str


Outcome = Forward | Done | DeadLetter | Failed
