"""Contender: the broker's ceiling on this machine, one hop and no pipeline logic.

A bare pika `SelectConnection` publisher streams persistent messages with publisher confirms
(at most 1,000 unconfirmed, as `first`) into one queue; a bare `SelectConnection` consumer
(prefetch 100) acks each message and records it. Nothing else: no validation, no threads, no
republishing. A pipeline of 4 hops on the same broker cannot beat a quarter of this rate.

    python -m bench.ceiling sink | publish N RATE
"""

from __future__ import annotations

import json
import sys

import pika
from pika.channel import Channel

from bench import bare_pika, wire
from common.topology import STAGES

QUEUE = STAGES[0]
WINDOW = 1000


def _connect(on_channel: object) -> pika.SelectConnection:
    def on_open(connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=declare)

    def declare(channel: Channel) -> None:
        channel.queue_declare(
            QUEUE,
            durable=True,
            arguments={"x-queue-type": wire.queue_type()},
            callback=lambda _frame: on_channel(channel),
        )

    return pika.SelectConnection(
        pika.URLParameters(wire.amqp_url()),
        on_open_callback=on_open,
        on_close_callback=lambda connection, _reason: connection.ioloop.stop(),
    )


def sink() -> None:
    on_message = bare_pika.recording(wire.Recorder())

    def consume(channel: Channel) -> None:
        channel.basic_qos(
            prefetch_count=wire.prefetch(),
            callback=lambda _frame: channel.basic_consume(QUEUE, on_message),
        )

    _connect(consume).ioloop.start()


def publish(messages: int, rate: float) -> None:
    pacer = wire.Pacer(rate)
    state = {"sent": 0, "confirmed": 0, "scheduled": False}

    def pump(channel: Channel) -> None:
        state["scheduled"] = False
        while state["sent"] < messages and state["sent"] - state["confirmed"] < WINDOW:
            delay = pacer.delay(state["sent"])
            if delay:
                state["scheduled"] = True
                channel.connection.ioloop.call_later(delay, lambda: pump(channel))
                return
            state["sent"] += 1
            body = json.dumps(wire.new_message(state["sent"])).encode()
            channel.basic_publish("", QUEUE, body, bare_pika.PERSISTENT)

    def start(channel: Channel) -> None:
        acked: list[int] = [0]  # highest delivery tag confirmed

        def on_confirm(frame: pika.frame.Method) -> None:
            method = frame.method
            if not isinstance(method, pika.spec.Basic.Ack):
                sys.exit(f"nacked: {method}")
            tag = method.delivery_tag
            state["confirmed"] += tag - acked[0] if method.multiple else 1
            acked[0] = max(acked[0], tag)
            if state["confirmed"] >= messages:
                channel.connection.close()
            elif not state["scheduled"]:
                pump(channel)

        channel.confirm_delivery(on_confirm)
        pump(channel)

    connection = _connect(start)
    connection.ioloop.start()


if __name__ == "__main__":
    wire.main(__doc__, sink=sink, publish=publish)
