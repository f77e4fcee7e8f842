"""The tracing parts built on the SDK, put together once traces are on (this module is imported
only then, so that a process without traces loads nothing of OpenTelemetry)."""

from __future__ import annotations

import functools

from common.consumer.workers import WorkerPool
from common.tracing import ConsumerTracing
from common.tracing.client import ClientSpans
from common.tracing.consumer import ConsumerSpans
from common.tracing.messaging import SCHEMA_URL, FloodSpans
from common.tracing.provider import Traces
from common.tracing.settings import TraceSettings

__all__ = ["FloodSpans", "Traces", "consumer_tracing", "open_traces"]


def open_traces(settings: TraceSettings) -> Traces:
    return Traces(settings, SCHEMA_URL)


def consumer_tracing(
    traces: Traces, queue: str, next_queue: str, routing_key: str | None
) -> ConsumerTracing:
    spans = ConsumerSpans(traces.tracer, queue, next_queue, routing_key)
    return ConsumerTracing(
        (spans,),
        functools.partial(WorkerPool, around=spans.around),
        functools.partial(ClientSpans, traces.tracer),
    )
