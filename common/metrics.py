"""Prometheus metrics of one process, on METRICS_PORT: what it did with messages, as counts.

Off unless METRICS_PORT is set (compose sets it on every process). One registry per process
(one process per replica, so no multiprocess mode), served at /metrics by prometheus_client's
own thread. Every name has the `rabbithole_` prefix and a base unit (`_seconds`; `_messages` for
sizes counted in messages); counters end in `_total`. Labels come from a bounded set only: the
process's `stage` (first, service_a, service_b, service_c, last), an `outcome` from a fixed list,
the broker `node` it is connected to. Never a message id, a key or a host name: Prometheus adds
`instance` for the replica.

`ConsumerMetrics` is an observer of a consumer's events (`common.consumer.events`): the counts
are taken on the I/O thread as things happen, outside the consumer's body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from common.consumer.events import (
    AcksSent,
    Confirmed,
    Connected,
    DeadLettered,
    Event,
    HandlerFinished,
    Publishing,
    Received,
    Settled,
)
from common.consumer.outcomes import DeadLetter, Done, Failed, Forward
from common.publisher import Refused, Returned
from common.settings import Env, SettingsError
from common.tallies import Tallies

# Seconds, from a millisecond's work to a long outage's wait: the hop, the handler, the store.
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Messages in one batch (an ack flush, a store write): one alone up to a full prefetch window.
BATCH = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
OUTCOMES = {Forward: "forwarded", Done: "done", DeadLetter: "dead_lettered", Failed: "failed"}


@dataclass(frozen=True)
class MetricsSettings:
    port: int  # 0: no metrics served

    @classmethod
    def from_env(cls, env: Env) -> MetricsSettings:
        return cls(port=env.integer("METRICS_PORT", 0, minimum=0, maximum=65535))


class Metrics:
    """One process's registry, with the process's own figures (CPU, memory, GC) beside ours;
    `counter` and `histogram` make a metric already labelled with the stage, which any
    thread may update; `io_thread` makes the same for the I/O thread alone (`common.tallies`)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.registry = CollectorRegistry()
        self.io_thread = Tallies(stage)  # what the I/O thread alone counts: no lock per update
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, self.io_thread):
            self.registry.register(collector)

    def counter(self, name: str, doc: str) -> Counter:
        return Counter(name, doc, ["stage"], registry=self.registry).labels(self.stage)

    def histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        family = Histogram(name, doc, ["stage"], registry=self.registry, buckets=buckets)
        return family.labels(self.stage)

    def info(self, name: str, doc: str, label: str) -> Callable[[str], None]:
        """A gauge of 1 for one value of `label` at a time (the node, the run id)."""
        family = Gauge(name, doc, ["stage", label], registry=self.registry)

        def set_value(value: str) -> None:
            family.clear()
            family.labels(self.stage, value).set(1)

        return set_value

    def serve(self, settings: MetricsSettings) -> None:
        """Serve /metrics on settings.port (all interfaces: Prometheus scrapes from outside)."""
        if not settings.port:
            return
        try:
            start_http_server(settings.port, registry=self.registry)
        except OSError as error:
            reason = f"a port free on this host ({error.strerror})"
            raise SettingsError("METRICS_PORT", str(settings.port), reason) from None


class PublishMetrics:
    """What a publishing process counts: sent, confirmed, refused, returned, reconnects, node."""

    def __init__(self, metrics: Metrics) -> None:
        counts = metrics.io_thread
        self.published = counts.counter("rabbithole_messages_published", "Messages sent on")
        self.confirmed = counts.counter(
            "rabbithole_messages_confirmed", "Messages sent on that the broker confirmed"
        )
        self.refused = counts.counter(
            "rabbithole_publishes_refused", "Publishes the broker nacked (sent again)"
        )
        self.returned = counts.counter(
            "rabbithole_publishes_returned", "Publishes the broker returned: no such queue"
        )
        self.reconnects = counts.counter("rabbithole_reconnects", "Channels opened after a loss")
        self.node = metrics.info("rabbithole_broker_node_info", "The broker node in use", "node")

    def publisher_event(self, event: Refused | Returned) -> None:
        if isinstance(event, Refused):
            self.refused.inc(event.count)
        else:
            self.returned.inc()

    def connected(self, node: str, *, again: bool) -> None:
        self.node(node)
        if again:
            self.reconnects.inc()


class ConsumerMetrics(PublishMetrics):
    """An observer of a consumer's events, counting what becomes of every delivery."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(metrics)
        counts = metrics.io_thread
        self.received = counts.counter("rabbithole_messages_received", "Deliveries received")
        self.handled = {
            kind: counts.counter(
                "rabbithole_messages_handled", "Deliveries processed, by outcome", outcome=name
            )
            for kind, name in OUTCOMES.items()
        }
        self.duration = counts.histogram(
            "rabbithole_handler_duration_seconds", "Processing time of a delivery", SECONDS
        )
        self.in_progress = counts.gauge(
            "rabbithole_messages_in_progress", "Deliveries received and not yet settled"
        )
        self.requeued = counts.counter(
            "rabbithole_messages_requeued", "Deliveries handed back to their queue for another try"
        )
        self.dead_lettered = counts.counter(
            "rabbithole_messages_dead_lettered", "Deliveries whose dead-letter copy is confirmed"
        )
        self.ack_batch = counts.histogram(
            "rabbithole_ack_batch_messages", "Deliveries acked in one flush", BATCH
        )

        # By the event's exact type: one dict lookup, where a `match` tries each case in turn
        # (the cost per message halves, measured).
        self._on: dict[type, Callable] = {
            Received: self._received,
            HandlerFinished: self._handler_finished,
            Publishing: lambda _event: self.published.inc(),
            Confirmed: lambda _event: self.confirmed.inc(),
            DeadLettered: lambda _event: self.dead_lettered.inc(),
            Settled: self._settled,
            AcksSent: lambda event: self.ack_batch.observe(event.count),
            Connected: self._connected,
            Refused: self.publisher_event,
            Returned: self.publisher_event,
        }

    def __call__(self, event: Event) -> None:
        self._on[type(event)](event)

    def _received(self, _event: Received) -> None:
        self.received.inc()
        self.in_progress.inc()

    def _handler_finished(self, event: HandlerFinished) -> None:
        self.handled[type(event.outcome)].inc()
        self.duration.observe(event.seconds)

    def _settled(self, event: Settled) -> None:
        self.in_progress.dec()
        if not event.acked:
            self.requeued.inc()

    def _connected(self, event: Connected) -> None:
        self.in_progress.set(0)  # what the lost channel held is the broker's again
        self.connected(event.node, again=event.again)


def publish_metrics(env: Env, run_id: str) -> PublishMetrics | None:
    """`first`'s metrics, with its run id as an info metric: None when METRICS_PORT is unset."""
    settings = MetricsSettings.from_env(env)
    if not settings.port:
        return None
    metrics = Metrics("first")
    counts = PublishMetrics(metrics)
    metrics.info("rabbithole_run_info", "The run this first publishes", "run_id")(run_id)
    metrics.serve(settings)
    return counts


def consumer_metrics(env: Env, stage: str) -> tuple[ConsumerMetrics, ...]:
    """The observers a consumer process adds for its metrics: none when METRICS_PORT is unset."""
    settings = MetricsSettings.from_env(env)
    if not settings.port:
        return ()
    metrics = Metrics(stage)
    observer = ConsumerMetrics(metrics)
    metrics.serve(settings)
    return (observer,)
