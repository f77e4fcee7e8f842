"""Traces of what each process does with each message, when the `OTEL_*` variables ask for them
(`common.tracing.settings`). Off, nothing of OpenTelemetry is imported, and a message's path
gains nothing but a check.

The package along its seams:
- `settings`: whether traces are on, for which service name, to which endpoint;
- `provider`: the SDK, its batch processor over OTLP/HTTP, the one-line reports, the flush;
- `messaging`: the semantic conventions' names and attributes, the W3C context in the headers,
  and `first`'s send spans;
- `consumer`: a consumer's spans, an observer of its events, and the worker-side hook;
- `client`: CLIENT spans around a call answered by a Future (`last`'s store write);
- `live`: those put together, imported only once traces are on.

The entry points ask here for what they need (`for_consumer`, `for_flood`); `common.main.run`
calls `shutdown()` as the process ends, which flushes the spans still queued.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.consumer.events import Observer
from common.consumer.workers import HandBack, Process, WorkerPool
from common.settings import BrokerSettings, Env
from common.topology import input_queues
from common.tracing.settings import TraceSettings

if TYPE_CHECKING:
    from common.tracing.messaging import FloodSpans
    from common.tracing.provider import Traces

# A call answered by a Future, made inside a span: `traced(call)` answers what `call()` does.
Traced = Callable[[Callable[[], Future[Any]]], Future[Any]]

_open: list[Traces] = []  # the process's provider, once traces are on: for `shutdown`


@dataclass(frozen=True)
class ConsumerTracing:
    """What a consumer takes to be traced: its observers and its worker pool (with the hook that
    makes a delivery's span current around its work). Off: no observer, the plain pool."""

    observers: tuple[Observer, ...] = ()
    pool: Callable[[int, Process, HandBack], WorkerPool] = WorkerPool
    clients: Callable[[str, Mapping[str, str]], Traced] | None = None

    def client(self, name: str, attributes: Mapping[str, str]) -> Traced | None:
        """CLIENT spans named `name` around a handler's calls, or None with traces off."""
        return None if self.clients is None else self.clients(name, attributes)


def for_consumer(
    env: Env, broker: BrokerSettings, queue: str, next_queue: str = "", process: str = ""
) -> ConsumerTracing:
    """The tracing of a consumer of `queue` publishing to `next_queue` ("": none), in the
    service `process` (by default: the queue's name)."""
    settings = TraceSettings.from_env(env, process or queue)
    if settings is None:
        return ConsumerTracing()
    from common.tracing import live  # noqa: PLC0415 (the SDK is imported only with traces on)

    # With one input queue, every delivery came with its name as routing key (the default
    # exchange); keyed partitions have one each, and a delivery does not say which.
    inputs = input_queues(queue, broker)
    routing_key = inputs[0] if len(inputs) == 1 else None
    return live.consumer_tracing(_started(live, settings), queue, next_queue, routing_key)


def for_flood(env: Env, queue: str) -> FloodSpans | None:
    """`first`'s send spans to `queue`, or None with traces off."""
    settings = TraceSettings.from_env(env, "first")
    if settings is None:
        return None
    from common.tracing import live  # noqa: PLC0415 (the SDK is imported only with traces on)

    return live.FloodSpans(_started(live, settings).tracer, queue)


def _started(live: Any, settings: TraceSettings) -> Traces:
    if not _open:
        _open.append(live.open_traces(settings))
    return _open[0]


def shutdown() -> None:
    """Flush the spans still queued and stop exporting (nothing to do with traces off)."""
    while _open:
        _open.pop().shutdown()
