"""Contender: FastStream (aio-pika underneath), the same 3-stage pipeline.

Each stage is a FastStream app of its own process: a subscriber on its queue whose return value
the `@publisher` decorator publishes (persistent, with publisher confirms: FastStream's default
channel) to the next queue, acked after the handler and its publish return. Per-message logging
is off (`logger=None`); prefetch 100; quorum queues declared through `RabbitQueue`. The
publisher keeps up to 1,000 publishes awaiting their confirm, as `first` does.

    python -m bench.fs_pipeline stage service_a | sink | publish N RATE
"""

from __future__ import annotations

import asyncio
from typing import Any

from faststream import FastStream
from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitQueue

from bench import wire
from common.topology import SINK_QUEUE, STAGES

WINDOW = 1000


def _broker() -> RabbitBroker:
    return RabbitBroker(wire.amqp_url(), logger=None)


def _queue(name: str) -> RabbitQueue:
    if wire.queue_type() == "quorum":
        return RabbitQueue(name, durable=True, queue_type=QueueType.QUORUM)
    return RabbitQueue(name, durable=True)


def _serve(broker: RabbitBroker) -> None:
    asyncio.run(FastStream(broker, logger=None).run())


def stage(queue: str) -> None:
    broker = _broker()
    publisher = broker.publisher(_queue(wire.next_queue(queue)), persist=True)

    @broker.subscriber(_queue(queue), channel=Channel(prefetch_count=wire.prefetch()))
    @publisher
    async def handle(message: dict[str, Any]) -> dict[str, Any]:
        return wire.stamped(message, queue)

    _serve(broker)


def sink() -> None:
    broker = _broker()
    recorder = wire.Recorder()

    @broker.subscriber(_queue(SINK_QUEUE), channel=Channel(prefetch_count=wire.prefetch()))
    async def handle(message: dict[str, Any]) -> None:
        recorder.record(message)

    _serve(broker)


async def _publish(messages: int, rate: float) -> None:
    broker = _broker()
    publisher = broker.publisher(_queue(STAGES[0]), persist=True)
    await broker.start()
    pacer = wire.Pacer(rate)
    window = asyncio.Semaphore(WINDOW)
    pending: set[asyncio.Task[None]] = set()

    async def send(message: dict[str, Any]) -> None:
        try:
            await publisher.publish(message)
        finally:
            window.release()

    for seq in range(1, messages + 1):
        delay = pacer.delay(seq - 1)
        if delay:
            await asyncio.sleep(delay)
        await window.acquire()
        task = asyncio.create_task(send(wire.new_message(seq)))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    await broker.stop()


if __name__ == "__main__":
    wire.main(
        __doc__, stage=stage, sink=sink, publish=lambda n, rate: asyncio.run(_publish(n, rate))
    )
