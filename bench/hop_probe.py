"""`PROBED_MODULE=service HOP_LOG=FILE python -m bench.hop_probe`: run a pipeline process and
write, for every message it handles, when each step of its hop through this process happened.

The steps, each the wall clock (`time.time()`, shared by every process on the machine) when:

- `deliver`: pika hands the complete delivery to the consumer (`Channel._on_deliver`), i.e.
  its frames have been read off the socket;
- `pickup`: a worker thread starts on it (`WorkerPool.work_on`);
- `handled`: the worker hands its outcome back (handler and encoding done: `HandBack.give`;
  for `last`, whose store answers later, once the store has answered);
- `result`: the I/O thread takes the outcome (`Consumer._on_result`);
- `publish`: the output is handed to pika (`ConfirmedPublisher._send`: `basic_publish`, which
  only buffers the frames);
- `wire`: pika's transport has sent those frames to the socket (`_AsyncTransportBase._produce`
  with its buffer emptied), the first send after `publish`.

`first` has `publish` and `wire` only; `last`, which publishes nothing, has no `publish` or
`wire`. The probe wraps these methods of pika and of the consumer before running the module as
`python -m` would, as `harness.delivery_probe` does; the product itself records none of this.
Lines go to HOP_LOG as JSON, one per message and process (`{"id": message_id, "process": ...,
"deliver": t, ...}`), written as each message's hop through this process ends; `bench.hop_steps`
joins the processes' lines by message id.
"""

from __future__ import annotations

import json
import os
import runpy
import threading
import time
from typing import Any

import pika.frame
from pika.adapters.utils.io_services_utils import _AsyncTransportBase
from pika.channel import Channel

from common.consumer.coordinator import Consumer
from common.consumer.workers import HandBack, WorkerPool
from common.publisher import ConfirmedPublisher

STEPS = ("deliver", "pickup", "handled", "result", "publish", "wire")


class HopLog:
    """Each message's steps in this process, written once its last step is known."""

    def __init__(self, path: str, process: str, last_step: str) -> None:
        # Line by line: a stage is killed at the end of a run, and must leave every line behind.
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._process = process
        self._last_step = last_step
        self._steps: dict[str, dict[str, Any]] = {}
        self._unsent: list[str] = []  # published, not yet on the wire (I/O thread only)
        self._lock = threading.Lock()  # `pickup` and `handled` come from worker threads

    def mark(self, message_id: str | None, step: str) -> None:
        if not message_id:
            return
        now = time.time()
        with self._lock:
            steps = self._steps.setdefault(message_id, {"id": message_id})
            steps[step] = now
            if step == self._last_step:
                self._write(self._steps.pop(message_id))
        if step == "publish":
            self._unsent.append(message_id)

    def sent(self) -> None:
        """The transport's buffer went out: every publish since the last send is on the wire."""
        unsent, self._unsent = self._unsent, []
        for message_id in unsent:
            self.mark(message_id, "wire")

    def _write(self, steps: dict[str, Any]) -> None:
        steps["process"] = self._process
        self._file.write(json.dumps(steps) + "\n")

    def close(self) -> None:
        self._file.close()


def install(log: HopLog) -> None:
    """Wrap the methods whose calls are the steps."""
    on_deliver = Channel._on_deliver
    work_on = WorkerPool.work_on
    give = HandBack.give
    on_result = Consumer._on_result
    send = ConfirmedPublisher._send
    produce = _AsyncTransportBase._produce

    def probed_on_deliver(
        channel: Channel, method: pika.frame.Method, header: pika.frame.Header, body: bytes
    ) -> None:
        log.mark(header.properties.message_id, "deliver")
        on_deliver(channel, method, header, body)

    def probed_work_on(pool: WorkerPool, delivery: Any) -> None:
        log.mark(delivery.properties.message_id, "pickup")
        work_on(pool, delivery)

    def probed_give(hand_back: HandBack, delivery: Any, outcome: Any, seconds: float) -> None:
        log.mark(delivery.properties.message_id, "handled")
        give(hand_back, delivery, outcome, seconds)

    def probed_result(consumer: Consumer, delivery: Any, outcome: Any, seconds: float) -> None:
        log.mark(delivery.properties.message_id, "result")
        on_result(consumer, delivery, outcome, seconds)

    def probed_send(publisher: ConfirmedPublisher, publish: Any) -> None:
        send(publisher, publish)
        log.mark(publish.properties.message_id, "publish")

    def probed_produce(transport: _AsyncTransportBase) -> None:
        produce(transport)
        if not transport._tx_buffers:
            log.sent()

    Channel._on_deliver = probed_on_deliver  # type: ignore[method-assign]
    WorkerPool.work_on = probed_work_on  # type: ignore[method-assign]
    HandBack.give = probed_give  # type: ignore[method-assign]
    Consumer._on_result = probed_result  # type: ignore[method-assign]
    ConfirmedPublisher._send = probed_send  # type: ignore[method-assign]
    _AsyncTransportBase._produce = probed_produce  # type: ignore[method-assign]


def main() -> None:
    module = os.environ["PROBED_MODULE"]
    last_step = {"first": "wire", "last": "result"}.get(module, "wire")
    log = HopLog(os.environ["HOP_LOG"], os.environ.get("HOP_PROCESS", module), last_step)
    install(log)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        log.close()


if __name__ == "__main__":
    main()
