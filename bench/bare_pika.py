"""What the two bare-pika contenders (`bench.ceiling`, `bench.seed`) share: their messages'
properties, and their sink's callback, the same for a `BlockingConnection` and a
`SelectConnection` (pika calls both with the same arguments)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pika
from pika.channel import Channel

from bench import wire

PERSISTENT = pika.BasicProperties(
    content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent
)

OnMessage = Callable[[Channel, pika.spec.Basic.Deliver, pika.BasicProperties, bytes], None]


def recording(recorder: wire.Recorder) -> OnMessage:
    """A consumer callback that records each message (`wire.Recorder`), then acks it."""

    def on_message(
        channel: Channel, method: pika.spec.Basic.Deliver, _props: object, body: bytes
    ) -> None:
        recorder.record(json.loads(body))
        channel.basic_ack(method.delivery_tag)

    return on_message
