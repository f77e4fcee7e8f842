"""Contender: the broker's ceiling on this machine, one hop and no pipeline logic.

A bare pika `SelectConnection` publisher streams persistent messages with publisher confirms
(at most 1,000 unconfirmed, as `first`) into one queue; a bare `SelectConnection` consumer
(prefetch 100) acks each message and records it. Nothing else: no validation, no threads, no
republishing. A pipeline of 4 hops on the same broker cannot beat a quarter of this rate.

`plan(queues=4)` runs four such hops side by side, each its own queue, consumer and publisher
process (the `publish` process starts one per queue): the broker then carries what it carries
for the pipeline at that rate (four queues, each with its publishes, deliveries, acks and
confirms, each from a process of its own), which is what the pipeline's hops are measured
against (`bench.breakdown`).

    python -m bench.ceiling sink | publish N RATE
    (BENCH_QUEUE: the one queue of a sink or publisher; BENCH_QUEUES: how many publishers)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pika
from pika.channel import Channel

from bench import bare_pika, wire
from bench.runs import Plan, ProcSpec, RunSpec
from common.topology import PIPELINE_QUEUES
from harness.broker import Vhost
from harness.processes import python_module

WINDOW = 1000


def _queue() -> str:
    return os.environ.get("BENCH_QUEUE", PIPELINE_QUEUES[0])


def _connect(queue: str, on_channel: object) -> pika.SelectConnection:
    def on_open(connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=declare)

    def declare(channel: Channel) -> None:
        channel.queue_declare(
            queue,
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
    queue = _queue()

    def consume(channel: Channel) -> None:
        channel.basic_qos(
            prefetch_count=wire.prefetch(),
            callback=lambda _frame: channel.basic_consume(queue, on_message),
        )

    _connect(queue, consume).ioloop.start()


def publish(messages: int, rate: float) -> None:
    count = int(os.environ.get("BENCH_QUEUES", "1"))
    if count > 1:
        publish_side_by_side(PIPELINE_QUEUES[:count], messages, rate)
        return
    queue = _queue()
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
            channel.basic_publish("", queue, body, bare_pika.PERSISTENT)

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

    connection = _connect(queue, start)
    connection.ioloop.start()


def publish_side_by_side(names: tuple[str, ...], messages: int, rate: float) -> None:
    """A publisher process per queue, each with its share of `messages` and `rate`."""
    share = [str(messages // len(names)), f"{rate / len(names):g}"]
    children = [
        subprocess.Popen(
            python_module("bench.ceiling", "publish", *share),
            env={**os.environ, "BENCH_QUEUES": "1", "BENCH_QUEUE": name},
        )
        for name in names
    ]
    codes = [child.wait() for child in children]
    if any(codes):
        sys.exit(f"a publisher failed: exit codes {codes}")


def plan(vhost: Vhost, spec: RunSpec, *, queues: int = 1) -> Plan:
    """`queues` hops side by side: a sink per queue, each of `spec.messages` at `spec.rate`."""
    env = spec.bench_env(vhost)
    names = PIPELINE_QUEUES[:queues]
    sink = python_module("bench.ceiling", "sink")
    sinks = [ProcSpec(f"sink-{name}", "sink", sink, {**env, "BENCH_QUEUE": name}) for name in names]
    total = spec.messages * queues
    publisher = ProcSpec(
        "publisher",
        "publisher",
        python_module("bench.ceiling", "publish", str(total), f"{spec.rate * queues:g}"),
        {**env, "BENCH_QUEUES": str(queues)},
    )
    ready = dict.fromkeys(names, 1)
    return Plan(spec.label, total, sinks, publisher, ready, spec.results, vhost)


if __name__ == "__main__":
    wire.main(__doc__, sink=sink, publish=publish)
