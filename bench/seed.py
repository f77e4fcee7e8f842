"""Contender: the seed's original design, in pika's blocking style.

One `BlockingConnection` consumer per stage process: take a message, append the stage, publish
it to the next queue *without* publisher confirms, then ack the input. The publisher publishes
without confirms too. Fast, but a message the broker drops on the way (say, a full disk or a
lost connection right after `basic_publish`) is gone: nothing tells the sender. Prefetch is
100, as this project's default, rather than unlimited.

    python -m bench.seed stage service_a | sink | publish N RATE
"""

from __future__ import annotations

import json

import pika
from pika.adapters.blocking_connection import BlockingChannel

from bench import bare_pika, wire
from common.topology import SINK_QUEUE, STAGES


def _channel(*queues: str) -> BlockingChannel:
    connection = pika.BlockingConnection(pika.URLParameters(wire.amqp_url()))
    channel = connection.channel()
    for queue in queues:
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": wire.queue_type()})
    return channel


def stage(queue: str) -> None:
    following = wire.next_queue(queue)
    channel = _channel(queue, following)
    channel.basic_qos(prefetch_count=wire.prefetch())

    def on_message(
        ch: BlockingChannel, method: pika.spec.Basic.Deliver, _props: object, body: bytes
    ) -> None:
        message = wire.stamped(json.loads(body), queue)
        ch.basic_publish("", following, json.dumps(message).encode(), bare_pika.PERSISTENT)
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, on_message)
    channel.start_consuming()


def sink() -> None:
    channel = _channel(SINK_QUEUE)
    channel.basic_qos(prefetch_count=wire.prefetch())
    channel.basic_consume(SINK_QUEUE, bare_pika.recording(wire.Recorder()))
    channel.start_consuming()


def publish(messages: int, rate: float) -> None:
    channel = _channel(STAGES[0])
    pacer = wire.Pacer(rate)
    for seq in range(1, messages + 1):
        pacer.wait(seq - 1)
        body = json.dumps(wire.new_message(seq)).encode()
        channel.basic_publish("", STAGES[0], body, bare_pika.PERSISTENT)
    channel.connection.close()


if __name__ == "__main__":
    wire.main(__doc__, stage=stage, sink=sink, publish=publish)
