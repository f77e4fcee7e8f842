"""Prometheus figures that one thread alone updates, kept as plain numbers and turned into
samples only when scraped.

A consumer's and a publisher's events all come on the I/O thread (`common.consumer.events`), a
handful per message at each stage. `prometheus_client`'s metrics take a lock at every update, so
that any thread may update them: 6.4 µs per message and process here, against 2.6 µs for
these. A `Tally` or a `Spread` is a number or a list that its one writer changes
with no lock at all; the scrape (on the HTTP server's thread) reads them as they are, each value
whole. Whatever another thread counts (`last`'s sink on its workers, its store's writer) keeps a
`prometheus_client` metric instead (`common.metrics.Metrics.counter`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

Figure = TypeVar("Figure", "Tally", "Spread")


class Tally:
    """A counter or a gauge of one thread: `inc`, `dec`, `set`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class Spread:
    """A histogram of one thread: how many observations fell at or under each bound."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """The buckets as Prometheus writes them: `le` and the count at or under it."""
        total, buckets = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), list(self.counts), strict=True):
            total += count
            buckets.append((bound, total))
        return buckets


class Tallies(Collector):
    """The one-thread figures of a process, by name: a collector of its registry. Every sample
    is labelled with the stage, and with what `labels` adds (say, the outcome)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._families: dict[str, tuple[type[Metric], str, list[tuple[dict, object]]]] = {}

    def counter(self, name: str, doc: str, **labels: str) -> Tally:
        return self._add(CounterMetricFamily, name, doc, labels, Tally())

    def gauge(self, name: str, doc: str) -> Tally:
        return self._add(GaugeMetricFamily, name, doc, {}, Tally())

    def histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Spread:
        return self._add(HistogramMetricFamily, name, doc, {}, Spread(buckets))

    def _add(self, kind: type[Metric], name: str, doc: str, labels: dict, figure: Figure) -> Figure:
        self._families.setdefault(name, (kind, doc, []))[2].append((labels, figure))
        return figure

    def collect(self) -> Iterator[Metric]:
        for name, (kind, doc, members) in self._families.items():
            keys = ["stage", *members[0][0]]
            family = kind(name, doc, labels=keys)
            for labels, figure in members:
                values = [self.stage, *labels.values()]
                if isinstance(figure, Spread):
                    family.add_metric(values, figure.cumulative(), figure.sum)
                else:
                    family.add_metric(values, figure.value)
            yield family
