"""What `last` counts of the messages that reach the end, and of its store's writes, beside
what its consumer counts (`common.metrics`)."""

from __future__ import annotations

from common.metrics import BATCH, SECONDS, ConsumerMetrics, Metrics, MetricsSettings
from common.settings import Env


class SinkMetrics:
    """What `last` counts of the messages that reach the end, and of its store's writes."""

    def __init__(self, metrics: Metrics) -> None:
        self.completed = metrics.counter("rabbithole_messages_completed", "Messages completed")
        self.duplicates = metrics.counter(
            "rabbithole_messages_duplicate", "Deliveries of a message already completed"
        )
        self.out_of_sequence = metrics.counter(
            "rabbithole_messages_out_of_sequence", "Completed after a message with a higher seq"
        )
        self.latency = metrics.histogram(
            "rabbithole_end_to_end_latency_seconds",
            "From the message's created_at to its completion",
            SECONDS,
        )
        self.write_duration = metrics.histogram(
            "rabbithole_store_write_duration_seconds",
            "One write of the store, retries included",
            SECONDS,
        )
        self.write_batch = metrics.histogram(
            "rabbithole_store_write_batch_messages", "Records in one write of the store", BATCH
        )
        self.outages = metrics.counter(
            "rabbithole_store_outages", "Times the store stopped answering"
        )

    def counted(self, *, completed: bool, out_of_sequence: bool, latency: float) -> None:
        """A message the store answered for: completed (with its latency), or a duplicate."""
        if not completed:
            self.duplicates.inc()
            return
        self.completed.inc()
        self.latency.observe(latency)
        if out_of_sequence:
            self.out_of_sequence.inc()

    def wrote(self, records: int, seconds: float) -> None:
        self.write_batch.observe(records)
        self.write_duration.observe(seconds)


def sink_metrics(env: Env) -> tuple[tuple[ConsumerMetrics, ...], SinkMetrics | None]:
    """`last`'s metrics: its consumer's observers and its own counts (none without the port)."""
    settings = MetricsSettings.from_env(env)
    if not settings.port:
        return (), None
    metrics = Metrics("last")
    observer, sink = ConsumerMetrics(metrics), SinkMetrics(metrics)
    metrics.serve(settings)
    return (observer,), sink
