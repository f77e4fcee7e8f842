"""`PROBED_MODULE=service python -m harness.delivery_probe`: run a pipeline process, and log
every redelivery it receives with the broker's count of earlier deliveries.

A quorum queue counts how often each message was returned to it (a requeue, or a consumer
whose channel or node went away while holding it) and sends the count along as header
`x-delivery-count`; once the count passes the queue's `x-delivery-limit`, the message is
dead-lettered instead. The cluster scenarios measure how many returns a node failure costs, to
set `DELIVERY_LIMIT` with headroom. The processes do not log the count themselves, so this
probe wraps pika's delivery dispatch (`Channel._on_deliver`, pika 1.4) before running the
module as `python -m` would, and logs one `redelivery` record per redelivered message:
`{"message": "redelivery", "queue": ..., "delivery_count": N, "message_id": ...}`.
"""

from __future__ import annotations

import logging
import os
import runpy

import pika.frame
from pika.channel import Channel

log = logging.getLogger("probe")
RECORD = "redelivery"

_on_deliver = Channel._on_deliver


def _probed_on_deliver(
    channel: Channel, method_frame: pika.frame.Method, header_frame: pika.frame.Header, body: bytes
) -> None:
    headers = header_frame.properties.headers or {}
    count = headers.get("x-delivery-count")
    if isinstance(count, int) and count > 0:
        log.info(
            RECORD,
            extra={
                "queue": method_frame.method.routing_key,
                "delivery_count": count,
                "message_id": header_frame.properties.message_id,
            },
        )
    _on_deliver(channel, method_frame, header_frame, body)


def main() -> None:
    module = os.environ["PROBED_MODULE"]
    Channel._on_deliver = _probed_on_deliver  # type: ignore[method-assign]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
